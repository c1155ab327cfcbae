package dispatcher

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
)

// Each channel sends to its own identity of a contact, and a contact without it is
// skipped with the channel's reason.
func TestAddressAndSkipReasons(t *testing.T) {
	full := segments.Contact{ID: 1, Phone: "+66812345678", Email: "a@example.com", TelegramChatID: "123456789", LineUserID: "U4af4980629d8ef6e1cc5d5a27e6bf99c"}
	for _, tc := range []struct {
		channel, want, reason string
	}{
		{"whatsapp", full.Phone, ReasonNoPhone},
		{"", full.Phone, ReasonNoPhone}, // a campaign stored without a channel is on WhatsApp
		{"sms", full.Phone, ReasonNoPhone},
		{"email", full.Email, ReasonNoEmail},
		{"telegram", full.TelegramChatID, ReasonNoTelegram},
		{"line", full.LineUserID, ReasonNoLine},
	} {
		if got := Address(tc.channel, full); got != tc.want {
			t.Errorf("Address(%q) = %q, want %q", tc.channel, got, tc.want)
		}
		if got := NoAddressReason(tc.channel); got != tc.reason {
			t.Errorf("NoAddressReason(%q) = %q, want %q", tc.channel, got, tc.reason)
		}
	}
	// A contact known by one identity has no address on the other channels.
	for _, c := range []segments.Contact{{ID: 2, TelegramChatID: "-1001234567890"}, {ID: 3, LineUserID: full.LineUserID}, {ID: 4, Email: full.Email}} {
		n := 0
		for _, ch := range []string{"whatsapp", "email", "telegram", "line"} {
			if Address(ch, c) != "" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("contact %+v has an address on %d channels", c, n)
		}
	}
	if ReasonNoTelegram != "no_telegram" || ReasonNoLine != "no_line" {
		t.Errorf("reasons %q, %q", ReasonNoTelegram, ReasonNoLine)
	}
}

func TestSenderValidateTelegramAndLine(t *testing.T) {
	for _, tc := range []struct {
		s       Sender
		wantErr string
	}{
		{Sender{ID: "tg", Channel: "telegram", Token: "123:abc", Rate: 30}, ""},
		{Sender{ID: "tg", Channel: "telegram", Token: "123:abc", Rate: 30, Settings: map[string]string{"paid_broadcast": "true"}}, ""},
		{Sender{ID: "tg", Channel: "telegram", Token: "123:abc", Rate: 30, Settings: map[string]string{"paid_broadcast": "maybe"}}, "paid_broadcast"},
		{Sender{ID: "tg", Channel: "telegram", Rate: 30}, "bot token"},
		{Sender{ID: "ln", Channel: "line", Token: "cat", Rate: 100, Settings: map[string]string{"channel_secret": "s"}}, ""},
		{Sender{ID: "ln", Channel: "line", Token: "cat", Rate: 100}, "channel_secret"},
		{Sender{ID: "ln", Channel: "line", Rate: 100, Settings: map[string]string{"channel_secret": "s"}}, "channel access token"},
		{Sender{ID: "x", Channel: "fax", Token: "t", Rate: 1}, "want whatsapp, email, sms, telegram or line"},
	} {
		err := tc.s.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tc.s, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: %v, want an error about %s", tc.s, err, tc.wantErr)
		}
	}
}

// Contacts known only by a Telegram chat id or a LINE user id are skipped in a
// WhatsApp campaign with no_phone, as email-only contacts are.
func TestChannelOnlyContactsAreSkipped(t *testing.T) {
	r := newRig(t, 2)
	r.addContacts(t, []segments.Contact{{TelegramChatID: "123456789", Tags: []string{"t"}}, {LineUserID: "U4af4980629d8ef6e1cc5d5a27e6bf99c", Tags: []string{"t"}}})
	ctx, ch := r.run(t)
	cp, err := r.campaigns.Create(ctx, Campaign{Segment: "t", Template: "promo", Senders: []string{"s1"}}, r.senders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.campaigns.Launch(ctx, cp.ID, nil); err != nil {
		t.Fatal(err)
	}
	st := r.waitCompleted(t, cp.ID)
	if st.Sent != 2 || st.Skipped != 2 {
		t.Fatalf("status %+v, want 2 sent and the two channel-only contacts skipped", st)
	}
	outs := r.outcomes(t, cp.ID)
	for _, id := range r.ids[2:] {
		if e := outs[id]; e.Kind != events.Skipped || e.Reason != ReasonNoPhone {
			t.Errorf("contact %d: %s %q, want skipped %s", id, e.Kind, e.Reason, ReasonNoPhone)
		}
	}
	if accepted, _ := ch.counts(); len(accepted) != 2 {
		t.Fatalf("%d messages, want 2", len(accepted))
	}
}
