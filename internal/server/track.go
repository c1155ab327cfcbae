package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/segments"
)

// LastTouch finds the campaign a conversion is attributed to (analytics.Attributor).
type LastTouch interface {
	LastTouch(ctx context.Context, contact uint32, at time.Time) (campaign string, sentAt time.Time, ok bool, err error)
}

var _ LastTouch = (*analytics.Attributor)(nil)

// TrackConfig wires the conversion endpoint.
type TrackConfig struct {
	// Token is the bearer token shops and backends send (Authorization: Bearer …).
	// Without one, every request is refused: an open endpoint would let anyone
	// inflate a campaign's conversions.
	Token       string
	Contacts    Contacts  // phone → contact id
	Attribution LastTouch // conversion → campaign
	Events      Publisher // herald.events
	Now         func() time.Time
	Logger      *slog.Logger
}

// ConversionRequest is the body of POST /track/conversion.
type ConversionRequest struct {
	Phone    string    `json:"phone"` // E.164, or as WhatsApp writes it
	OrderID  string    `json:"order_id"`
	Value    float64   `json:"value"`
	Currency string    `json:"currency"`    // ISO 4217
	Time     time.Time `json:"ts,omitzero"` // when the order was placed; default now
}

// ConversionResponse says what was recorded.
type ConversionResponse struct {
	EventID    string    `json:"event_id"`
	ContactID  uint32    `json:"contact_id"`
	Campaign   string    `json:"campaign_id,omitempty"` // "" (omitted) when no campaign sent to the contact within the window
	Attributed bool      `json:"attributed"`
	SentAt     time.Time `json:"sent_at,omitzero"` // the attributed campaign's message
}

// Track records one conversion: it finds the contact by phone, attributes the order to
// the last campaign that sent to it within the window, and publishes a converted event
// (deterministic in campaign, contact and order id, so a retried request counts once).
// Errors wrapping segments.ErrNotFound or ErrBadConversion are the caller's.
func Track(ctx context.Context, cfg TrackConfig, req ConversionRequest) (ConversionResponse, error) {
	var res ConversionResponse
	if req.Time.IsZero() {
		now := time.Now
		if cfg.Now != nil {
			now = cfg.Now
		}
		req.Time = now()
	}
	id, err := cfg.Contacts.LookupPhone(ctx, req.Phone)
	if err != nil {
		return res, err
	}
	conv := analytics.Conversion{ContactID: id, OrderID: req.OrderID, Value: req.Value, Currency: req.Currency, Time: req.Time.UTC()}
	if err := conv.Validate(); err != nil {
		return res, errors.Join(ErrBadConversion, err)
	}
	campaign, sentAt, ok, err := cfg.Attribution.LastTouch(ctx, id, conv.Time)
	if err != nil {
		return res, err
	}
	ev := analytics.ConversionEvent(conv, campaign)
	b, err := ev.Marshal()
	if err != nil {
		return res, err
	}
	if err := cfg.Events.WriteMessages(ctx, kafka.Message{Key: kafkax.ContactKey(id), Value: b}); err != nil {
		return res, err
	}
	return ConversionResponse{EventID: ev.ID, ContactID: id, Campaign: campaign, Attributed: ok, SentAt: sentAt}, nil
}

// ErrBadConversion marks a conversion with missing or malformed fields.
var ErrBadConversion = errors.New("bad conversion")

// NewConversionHandler handles POST /track/conversion: a JSON ConversionRequest with a
// bearer token, answered 202 with a ConversionResponse; 400 for a malformed body, 401
// for a missing or wrong token, 404 for an unknown phone, 503 when Kafka or ClickHouse
// fail (the caller retries; the event id makes the retry harmless).
func NewConversionHandler(cfg TrackConfig) http.Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "track")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if cfg.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(cfg.Token)) != 1 {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		var req ConversionRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "conversion body: "+err.Error(), http.StatusBadRequest)
			return
		}
		res, err := Track(r.Context(), cfg, req)
		switch {
		case errors.Is(err, segments.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case errors.Is(err, ErrBadConversion):
			http.Error(w, strings.ReplaceAll(err.Error(), "\n", "; "), http.StatusBadRequest)
			return
		case err != nil:
			log.Error("track conversion", "err", err)
			http.Error(w, "could not record the conversion, retry", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(res)
	})
}
