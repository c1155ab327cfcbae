package analytics

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// A campaign that fell back from WhatsApp to SMS is audited on the channel each message
// actually went on: the SMS send must name an SMS grant. Contacts:
//
//	1 WhatsApp and SMS grants; the fallback send names the SMS grant (ok)
//	2 a WhatsApp grant only; the SMS send names it (forged) → no_consent, consent_ref_invalid
//	3 both grants; the SMS send names the WhatsApp one → consent_ref_invalid
//	4 both grants, the SMS one revoked before the fallback send → no_consent
func TestAuditCampaignChannelActuallyUsed(t *testing.T) {
	conn := migrated(t)
	sms := func(id string, action events.ConsentAction, at time.Duration) ledgerStep {
		return ledgerStep{id: id, action: action, purpose: "marketing", channel: "sms", at: at}
	}
	var recs []events.ConsentRecord
	recs = append(recs, ledger(1, grant("wa1", 0), sms("sms1", events.Grant, time.Minute))...)
	recs = append(recs, ledger(2, grant("wa2", 0))...)
	recs = append(recs, ledger(3, grant("wa3", 0), sms("sms3", events.Grant, time.Minute))...)
	recs = append(recs, ledger(4, grant("wa4", 0), sms("sms4", events.Grant, time.Minute), sms("r4", events.Revoke, 30*time.Minute))...)
	insertConsent(t, conn, recs)

	var evs []events.Event
	send := func(c uint32, ch, ref string, at time.Duration) events.Event {
		e := events.New(events.Sent, "fb", c, baseTime.Add(at))
		if ch == "sms" {
			e.ID = events.ID("fb", c, events.Sent, "sms")
		}
		e.Channel, e.SenderID, e.ConsentRef = ch, ch+"-sender", ref
		return e
	}
	for c, smsRef := range map[uint32]string{1: "sms1", 2: "wa2", 3: "wa3", 4: "sms4"} {
		wa := []string{"", "wa1", "wa2", "wa3", "wa4"}[c]
		fb := events.New(events.Fallback, "fb", c, baseTime.Add(time.Hour+time.Second))
		fb.Channel, fb.FromChannel, fb.Reason, fb.ErrorCode = "sms", "whatsapp", FallbackPermanentFailure, 131026
		evs = append(evs, send(c, "whatsapp", wa, time.Hour), fb, send(c, "sms", smsRef, time.Hour+2*time.Second))
	}
	insertEvents(t, conn, append(evs, evs...))

	rep, err := AuditCampaign(context.Background(), conn, "fb", "marketing")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 8 {
		t.Errorf("%d sends audited, want 8 (two per contact)", rep.Sent)
	}
	sortViolations(rep.Violations)
	type key struct {
		contact       uint32
		rule, channel string
	}
	var got []key
	for _, v := range rep.Violations {
		got = append(got, key{v.ContactID, v.Rule, v.Channel})
	}
	want := []key{
		{2, RuleConsentRefInvalid, "sms"}, {2, RuleNoConsent, "sms"},
		{3, RuleConsentRefInvalid, "sms"},
		{4, RuleNoConsent, "sms"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("violations\n got %v\nwant %v", got, want)
	}
	for _, v := range rep.Violations {
		if v.Rule == RuleConsentRefInvalid && !strings.Contains(v.Detail, "whatsapp/marketing grant") {
			t.Errorf("contact %d: detail %q does not say the record is a WhatsApp grant", v.ContactID, v.Detail)
		}
	}
}
