package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/templates/links"
)

// ClickConfig wires the click redirector.
type ClickConfig struct {
	// Codec verifies tokens; its key is the one the workers sign tracked links with.
	Codec *links.Codec
	// Events receives one clicked event per click (herald.events).
	Events Publisher
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// PublishTimeout bounds the wait for Kafka before redirecting anyway; 0: 2 s.
	PublishTimeout time.Duration
	Logger         *slog.Logger
}

// previewAgents fetch links to build previews (WhatsApp, Facebook, Slack, ...): their
// requests are redirected but not counted as clicks.
var previewAgents = []string{"whatsapp/", "facebookexternalhit", "facebot", "slackbot", "twitterbot", "telegrambot", "linkedinbot", "discordbot", "skypeuripreview"}

// NewClickHandler returns the redirector of tracked links: GET (or HEAD) of a path
// ending in /c/<token> verifies the token's signature without any lookup, publishes a
// clicked event whose id is deterministic in (campaign, contact, link index), so every
// link counts once per contact however often it is clicked, and answers 302 to the
// target URL. A forged or damaged token gets 404 and publishes nothing. Link-preview
// fetchers and HEAD requests are redirected without an event. A Kafka failure is
// logged and the visitor is redirected all the same.
func NewClickHandler(cfg ClickConfig) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "clicks")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		i := strings.LastIndex(r.URL.Path, "/c/")
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		cl, err := cfg.Codec.Parse(r.URL.Path[i+len("/c/"):])
		if err != nil {
			log.Debug("refused click", "err", err)
			http.Error(w, "this link is not valid", http.StatusNotFound)
			return
		}
		if r.Method == http.MethodGet && !isPreviewAgent(r.UserAgent()) {
			ev := events.New(events.Clicked, cl.Campaign, cl.Contact, cfg.Now())
			ev.ID = events.ID(cl.Campaign, cl.Contact, events.Clicked, strconv.Itoa(cl.Index))
			b, err := ev.Marshal()
			if err == nil {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), cfg.PublishTimeout)
				err = cfg.Events.WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(cl.Contact), Value: b})
				cancel()
			}
			if err != nil {
				log.Warn("click not recorded", "campaign", cl.Campaign, "contact", cl.Contact, "link", cl.Index, "err", err)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, cl.URL, http.StatusFound)
	})
}

func isPreviewAgent(ua string) bool {
	ua = strings.ToLower(ua)
	for _, a := range previewAgents {
		if strings.Contains(ua, a) {
			return true
		}
	}
	return false
}
