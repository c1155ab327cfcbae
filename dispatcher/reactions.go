package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/throttle"
)

// Provider actions: what a refusal asks Herald to do beyond the job itself, as a
// channel's code table classifies its provider's codes. Every one has a reaction in
// Reactor.React.
const (
	ActionNone              = "none"
	ActionRetry             = "retry"
	ActionBackoffRecipient  = "backoff_recipient"
	ActionConvertToTemplate = "convert_to_template"
	ActionHoldMarketing     = "hold_marketing"
	ActionOptOut            = "opt_out"
	ActionUndeliverable     = "undeliverable"
	ActionDrop              = "drop"
	ActionFailJob           = "fail_job"
	ActionPauseCampaign     = "pause_campaign"
	ActionPauseSender       = "pause_sender"
	ActionPauseAccount      = "pause_account"
	ActionSkipCountry       = "skip_country"
	ActionTransport         = "transport" // a send error no provider code classified
)

// Actions lists every action the Reactor carries out: a channel's code table may return
// only these.
func Actions() []string {
	return []string{ActionNone, ActionRetry, ActionBackoffRecipient, ActionConvertToTemplate, ActionHoldMarketing, ActionOptOut,
		ActionUndeliverable, ActionDrop, ActionFailJob, ActionPauseCampaign, ActionPauseSender, ActionPauseAccount,
		ActionSkipCountry, ActionTransport}
}

// Skip reasons of refusals that are about the contact, not a failure of the send.
const (
	ReasonCountryRestricted = "country_restricted" // the sender's account may not message the contact's country
	ReasonProviderDropped   = "provider_dropped"   // the provider will never deliver it (blocked, an experiment)
)

// Refusal is a provider's refusal of one message: the error of a send request, or a
// failed status webhook.
type Refusal struct {
	Campaign      string
	Contact       uint32
	Sender        string // Herald's sender id; "" when unknown (a webhook names the phone-number id only)
	PhoneNumberID string // the provider-side sender: windows, recipient back-off and country restrictions are keyed by it
	Channel       string
	Country       string // the contact's country; looked up when empty and needed
	Code          int
	Action        string          // the classification's action name
	Signal        throttle.Signal // what it asks of the pace of the sender or the recipient
	MessageID     string          // the provider's message id, when the refusal names one
	At            time.Time       // when the provider said it
}

func (r Refusal) proof() string {
	p := fmt.Sprintf("%s error %d", r.Channel, r.Code)
	switch {
	case r.MessageID != "":
		p += " on message " + r.MessageID
	default:
		p += fmt.Sprintf(" refusing the send to contact %d", r.Contact)
	}
	if r.Campaign != "" {
		p += " of campaign " + r.Campaign
	}
	return p
}

// ReactorConfig wires a Reactor.
type ReactorConfig struct {
	Ledger    *throttle.Ledger // opt-outs are consent revokes (required for them)
	Policy    *throttle.Policy // suppressions and 24h windows
	Campaigns *Campaigns       // country restrictions and pauses
	Contacts  Contacts         // the country of a contact a refusal does not name (optional)
	Pushback  Pushback         // recipient back-off and sender pace (optional)
	Events    Publisher        // opted_out events (optional)
	// UndeliverableFor is how long a contact the provider cannot reach stays suppressed
	// on that channel (default throttle.DefaultUndeliverableFor).
	UndeliverableFor time.Duration
	Logger           *slog.Logger
}

// Reactor carries out what providers' refusals ask for beyond the refused job: opt-outs
// into the consent ledger, undeliverable contacts suppressed, windows the provider says
// are closed, countries a sender may not reach, recipient and sender back-off, campaign
// pauses. Workers call it for send errors and the webhook server for failed statuses;
// every reaction is idempotent (providers and Kafka redeliver).
type Reactor struct {
	cfg ReactorConfig
	log *slog.Logger
}

// NewReactor returns a reactor.
func NewReactor(cfg ReactorConfig) *Reactor {
	if cfg.UndeliverableFor <= 0 {
		cfg.UndeliverableFor = throttle.DefaultUndeliverableFor
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reactor{cfg: cfg, log: log.With("component", "reactor")}
}

// ErrNoReaction is returned for an action no reaction is defined for.
var ErrNoReaction = errors.New("no reaction for provider action")

// React carries out the refusals' actions. An error means some may not have been carried
// out: call again (each reaction is idempotent).
func (r *Reactor) React(ctx context.Context, refusals []Refusal) error {
	var (
		changes  []throttle.Change
		optOuts  = map[uint32]Refusal{}
		suppress = map[string][]uint32{}
		sups     = map[string][]throttle.Suppression{}
		windows  = map[string][]uint32{}
		pauses   = map[string]string{}
	)
	for _, f := range refusals {
		if f.At.IsZero() {
			f.At = time.Now()
		}
		if err := r.pushback(ctx, f); err != nil {
			return err
		}
		switch f.Action {
		case ActionNone, ActionDrop, ActionFailJob, ActionRetry, ActionTransport, ActionPauseSender,
			ActionBackoffRecipient, ActionHoldMarketing:
			// Only the job's own record (skipped provider_dropped, failed with the code,
			// retried or deferred), and the pace its signal asks for.
		case ActionOptOut:
			// Dated at least a millisecond after now: the send it answers started earlier, and
			// the audit compares them at millisecond precision.
			changes = append(changes, throttle.Change{ContactID: f.Contact, Channel: f.Channel, Purpose: "marketing",
				Action: events.Revoke, Source: "provider", Actor: "herald", Proof: f.proof(), Time: f.At.Truncate(time.Millisecond).Add(time.Millisecond)})
			optOuts[f.Contact] = f
		case ActionUndeliverable:
			suppress[f.Channel] = append(suppress[f.Channel], f.Contact)
			sups[f.Channel] = append(sups[f.Channel], throttle.Suppression{Reason: throttle.ReasonUndeliverable,
				At: f.At, Until: f.At.Add(r.cfg.UndeliverableFor), Proof: f.proof()})
		case ActionConvertToTemplate:
			windows[f.PhoneNumberID] = append(windows[f.PhoneNumberID], f.Contact)
		case ActionSkipCountry:
			if err := r.restrictCountry(ctx, f); err != nil {
				return err
			}
		case ActionPauseCampaign, ActionPauseAccount:
			if f.Campaign != "" {
				pauses[f.Campaign] = fmt.Sprintf("provider:%d", f.Code)
			}
		default:
			return fmt.Errorf("%w %q (code %d)", ErrNoReaction, f.Action, f.Code)
		}
	}
	if len(changes) > 0 {
		if r.cfg.Ledger == nil {
			return errors.New("provider opt-outs: no consent ledger configured")
		}
		recs, err := r.cfg.Ledger.Apply(ctx, changes, false)
		if err != nil {
			return fmt.Errorf("record provider opt-outs: %w", err)
		}
		// An event for each revoke the ledger recorded (a contact already opted out gets
		// none); its id is stable, so a rerun after a failed publish collapses.
		var evs []kafka.Message
		for _, rec := range recs {
			f := optOuts[rec.ContactID]
			ev := events.New(events.OptedOut, f.Campaign, f.Contact, f.At)
			ev.ID = events.ID(f.Campaign, f.Contact, events.OptedOut, "provider")
			ev.Channel, ev.SenderID, ev.Reason, ev.ErrorCode, ev.ConsentRef = f.Channel, f.PhoneNumberID, "provider", f.Code, rec.ID
			b, _ := ev.Marshal()
			evs = append(evs, kafka.Message{Key: kafkax.ContactKey(f.Contact), Value: b})
		}
		if r.cfg.Events != nil && len(evs) > 0 {
			if err := r.cfg.Events.WriteMessages(ctx, evs...); err != nil {
				return fmt.Errorf("publish opt-outs: %w", err)
			}
		}
		if len(recs) > 0 {
			r.log.Info("provider opt-outs recorded", "contacts", len(recs))
		}
	}
	for ch, contacts := range suppress {
		if err := r.cfg.Policy.Suppress(ctx, ch, contacts, sups[ch]); err != nil {
			return err
		}
	}
	for sender, contacts := range windows {
		if err := r.cfg.Policy.CloseWindow(ctx, sender, contacts); err != nil {
			return err
		}
	}
	for id, reason := range pauses {
		if _, err := r.cfg.Campaigns.PauseFor(ctx, id, reason); err != nil && !errors.Is(err, ErrNotFound) {
			r.log.Warn("pause campaign after provider refusal", "campaign", id, "reason", reason, "err", err)
			continue
		}
		r.log.Warn("campaign paused by a provider refusal", "campaign", id, "reason", reason)
	}
	return nil
}

// pushback hands the refusal's signal to the throttle: the governor for the sender's
// (the governor knows it by Herald's id: a webhook that names only the provider's id
// cannot slow it), the policy for the recipient's.
func (r *Reactor) pushback(ctx context.Context, f Refusal) error {
	if r.cfg.Pushback == nil || f.Signal == throttle.SignalNone {
		return nil
	}
	if f.Signal.AboutSender() {
		if f.Sender == "" {
			return nil
		}
		return r.cfg.Pushback.Sender(ctx, f.Sender, f.Signal)
	}
	return r.cfg.Pushback.Recipient(ctx, f.PhoneNumberID, f.Contact, f.Signal, f.At)
}

func (r *Reactor) restrictCountry(ctx context.Context, f Refusal) error {
	if f.Campaign == "" {
		return nil
	}
	country := f.Country
	if country == "" && r.cfg.Contacts != nil {
		cs, err := r.cfg.Contacts.ProfileFields(ctx, []uint32{f.Contact})
		if err != nil {
			return err
		}
		country = cs[0].Country
	}
	if country == "" {
		r.log.Warn("country restriction for a contact of unknown country", "campaign", f.Campaign, "contact", f.Contact, "code", f.Code)
		return nil
	}
	return r.cfg.Campaigns.RestrictCountry(ctx, f.Campaign, f.PhoneNumberID, country)
}
