package analytics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// sinkMetrics are the sink's collectors, labelled by table only (a bounded set).
type sinkMetrics struct {
	rows         *prometheus.CounterVec
	batches      *prometheus.CounterVec
	insertErrors *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	commitErrors *prometheus.CounterVec
	pending      *prometheus.GaugeVec
	batchSeconds *prometheus.HistogramVec
}

// newSinkMetrics registers the sink's metrics with reg; with a nil reg they are
// collected nowhere. A second sink on the same registry shares the first one's
// collectors instead of failing.
func newSinkMetrics(reg prometheus.Registerer) *sinkMetrics {
	labels := []string{"table"}
	return &sinkMetrics{
		rows: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_rows_inserted_total",
			Help: "Rows ClickHouse accepted from the sink."}, labels)),
		batches: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_batches_total",
			Help: "Batches inserted into ClickHouse and committed to Kafka."}, labels)),
		insertErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_insert_errors_total",
			Help: "Failed ClickHouse insert attempts; the same batch is retried."}, labels)),
		decodeErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_decode_errors_total",
			Help: "Undecodable Kafka messages, skipped and committed."}, labels)),
		commitErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_commit_errors_total",
			Help: "Offset commits Kafka refused after an insert; those messages will be redelivered."}, labels)),
		pending: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_sink_pending_messages",
			Help: "Messages taken from Kafka and not yet inserted and committed."}, labels)),
		batchSeconds: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_sink_batch_seconds",
			Help:    "Time to insert a batch into ClickHouse and commit it, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, labels)),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: a name clash with another collector
	}
	return c
}
