package analytics

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"github.com/herald-dev/herald/throttle"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
)

// Audit rules: why a sent message is a violation.
const (
	// RuleNoConsent: the contact's latest consent record for the message's channel and
	// the audited purpose, at or before the send, is a revoke, or there is none.
	RuleNoConsent = "no_consent"
	// RuleConsentRefMissing: the sent event names no consent record as its proof.
	RuleConsentRefMissing = "consent_ref_missing"
	// RuleConsentRefInvalid: the record the sent event names is not a grant of this
	// contact, channel and purpose recorded at or before the send (unknown, another
	// contact's, a revoke, or later than the send).
	RuleConsentRefInvalid = "consent_ref_invalid"
	// RuleOutsideWindow: a free-form message with no inbound message from the contact to
	// the same sender in the 24 hours before it.
	RuleOutsideWindow = "outside_window"
)

// FreeFormReason marks a sent event as a free-form message (not an approved template):
// until the event contract carries the message type, the worker sets Reason to this
// value on the sent events of free-form sends, and the audit checks their 24h window.
const FreeFormReason = events.ReasonFreeForm

// ServiceWindow is the WhatsApp customer-service window a free-form message needs.
const ServiceWindow = 24 * time.Hour

// AuditReport is the compliance audit of one campaign's sent messages.
type AuditReport struct {
	Campaign   string      `json:"campaign_id"`
	Purpose    string      `json:"purpose"`
	Sent       uint64      `json:"sent"`      // distinct sent events checked
	FreeForm   uint64      `json:"free_form"` // of which free-form (checked against the 24h window)
	Violations []Violation `json:"violations"`
}

// Violation is one sent message that breaks a rule. A message may break several.
type Violation struct {
	Rule       string    `json:"rule"`
	EventID    string    `json:"event_id"`
	ContactID  uint32    `json:"contact_id"`
	SenderID   string    `json:"sender_id"`
	Channel    string    `json:"channel"`
	SentAt     time.Time `json:"sent_at,omitzero"`
	ConsentRef string    `json:"consent_ref,omitempty"`
	Detail     string    `json:"detail"`
}

// sentRows are the distinct sent events of a campaign. A copy that differs in any
// audited field is audited on its own, so an edited copy cannot hide behind the original.
const sentRows = `SELECT DISTINCT event_id, contact_id, sender_id, channel, ts_ms, consent_ref, reason
    FROM events WHERE campaign_id = ? AND kind = 'sent'`

// auditConsentQuery finds the sent events of a campaign whose consent does not hold:
// for each, the contact's latest consent_log record for (channel, purpose) at or before
// the send (ties in milliseconds broken by record id), and whether the record the event
// names is a grant of that contact, channel and purpose made at or before the send.
// Parameters: purpose, campaign, campaign.
const auditConsentQuery = `SELECT event_id, contact_id, sender_id, channel, ts_ms, consent_ref,
    argMaxIf(c_action, tuple(c_ts, c_id), c_id != '' AND c_ts <= ts_ms) AS last_action,
    argMaxIf(c_id, tuple(c_ts, c_id), c_id != '' AND c_ts <= ts_ms) AS last_id,
    maxIf(c_ts, c_id != '' AND c_ts <= ts_ms) AS last_ts,
    countIf(c_id != '' AND c_id = consent_ref AND c_action = 'grant' AND c_ts <= ts_ms) AS ref_ok
FROM (` + sentRows + `)
ALL LEFT JOIN (
    SELECT DISTINCT contact_id, channel, id AS c_id, action AS c_action, ts_ms AS c_ts
    FROM consent_log
    WHERE purpose = ? AND contact_id IN (SELECT contact_id FROM events WHERE campaign_id = ? AND kind = 'sent')
) USING (contact_id, channel)
GROUP BY event_id, contact_id, sender_id, channel, ts_ms, consent_ref
HAVING last_action != 'grant' OR consent_ref = '' OR ref_ok = 0
ORDER BY ts_ms, event_id`

// auditWindowQuery finds the free-form sent events of a campaign with no inbound
// message from the contact to the same sender in the window before the send.
// Parameters: campaign, campaign, window in ms.
const auditWindowQuery = `SELECT event_id, contact_id, sender_id, channel, ts_ms, consent_ref,
    maxIf(i_ts, i_ts > 0 AND i_ts <= ts_ms) AS last_inbound
FROM (` + sentRows + ` AND reason = '` + FreeFormReason + `')
ALL LEFT JOIN (
    SELECT DISTINCT contact_id, sender_id, ts_ms AS i_ts
    FROM inbound
    WHERE contact_id IN (SELECT contact_id FROM events WHERE campaign_id = ? AND kind = 'sent')
) USING (contact_id, sender_id)
GROUP BY event_id, contact_id, sender_id, channel, ts_ms, consent_ref
HAVING last_inbound = 0 OR ts_ms - last_inbound > ?
ORDER BY ts_ms, event_id`

const auditCountQuery = `SELECT uniqExact(event_id), uniqExactIf(event_id, reason = '` + FreeFormReason + `')
FROM events WHERE campaign_id = ? AND kind = 'sent'`

// AuditCampaign proves, in ClickHouse, that every sent message of a campaign had valid
// consent for its channel and purpose at send time, and that every free-form message
// (see FreeFormReason) went inside the 24h window. It returns the messages that break
// a rule (RuleNoConsent, RuleConsentRefMissing, RuleConsentRefInvalid,
// RuleOutsideWindow); a compliant campaign has none. Duplicated events are audited once.
// Consent is checked on the channel each message actually went on: a fallback send on
// SMS must name an SMS grant (a WhatsApp grant it names is RuleConsentRefInvalid, and
// its detail says the record is another channel's).
func AuditCampaign(ctx context.Context, conn driver.Conn, campaign, purpose string) (AuditReport, error) {
	rep := AuditReport{Campaign: campaign, Purpose: purpose, Violations: []Violation{}}
	if err := conn.QueryRow(ctx, auditCountQuery, campaign).Scan(&rep.Sent, &rep.FreeForm); err != nil {
		return rep, fmt.Errorf("audit %s: count: %w", campaign, err)
	}
	rows, err := conn.Query(ctx, auditConsentQuery, campaign, purpose, campaign)
	if err != nil {
		return rep, fmt.Errorf("audit %s: consent: %w", campaign, err)
	}
	for rows.Next() {
		var (
			v                  Violation
			tsMS, lastTS       uint64
			lastAction, lastID string
			refOK              uint64
		)
		if err := rows.Scan(&v.EventID, &v.ContactID, &v.SenderID, &v.Channel, &tsMS, &v.ConsentRef,
			&lastAction, &lastID, &lastTS, &refOK); err != nil {
			rows.Close()
			return rep, fmt.Errorf("audit %s: consent: %w", campaign, err)
		}
		v.SentAt = msTime(tsMS)
		if lastAction != string(events.Grant) {
			w := v
			w.Rule = RuleNoConsent
			if lastID == "" {
				w.Detail = fmt.Sprintf("no %s/%s consent record before the send", v.Channel, purpose)
			} else {
				w.Detail = fmt.Sprintf("latest %s/%s record before the send is %s %s at %s", v.Channel, purpose,
					lastAction, lastID, msTime(lastTS).Format(time.RFC3339Nano))
			}
			rep.Violations = append(rep.Violations, w)
		}
		switch {
		case v.ConsentRef == "":
			w := v
			w.Rule, w.Detail = RuleConsentRefMissing, "the sent event names no consent record"
			rep.Violations = append(rep.Violations, w)
		case refOK == 0:
			w := v
			w.Rule = RuleConsentRefInvalid
			w.Detail = fmt.Sprintf("record %s is not a %s/%s grant of contact %d made before the send", v.ConsentRef, v.Channel, purpose, v.ContactID)
			rep.Violations = append(rep.Violations, w)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit %s: consent: %w", campaign, err)
	}
	if err := explainOtherChannel(ctx, conn, rep.Violations); err != nil {
		return rep, fmt.Errorf("audit %s: consent: %w", campaign, err)
	}

	rows, err = conn.Query(ctx, auditWindowQuery, campaign, campaign, uint64(ServiceWindow.Milliseconds()))
	if err != nil {
		return rep, fmt.Errorf("audit %s: window: %w", campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v            Violation
			tsMS, lastIn uint64
		)
		if err := rows.Scan(&v.EventID, &v.ContactID, &v.SenderID, &v.Channel, &tsMS, &v.ConsentRef, &lastIn); err != nil {
			return rep, fmt.Errorf("audit %s: window: %w", campaign, err)
		}
		v.SentAt, v.Rule = msTime(tsMS), RuleOutsideWindow
		if lastIn == 0 {
			v.Detail = fmt.Sprintf("free-form message; no inbound message from the contact to sender %s before it", v.SenderID)
		} else {
			v.Detail = fmt.Sprintf("free-form message; last inbound to sender %s at %s, %s before", v.SenderID,
				msTime(lastIn).Format(time.RFC3339Nano), time.Duration(tsMS-lastIn)*time.Millisecond)
		}
		rep.Violations = append(rep.Violations, v)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit %s: window: %w", campaign, err)
	}
	return rep, nil
}

func msTime(ms uint64) time.Time { return time.UnixMilli(int64(ms)).UTC() }

// ContactAudit is a contact's consent history, its chain check, every message sent to
// it, and why each campaign that considered it did or did not send.
type ContactAudit struct {
	ContactID uint32                 `json:"contact_id"`
	Consent   []events.ConsentRecord `json:"consent"`
	// ChainBroken is the index in Consent of the first record that does not link to
	// the one before it (an edited, removed or inserted row), or -1 when the chain holds.
	ChainBroken int `json:"chain_broken"`
	// Ledger: the chain against the signed checkpoints of the ledger that list the contact.
	Ledger   ContactLedger `json:"ledger"`
	Messages []SentRecord  `json:"messages"`
	// Campaigns: one outcome per campaign with events for the contact, by campaign id.
	Campaigns []CampaignOutcome `json:"campaigns"`
	// History: every distinct event of the contact, oldest first.
	History []ContactEvent `json:"history"`
	// Suppressions in force, by channel (the provider could not reach the contact there:
	// it is skipped whatever its consent until then). Online state: filled by the caller
	// from Redis, not from ClickHouse.
	Suppressions map[string]throttle.Suppression `json:"suppressions"`
}

// ContactEvent is one event of a contact as the audit lists it.
type ContactEvent struct {
	EventID    string    `json:"event_id"`
	CampaignID string    `json:"campaign_id"`
	Kind       string    `json:"kind"`
	At         time.Time `json:"at,omitzero"`
	SenderID   string    `json:"sender_id,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	Reason     string    `json:"reason,omitempty"`     // skipped or deferred: the policy's code
	Until      time.Time `json:"until,omitzero"`       // deferred: when the job was due again
	ErrorCode  int32     `json:"error_code,omitempty"` // failed: the provider's code
	Retryable  bool      `json:"retryable,omitempty"`
}

// Campaign outcomes for a contact, from the furthest to the least final.
const (
	OutcomeRead      = "read"      // read, or clicked, replied or converted in the campaign
	OutcomeDelivered = "delivered" // delivered, not read
	OutcomeSent      = "sent"      // the provider accepted it, no status since
	OutcomeFailed    = "failed"    // the latest decision is a failure (ErrorCode)
	OutcomeSkipped   = "skipped"   // the policy said no (Reason)
	OutcomeDeferred  = "deferred"  // the policy said not yet (Reason, Until) and nothing came after
	OutcomeQueued    = "queued"    // queued, no decision recorded yet
)

// CampaignOutcome answers "why did (or didn't) the contact get this campaign's
// message": the campaign's latest decision about the contact (queued, deferred,
// skipped, failed or sent, by event time), raised to delivered or read when a status
// says so. A campaign with no decision at all (only a late status or an opt-out) takes
// the kind of its latest event.
type CampaignOutcome struct {
	CampaignID string    `json:"campaign_id"`
	Outcome    string    `json:"outcome"`
	At         time.Time `json:"at,omitzero"`          // time of the deciding event
	Reason     string    `json:"reason,omitempty"`     // skipped or deferred
	Until      time.Time `json:"until,omitzero"`       // deferred
	ErrorCode  int32     `json:"error_code,omitempty"` // failed
	Deferrals  int       `json:"deferrals"`            // distinct deferred events of the campaign
	// LastDeferral is the latest deferral, also when a later decision followed it.
	LastDeferral *ContactEvent `json:"last_deferral,omitempty"`
}

// ChainOK reports whether the contact's consent hash chain verified.
func (a ContactAudit) ChainOK() bool { return a.ChainBroken < 0 }

// SentRecord is one sent message with the consent record it relied on, as far as
// consent_log holds it (Consent* fields are empty when it does not).
type SentRecord struct {
	EventID        string    `json:"event_id"`
	CampaignID     string    `json:"campaign_id"`
	ContactID      uint32    `json:"contact_id"`
	SenderID       string    `json:"sender_id"`
	Channel        string    `json:"channel"`
	Template       string    `json:"template"`
	Variant        string    `json:"variant"`
	ProviderMsgID  string    `json:"provider_msg_id"`
	FreeForm       bool      `json:"free_form"`
	SentAt         time.Time `json:"sent_at,omitzero"`
	ConsentRef     string    `json:"consent_ref"`
	ConsentAction  string    `json:"consent_action"`
	ConsentPurpose string    `json:"consent_purpose"`
	ConsentSource  string    `json:"consent_source"`
	ConsentProof   string    `json:"consent_proof"`
	ConsentAt      time.Time `json:"consent_at,omitzero"`
	ConsentHash    string    `json:"consent_hash"`
}

// sentProofQuery lists distinct sent events matching a filter, each joined with the
// consent record it names. %s is the filter on events.
const sentProofQuery = `SELECT event_id, campaign_id, contact_id, sender_id, channel, template, variant,
    provider_msg_id, reason, ts_ms, consent_ref,
    c_action, c_purpose, c_source, c_proof, c_ts, c_hash
FROM (
    SELECT DISTINCT event_id, campaign_id, contact_id, sender_id, channel, template, variant,
        provider_msg_id, reason, ts_ms, consent_ref
    FROM events WHERE kind = 'sent' AND %[1]s
)
ANY LEFT JOIN (
    SELECT id AS consent_ref, any(action) AS c_action, any(purpose) AS c_purpose, any(source) AS c_source,
        any(proof) AS c_proof, any(ts_ms) AS c_ts, any(hash) AS c_hash
    FROM consent_log
    WHERE id IN (SELECT consent_ref FROM events WHERE kind = 'sent' AND %[1]s)
    GROUP BY id
) USING consent_ref
ORDER BY ts_ms, event_id`

// sentProofs streams the sent events that match filter (with args used twice) to fn.
func sentProofs(ctx context.Context, conn driver.Conn, filter string, args []any, fn func(SentRecord) error) error {
	rows, err := conn.Query(ctx, fmt.Sprintf(sentProofQuery, filter), append(append([]any{}, args...), args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r          SentRecord
			reason     string
			tsMS, cTS  uint64
			cAct, cPur string
		)
		if err := rows.Scan(&r.EventID, &r.CampaignID, &r.ContactID, &r.SenderID, &r.Channel, &r.Template,
			&r.Variant, &r.ProviderMsgID, &reason, &tsMS, &r.ConsentRef,
			&cAct, &cPur, &r.ConsentSource, &r.ConsentProof, &cTS, &r.ConsentHash); err != nil {
			return err
		}
		r.FreeForm = reason == FreeFormReason
		r.SentAt = msTime(tsMS)
		r.ConsentAction, r.ConsentPurpose = cAct, cPur
		if cTS > 0 {
			r.ConsentAt = msTime(cTS)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditContact returns a contact's consent ledger with its hash chain verified
// (events.VerifyChain) and judged against the ledger checkpoints that list the contact
// (Ledger; their signatures and digests are verified when trusted keys are given), every
// message sent to it, oldest first, its whole event history and, per campaign, why it
// was or was not sent (see CampaignOutcome).
func AuditContact(ctx context.Context, conn driver.Conn, contact uint32, keys ...ed25519.PublicKey) (ContactAudit, error) {
	a := ContactAudit{ContactID: contact, Messages: []SentRecord{}, Campaigns: []CampaignOutcome{}, History: []ContactEvent{}, Suppressions: map[string]throttle.Suppression{}}
	recs, err := ConsentLedger(ctx, conn, contact)
	if err != nil {
		return a, fmt.Errorf("audit contact: %w", err)
	}
	if recs == nil {
		recs = []events.ConsentRecord{}
	}
	a.Consent, a.ChainBroken = recs, events.VerifyChain(recs)
	if a.Ledger, err = contactLedger(ctx, conn, contact, recs, a.ChainBroken, keys); err != nil {
		return a, fmt.Errorf("audit contact %d: checkpoints: %w", contact, err)
	}
	err = sentProofs(ctx, conn, "contact_id = ?", []any{contact}, func(r SentRecord) error {
		a.Messages = append(a.Messages, r)
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("audit contact %d: messages: %w", contact, err)
	}
	if a.History, err = contactHistory(ctx, conn, contact); err != nil {
		return a, fmt.Errorf("audit contact %d: history: %w", contact, err)
	}
	a.Campaigns = campaignOutcomes(a.History)
	return a, nil
}

// contactHistoryQuery lists a contact's distinct events. A copy of an event that differs
// in a listed field is listed too.
const contactHistoryQuery = `SELECT DISTINCT event_id, campaign_id, kind, ts_ms, sender_id, channel, reason,
    toUInt32(until) AS until_s, error_code, retryable
FROM events WHERE contact_id = ?
ORDER BY ts_ms, event_id`

func contactHistory(ctx context.Context, conn driver.Conn, contact uint32) ([]ContactEvent, error) {
	rows, err := conn.Query(ctx, contactHistoryQuery, contact)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ContactEvent{}
	for rows.Next() {
		var (
			e         ContactEvent
			tsMS      uint64
			untilS    uint32
			retryable uint8
		)
		if err := rows.Scan(&e.EventID, &e.CampaignID, &e.Kind, &tsMS, &e.SenderID, &e.Channel, &e.Reason,
			&untilS, &e.ErrorCode, &retryable); err != nil {
			return nil, err
		}
		e.At, e.Retryable = msTime(tsMS), retryable != 0
		if untilS > 0 {
			e.Until = time.Unix(int64(untilS), 0).UTC()
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// decisions rank the events that decide a campaign's outcome when they share a time:
// the one later in the send path wins.
var decisions = map[string]int{"queued": 1, "deferred": 2, "skipped": 3, "failed": 4, "sent": 5}

// campaignOutcomes summarizes history (oldest first) per campaign; events without a
// campaign (an unattributed conversion) belong to none.
func campaignOutcomes(history []ContactEvent) []CampaignOutcome {
	type acc struct {
		decision, last, lastDeferral *ContactEvent
		delivered, read              bool
		deferrals                    map[string]bool
	}
	byCampaign := map[string]*acc{}
	for i := range history {
		e := &history[i]
		if e.CampaignID == "" {
			continue
		}
		a := byCampaign[e.CampaignID]
		if a == nil {
			a = &acc{deferrals: map[string]bool{}}
			byCampaign[e.CampaignID] = a
		}
		a.last = e
		switch e.Kind {
		case "delivered":
			a.delivered = true
		case "read", "clicked", "replied", "converted":
			a.read = true
		}
		rank, ok := decisions[e.Kind]
		if !ok {
			continue
		}
		if e.Kind == "deferred" {
			a.deferrals[e.EventID] = true
			if a.lastDeferral == nil || !e.At.Before(a.lastDeferral.At) {
				a.lastDeferral = e
			}
		}
		if d := a.decision; d == nil || e.At.After(d.At) || (e.At.Equal(d.At) && rank >= decisions[d.Kind]) {
			a.decision = e
		}
	}
	ids := make([]string, 0, len(byCampaign))
	for id := range byCampaign {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]CampaignOutcome, 0, len(byCampaign))
	for _, id := range ids {
		a := byCampaign[id]
		o := CampaignOutcome{CampaignID: id, Deferrals: len(a.deferrals)}
		if a.lastDeferral != nil {
			d := *a.lastDeferral
			o.LastDeferral = &d
		}
		d := a.decision
		if d == nil { // only statuses or engagement (e.g. a late webhook): the latest says most
			d = a.last
		}
		if d != nil {
			o.Outcome, o.At = d.Kind, d.At
			switch d.Kind {
			case "skipped":
				o.Reason = d.Reason
			case "deferred":
				o.Reason, o.Until = d.Reason, d.Until
			case "failed":
				o.ErrorCode = d.ErrorCode
			}
		}
		switch {
		case a.read:
			o.Outcome = OutcomeRead
		case a.delivered:
			o.Outcome = OutcomeDelivered
		}
		out = append(out, o)
	}
	return out
}

// ExportSent streams to fn every message sent in [from, to), oldest first, with the
// consent record it relied on. Memory stays constant whatever the range.
func ExportSent(ctx context.Context, conn driver.Conn, from, to time.Time, fn func(SentRecord) error) error {
	err := sentProofs(ctx, conn, "ts_ms >= ? AND ts_ms < ?",
		[]any{uint64(from.UnixMilli()), uint64(to.UnixMilli())}, fn)
	if err != nil {
		return fmt.Errorf("export sent %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return nil
}
