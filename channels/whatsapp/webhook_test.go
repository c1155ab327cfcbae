package whatsapp_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/throttle"
)

func notification(t *testing.T, fixture string) *graph.Notification {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("graph", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	n, err := graph.ParseNotification(b)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDecode(t *testing.T) {
	const pnid = "106540352242922"
	t.Run("statuses", func(t *testing.T) {
		reports, inbound, prefs := whatsapp.Decode(notification(t, "statuses.json"))
		key := dispatcher.Key{Campaign: "42", Contact: 9}
		id := "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjU0RkQ4RjE2NTg2NjZBQ0IA"
		want := []dispatcher.Report{
			{Kind: events.Sent, Key: key, Channel: "whatsapp", SenderRef: pnid, MessageID: id, Time: time.Unix(1750030070, 0).UTC()},
			{Kind: events.Failed, Key: key, Channel: "whatsapp", SenderRef: pnid, MessageID: id, Time: time.Unix(1750030073, 0).UTC(),
				Code: 131049, Action: dispatcher.ActionHoldMarketing, Signal: throttle.SignalHoldMarketing},
		}
		if len(reports) != len(want) || len(inbound) != 0 || len(prefs) != 0 {
			t.Fatalf("reports %+v, inbound %+v, preferences %+v; want %+v only", reports, inbound, prefs, want)
		}
		for i := range want {
			if reports[i] != want[i] {
				t.Errorf("report %d: %+v, want %+v", i, reports[i], want[i])
			}
		}
	})
	t.Run("not Herald's", func(t *testing.T) {
		n := notification(t, "statuses.json")
		n.Entry[0].Changes[0].Value.Statuses[0].BizOpaqueCallbackData = ""
		n.Entry[0].Changes[0].Value.Statuses[1].BizOpaqueCallbackData = "someone else's"
		if reports, _, _ := whatsapp.Decode(n); len(reports) != 0 {
			t.Fatalf("reports %+v of messages Herald did not send", reports)
		}
	})
	t.Run("inbound button", func(t *testing.T) {
		_, inbound, _ := whatsapp.Decode(notification(t, "inbound_button.json"))
		want := dispatcher.Inbound{Channel: "whatsapp", From: "+16505551234", SenderRef: pnid,
			MessageID: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTg0QjI0NjE1NUY5QjA4NjE0RgA=", Type: "button", Text: "Stop promotions",
			ReplyTo: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjU0RkQ4RjE2NTg2NjZBQ0IA", Time: time.Unix(1750025200, 0).UTC()}
		if len(inbound) != 1 || inbound[0] != want {
			t.Fatalf("inbound %+v, want %+v", inbound, want)
		}
	})
	t.Run("user preferences", func(t *testing.T) {
		_, _, prefs := whatsapp.Decode(notification(t, "user_preferences.json"))
		want := dispatcher.Preference{Channel: "whatsapp", From: "+16505551234", SenderRef: pnid, ID: "user_preferences:1750025500",
			Proof: "whatsapp user_preferences stop at 1750025500: User requested to stop marketing messages"}
		if len(prefs) != 1 || prefs[0] != want {
			t.Fatalf("preferences %+v, want %+v", prefs, want)
		}
	})
}
