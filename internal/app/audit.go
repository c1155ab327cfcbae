package app

import (
	"context"
	"crypto/ed25519"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/throttle"
)

// AuditCampaign proves every sent message of a campaign had consent for its channel
// and purpose at send time and no free-form message left the 24h window. purpose ""
// is the campaign's own (read from comp, which may then not be nil: a campaign it does
// not know wraps dispatcher.ErrNotFound).
func AuditCampaign(ctx context.Context, comp *Components, conn driver.Conn, campaign, purpose string) (analytics.AuditReport, error) {
	if purpose == "" {
		cp, err := comp.Campaigns.Get(ctx, campaign)
		if err != nil {
			return analytics.AuditReport{}, err
		}
		purpose = cp.Purpose
	}
	return analytics.AuditCampaign(ctx, conn, campaign, purpose)
}

// AuditContact is a contact's consent history with its hash chain verified and checked
// against the ledger's signed checkpoints (with keys; none: not checked), every
// message sent to it, why each campaign did or did not send, and the suppressions in
// force on each channel (from Redis).
func AuditContact(ctx context.Context, comp *Components, conn driver.Conn, id uint32, keys ...ed25519.PublicKey) (analytics.ContactAudit, error) {
	a, err := analytics.AuditContact(ctx, conn, id, keys...)
	if err != nil {
		return a, err
	}
	a.Suppressions = map[string]throttle.Suppression{}
	for _, ch := range Channels {
		sups, err := comp.Policy.Suppressions(ctx, ch, []uint32{id})
		if err != nil {
			return a, err
		}
		if sups[0].Active(time.Now()) {
			a.Suppressions[ch] = sups[0]
		}
	}
	return a, nil
}

// TrustedKeys is the public half of the configured ledger signing key, if any: the
// keys AuditContact checks against when the caller names none.
func TrustedKeys(cfg Config) []ed25519.PublicKey {
	if cfg.LedgerKey == nil {
		return nil
	}
	return []ed25519.PublicKey{cfg.LedgerKey.Public().(ed25519.PublicKey)}
}

// ExportSent streams every message sent in [from, to) with the consent record it
// relied on, oldest first. from not before to is a *FieldError (from).
func ExportSent(ctx context.Context, conn driver.Conn, from, to time.Time, fn func(analytics.SentRecord) error) error {
	if !from.Before(to) {
		return fieldErr("from", "%s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return analytics.ExportSent(ctx, conn, from, to, fn)
}

// SentRecordHeader and SentRecordRow are the CSV of ExportSent.
var SentRecordHeader = []string{"event_id", "campaign_id", "contact_id", "sender_id", "channel", "template", "variant",
	"provider_msg_id", "free_form", "sent_at", "consent_ref", "consent_action", "consent_purpose", "consent_source",
	"consent_proof", "consent_at", "consent_hash"}

// SentRecordRow is one row of ExportSent's CSV.
func SentRecordRow(r analytics.SentRecord) []string {
	return []string{r.EventID, r.CampaignID, strconv.FormatUint(uint64(r.ContactID), 10), r.SenderID, r.Channel, r.Template,
		r.Variant, r.ProviderMsgID, strconv.FormatBool(r.FreeForm), csvTime(r.SentAt), r.ConsentRef, r.ConsentAction,
		r.ConsentPurpose, r.ConsentSource, r.ConsentProof, csvTime(r.ConsentAt), r.ConsentHash}
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
