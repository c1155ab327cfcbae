package graph

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseFixture(t *testing.T, name string) Value {
	t.Helper()
	n, err := ParseNotification(fixture(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(n.Entry) != 1 || len(n.Entry[0].Changes) != 1 {
		t.Fatalf("%s: want one entry with one change, got %+v", name, n)
	}
	if n.Entry[0].ID != "102290129340398" {
		t.Errorf("%s: entry id %q", name, n.Entry[0].ID)
	}
	v := n.Entry[0].Changes[0].Value
	if v.Metadata.PhoneNumberID != "106540352242922" || v.Metadata.DisplayPhoneNumber != "15550783881" {
		t.Errorf("%s: metadata %+v", name, v.Metadata)
	}
	return v
}

func TestParseNotificationStatuses(t *testing.T) {
	v := parseFixture(t, "statuses.json")
	if len(v.Statuses) != 2 {
		t.Fatalf("statuses: %+v", v.Statuses)
	}
	sent, failed := v.Statuses[0], v.Statuses[1]
	if sent.Status != StatusSent || sent.Pricing == nil || !sent.Pricing.Billable || sent.Pricing.PricingModel != "PMP" ||
		sent.Pricing.Category != "marketing" || sent.Pricing.Type != "regular" {
		t.Errorf("sent: %+v pricing %+v", sent, sent.Pricing)
	}
	if failed.Status != StatusFailed || len(failed.Errors) != 1 || failed.Errors[0].Code != 131049 ||
		failed.Errors[0].ErrorData == nil || !strings.Contains(failed.Errors[0].ErrorData.Details, "healthy ecosystem") {
		t.Errorf("failed: %+v", failed)
	}
	if got := ClassifyCode(failed.Errors[0].Code).Action; got != ActionHoldMarketing {
		t.Errorf("classify 131049 from webhook: %v", got)
	}
	if failed.BizOpaqueCallbackData != "42:9" {
		t.Errorf("callback data %q, want 42:9", failed.BizOpaqueCallbackData)
	}
	ts, err := ParseTimestamp(failed.Timestamp)
	if err != nil || !ts.Equal(time.Unix(1750030073, 0)) {
		t.Errorf("timestamp %q -> %v %v", failed.Timestamp, ts, err)
	}
	if failed.RecipientID != "16505551234" {
		t.Errorf("recipient %q", failed.RecipientID)
	}
}

func TestParseNotificationInbound(t *testing.T) {
	t.Run("text STOP", func(t *testing.T) {
		v := parseFixture(t, "inbound_text_stop.json")
		if len(v.Contacts) != 1 || v.Contacts[0].WaID != "16505551234" || v.Contacts[0].Profile.Name != "Sheena" {
			t.Errorf("contacts %+v", v.Contacts)
		}
		if len(v.Messages) != 1 || v.Messages[0].Type != "text" || v.Messages[0].Text == nil || v.Messages[0].Text.Body != "STOP" {
			t.Fatalf("messages %+v", v.Messages)
		}
		if v.Messages[0].From != "16505551234" || v.Messages[0].Timestamp != "1750025136" {
			t.Errorf("message %+v", v.Messages[0])
		}
	})
	t.Run("quick-reply button", func(t *testing.T) {
		v := parseFixture(t, "inbound_button.json")
		m := v.Messages[0]
		if m.Type != "button" || m.Button == nil || m.Button.Payload != "unsubscribe_marketing" || m.Button.Text != "Stop promotions" {
			t.Errorf("button %+v", m)
		}
		if m.Context == nil || !strings.HasPrefix(m.Context.ID, "wamid.") {
			t.Errorf("context %+v", m.Context)
		}
	})
	t.Run("interactive button_reply", func(t *testing.T) {
		m := parseFixture(t, "interactive_button_reply.json").Messages[0]
		if m.Type != "interactive" || m.Interactive == nil || m.Interactive.Type != "button_reply" ||
			m.Interactive.ButtonReply == nil || *m.Interactive.ButtonReply != (Reply{ID: "yes-confirm", Title: "Yes"}) {
			t.Errorf("interactive %+v", m.Interactive)
		}
	})
	t.Run("interactive list_reply", func(t *testing.T) {
		m := parseFixture(t, "interactive_list_reply.json").Messages[0]
		if m.Interactive == nil || m.Interactive.Type != "list_reply" || m.Interactive.ListReply == nil ||
			*m.Interactive.ListReply != (Reply{ID: "size-m", Title: "Medium"}) || m.Interactive.ButtonReply != nil {
			t.Errorf("interactive %+v", m.Interactive)
		}
	})
	t.Run("user_preferences", func(t *testing.T) {
		n, err := ParseNotification(fixture(t, "user_preferences.json"))
		if err != nil {
			t.Fatal(err)
		}
		ch := n.Entry[0].Changes[0]
		if ch.Field != "user_preferences" || len(ch.Value.UserPreferences) != 1 {
			t.Fatalf("change %+v", ch)
		}
		p := ch.Value.UserPreferences[0]
		if p.WaID != "16505551234" || p.Category != "marketing_messages" || p.Value != "stop" || p.Timestamp != 1750025500 {
			t.Errorf("preference %+v", p)
		}
	})
}

func TestParseNotificationRejects(t *testing.T) {
	const st = `{"id":"wamid.1","status":"delivered","timestamp":"1750030073","recipient_id":"16505551234"}`
	wrap := func(value string) string {
		return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":` + value + `}]}]}`
	}
	cases := []struct {
		name, body, want string
	}{
		{"not json", `<html>`, "decode JSON"},
		{"empty", ``, "decode JSON"},
		{"trailing garbage", wrap(`{"statuses":[`+st+`]}`) + `x`, "decode JSON"},
		{"wrong object", `{"object":"page","entry":[{"id":"1"}]}`, `object is "page"`},
		{"no object", `{"entry":[{"id":"1"}]}`, `object is ""`},
		{"no entry", `{"object":"whatsapp_business_account"}`, "no entry"},
		{"empty entry", `{"object":"whatsapp_business_account","entry":[]}`, "no entry"},
		{"status without id", wrap(`{"statuses":[{"status":"sent","timestamp":"1","recipient_id":"1"}]}`), "statuses[0]: missing id"},
		{"status without status", wrap(`{"statuses":[{"id":"w","timestamp":"1","recipient_id":"1"}]}`), "missing status"},
		{"status without recipient", wrap(`{"statuses":[{"id":"w","status":"sent","timestamp":"1"}]}`), "missing recipient_id"},
		{"unknown status", wrap(`{"statuses":[{"id":"w","status":"bounced","timestamp":"1","recipient_id":"1"}]}`), `unknown status "bounced"`},
		{"bad timestamp", wrap(`{"statuses":[{"id":"w","status":"sent","timestamp":"yesterday","recipient_id":"1"}]}`), "want unix seconds"},
		{"missing timestamp", wrap(`{"statuses":[{"id":"w","status":"sent","recipient_id":"1"}]}`), "missing timestamp"},
		{"numeric timestamp", wrap(`{"statuses":[{"id":"w","status":"sent","timestamp":1,"recipient_id":"1"}]}`), "decode JSON"},
		{"second status bad", wrap(`{"statuses":[` + st + `,{"id":"w2","status":"sent","timestamp":"-5","recipient_id":"1"}]}`), "statuses[1] (w2)"},
		{"message without from", wrap(`{"messages":[{"id":"w","timestamp":"1","type":"text"}]}`), "missing from"},
		{"message bad timestamp", wrap(`{"messages":[{"id":"w","from":"1","timestamp":"1.5","type":"text"}]}`), "want unix seconds"},
		{"entry not array", `{"object":"whatsapp_business_account","entry":{}}`, "decode JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := ParseNotification([]byte(c.body))
			if err == nil {
				t.Fatalf("accepted %s: %+v", c.body, n)
			}
			if !errors.Is(err, ErrBadNotification) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseNotificationToleratesUnknownFields(t *testing.T) {
	body := `{"object":"whatsapp_business_account","new_top":1,"entry":[{"id":"1","time":1750030073,"changes":[{"field":"messages","value":{
		"messaging_product":"whatsapp","future":{"a":[1,2]},
		"statuses":[{"id":"w","status":"played","timestamp":"1750030073","recipient_id":"1","recipient_type":"group","extra":true}]}}]}]}`
	n, err := ParseNotification([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if s := n.Entry[0].Changes[0].Value.Statuses[0]; s.Status != StatusPlayed || s.ID != "w" {
		t.Errorf("status %+v", s)
	}
}

func TestSignatureRoundTrip(t *testing.T) {
	body := fixture(t, "statuses.json")
	sig := Sign("app-secret", body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	if err := VerifySignature("app-secret", body, sig); err != nil {
		t.Fatalf("verify own signature: %v", err)
	}
	if err := VerifySignature("app-secret", body, strings.ToUpper(sig[:7])+strings.ToUpper(sig[7:])); err != nil {
		t.Errorf("upper-case hex: %v", err)
	}
	// A known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
	const want = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got := Sign("key", []byte("The quick brown fox jumps over the lazy dog")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}

	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] ^= 1
	cases := []struct {
		name, secret, header string
		body                 []byte
		want                 error
	}{
		{"tampered body", "app-secret", sig, tampered, ErrSignatureMismatch},
		{"other secret", "other", sig, body, ErrSignatureMismatch},
		{"missing", "app-secret", "", body, ErrSignatureMissing},
		{"blank", "app-secret", "   ", body, ErrSignatureMissing},
		{"sha1 prefix", "app-secret", "sha1=" + sig[7:], body, ErrSignatureMalformed},
		{"no prefix", "app-secret", sig[7:], body, ErrSignatureMalformed},
		{"short", "app-secret", sig[:len(sig)-2], body, ErrSignatureMalformed},
		{"not hex", "app-secret", "sha256=" + strings.Repeat("zz", 32), body, ErrSignatureMalformed},
		{"no secret", "", sig, body, ErrNoAppSecret},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifySignature(c.secret, c.body, c.header)
			if !errors.Is(err, c.want) {
				t.Errorf("VerifySignature = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyChallenge(t *testing.T) {
	q := func(s string) url.Values {
		v, err := url.ParseQuery(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name, query, token, want string
		ok                       bool
	}{
		{"match", "hub.mode=subscribe&hub.verify_token=T0k&hub.challenge=1158201444", "T0k", "1158201444", true},
		{"wrong token", "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1", "T0k", "", false},
		{"wrong mode", "hub.mode=unsubscribe&hub.verify_token=T0k&hub.challenge=1", "T0k", "", false},
		{"no challenge", "hub.mode=subscribe&hub.verify_token=T0k", "T0k", "", false},
		{"empty configured token", "hub.mode=subscribe&hub.verify_token=&hub.challenge=1", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := VerifyChallenge(q(c.query), c.token)
			if got != c.want || ok != c.ok {
				t.Errorf("VerifyChallenge = %q %v, want %q %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestParseTimestamp(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1750030073", 1750030073, true},
		{"0", 0, true},
		{"253402300799", 253402300799, true},
		{"253402300800", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1e9", 0, false},
		{"99999999999999999999999", 0, false},
	} {
		got, err := ParseTimestamp(c.in)
		if (err == nil) != c.ok || (c.ok && got.Unix() != c.want) {
			t.Errorf("ParseTimestamp(%q) = %v, %v", c.in, got, err)
		}
		if c.ok && got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) not UTC", c.in)
		}
	}
}
