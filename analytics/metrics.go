package analytics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
// collected nowhere.
func newSinkMetrics(reg prometheus.Registerer) *sinkMetrics {
	f := promauto.With(reg)
	labels := []string{"table"}
	return &sinkMetrics{
		rows: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_rows_inserted_total",
			Help: "Rows ClickHouse accepted from the sink."}, labels),
		batches: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_batches_total",
			Help: "Batches inserted into ClickHouse and committed to Kafka."}, labels),
		insertErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_insert_errors_total",
			Help: "Failed ClickHouse insert attempts; the same batch is retried."}, labels),
		decodeErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_decode_errors_total",
			Help: "Undecodable Kafka messages, skipped and committed."}, labels),
		commitErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "herald_sink_commit_errors_total",
			Help: "Offset commits Kafka refused after an insert; those messages will be redelivered."}, labels),
		pending: f.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_sink_pending_messages",
			Help: "Messages taken from Kafka and not yet inserted and committed."}, labels),
		batchSeconds: f.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_sink_batch_seconds",
			Help:    "Time from the first insert attempt of a batch to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, labels),
	}
}
