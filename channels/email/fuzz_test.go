package email

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/events"
)

// FuzzParseReport feeds arbitrary messages to the DSN/ARF parser, seeded with the
// realistic reports of testdata/: it must never panic, and whatever it returns must be
// a report the core can act on.
func FuzzParseReport(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		b = ResignMessageIDs(b, testKey)
		f.Add(b)
		f.Add([]byte(strings.ReplaceAll(string(b), "\n", "\r\n")))
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n\r\n--B--"))
	actions := Actions()
	f.Fuzz(func(t *testing.T, raw []byte) {
		reports, err := ParseReport(raw, testKey)
		if err != nil && len(reports) > 0 {
			t.Fatalf("reports %+v with error %v", reports, err)
		}
		for _, r := range reports {
			if r.Campaign == "" || r.Channel != ChannelName || !r.Kind.Valid() || !slices.Contains(actions, r.Action) {
				t.Fatalf("bad report %+v", r)
			}
			if r.Kind == events.Failed && (r.Code < 200 || r.Code > 599) {
				t.Fatalf("failed report with code %d", r.Code)
			}
		}
	})
}

// FuzzMessageID holds VerifyMessageID to NewMessageID: every id it makes verifies back
// under its key, and under no other.
func FuzzMessageID(f *testing.F) {
	f.Add("42", uint32(9), "", "shop.example")
	f.Add("a.b=c", uint32(0), "v.1", "x")
	f.Fuzz(func(t *testing.T, campaign string, contact uint32, variant, domain string) {
		if campaign == "" || strings.ContainsAny(domain, "@<> \r\n") {
			return
		}
		id := NewMessageID(campaign, contact, variant, domain, testKey)
		key, v, ok := VerifyMessageID(id, testKey)
		if len(id) <= 1024 && (!ok || key.Campaign != campaign || key.Contact != contact || v != variant) {
			t.Fatalf("%q → %+v %q %v", id, key, v, ok)
		}
		if _, _, ok := VerifyMessageID(id, MessageKey("another key, of another Herald!")); ok {
			t.Fatalf("%q verifies under another key", id)
		}
	})
}
