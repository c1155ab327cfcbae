package app

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
)

// tagEvents publishes a tag_added or tag_removed event (Reason: the tag) on
// herald.events for every contact whose tag flipped, when a journey reacts to that tag
// (watched, cached for a second), so journeys enter and exit on tag and segment changes
// at once. What a failed publish misses, the journey engine's slow segment reconcile
// picks up.
func tagEvents(w tagPublisher, watched func(context.Context) (map[string]bool, error), log *slog.Logger, now func() time.Time) segments.TagHook {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var mu sync.Mutex
	var tags map[string]bool
	var at time.Time
	watches := func(ctx context.Context, tag string) bool {
		mu.Lock()
		defer mu.Unlock()
		if tags == nil || time.Since(at) > time.Second {
			m, err := watched(ctx)
			if err != nil {
				log.Warn("journeys' watched tags; publishing every tag change meanwhile", "err", err)
				return true
			}
			tags, at = m, time.Now()
		}
		return tags[tag]
	}
	return func(ctx context.Context, tag string, added bool, ids []uint32) {
		if !watches(ctx, tag) {
			return
		}
		kind := events.TagRemoved
		if added {
			kind = events.TagAdded
		}
		ts := now().UTC()
		disc := tag + "|" + strconv.FormatInt(ts.UnixNano(), 10)
		msgs := make([]kafka.Message, 0, len(ids))
		for _, c := range ids {
			ev := events.New(kind, "", c, ts)
			ev.ID = events.ID("", c, kind, disc)
			ev.Reason = tag
			b, err := ev.Marshal()
			if err != nil {
				continue
			}
			msgs = append(msgs, kafka.Message{Key: kafkax.ContactKey(c), Value: b})
		}
		if err := w.WriteMessages(context.WithoutCancel(ctx), msgs...); err != nil {
			log.Warn("publish tag events; journeys pick the change up at their next segment reconcile", "tag", tag, "contacts", len(ids), "err", err)
		}
	}
}

// tagPublisher writes messages to one Kafka topic (a *kafka.Writer).
type tagPublisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}
