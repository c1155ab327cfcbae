package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func chain(n int) []ConsentRecord {
	var out []ConsentRecord
	prev := ""
	for i := 0; i < n; i++ {
		a := Grant
		if i%2 == 1 {
			a = Revoke
		}
		r := ConsentRecord{ID: "cr_" + string(rune('a'+i)), ContactID: 7, Channel: "whatsapp", Purpose: "marketing", Action: a,
			Source: "keyword", Proof: "msg", Time: time.Date(2026, 11, 21, 12, 0, i, 123456789, time.UTC)}
		r.Seal(prev)
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func TestConsentChainDetectsTampering(t *testing.T) {
	recs := chain(4)
	if i := VerifyChain(recs); i != -1 {
		t.Fatalf("intact chain broken at %d", i)
	}
	for name, tc := range map[string]struct {
		mutate func([]ConsentRecord) []ConsentRecord
		at     int
	}{
		"action flipped":  {func(r []ConsentRecord) []ConsentRecord { r[1].Action = Grant; return r }, 1},
		"time moved":      {func(r []ConsentRecord) []ConsentRecord { r[2].Time = r[2].Time.Add(time.Hour); return r }, 2},
		"proof edited":    {func(r []ConsentRecord) []ConsentRecord { r[0].Proof = "other"; return r }, 0},
		"record removed":  {func(r []ConsentRecord) []ConsentRecord { return append(r[:1:1], r[2:]...) }, 1},
		"records swapped": {func(r []ConsentRecord) []ConsentRecord { r[1], r[2] = r[2], r[1]; return r }, 1},
		"resealed alone":  {func(r []ConsentRecord) []ConsentRecord { r[1].Action = Grant; r[1].Seal(r[1].PrevHash); return r }, 2},
	} {
		got := VerifyChain(tc.mutate(chain(4)))
		if got != tc.at {
			t.Errorf("%s: broken at %d, want %d", name, got, tc.at)
		}
	}
}

func TestUnmarshalConsentChecksItsHash(t *testing.T) {
	r := chain(1)[0]
	b, _ := r.Marshal()
	got, err := UnmarshalConsent(b)
	if err != nil || got.Hash != r.Hash || !got.Time.Equal(r.Time) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	r.Actor = "someone else" // edited after sealing
	b, _ = r.Marshal()
	if _, err := UnmarshalConsent(b); err == nil {
		t.Fatal("a record whose hash does not match its contents was accepted")
	}
	for _, bad := range []string{`{}`, `{"id":"x","contact":1,"channel":"w","purpose":"m","action":"maybe"}`, `not json`} {
		if _, err := UnmarshalConsent([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestEventIdentity(t *testing.T) {
	if ID("1", 9, Sent, "") != ID("1", 9, Sent, "") {
		t.Fatal("event ids are not deterministic")
	}
	ids := map[string]bool{}
	for _, id := range []string{ID("1", 9, Sent, ""), ID("1", 9, Delivered, ""), ID("1", 91, Sent, ""), ID("19", 1, Sent, ""), ID("1", 9, Clicked, "0"), ID("1", 9, Clicked, "1")} {
		if ids[id] {
			t.Fatalf("two different events share id %s", id)
		}
		ids[id] = true
	}
	e := New(Read, "4", 2, time.Unix(1750030080, 0))
	b, _ := e.Marshal()
	got, err := Unmarshal(b)
	if err != nil || got != e {
		t.Fatalf("round trip %+v, %v", got, err)
	}
	for _, bad := range []string{`{"kind":"sent","ts":"2026-01-01T00:00:00Z"}`, `{"id":"x","kind":"shouted","ts":"2026-01-01T00:00:00Z"}`, `{"id":"x","kind":"sent"}`} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// The fields of deferred and converted events travel only when set.
func TestEventOptionalFields(t *testing.T) {
	plain, _ := New(Sent, "1", 2, time.Unix(1750030080, 0)).Marshal()
	for _, key := range []string{"until", "order_id", "value", "currency"} {
		if strings.Contains(string(plain), `"`+key+`"`) {
			t.Errorf("%s in a sent event: %s", key, plain)
		}
	}
	d := New(Deferred, "1", 2, time.Unix(1750030080, 0))
	d.Reason, d.Until = "quiet_hours", time.Unix(1750070000, 0).UTC()
	c := New(Converted, "1", 2, time.Unix(1750030080, 0))
	c.OrderID, c.Value, c.Currency = "o-1", 1299.5, "THB"
	for _, e := range []Event{d, c} {
		b, _ := e.Marshal()
		got, err := Unmarshal(b)
		if err != nil || got != e {
			t.Fatalf("round trip of %s\n got %+v, %v\nwant %+v", b, got, err, e)
		}
	}
}

func TestNormalizeKeyword(t *testing.T) {
	for in, want := range map[string]string{" Stop. ": "STOP", "stop!": "STOP", "¡Stop!": "STOP", "START": "START", "stop please": "STOP PLEASE"} {
		if got := NormalizeKeyword(in); got != want {
			t.Errorf("NormalizeKeyword(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	e := New(Sent, "1", 2, time.Unix(1, 0))
	b, _ := e.Marshal()
	f.Add(b)
	r := chain(1)[0]
	c, _ := r.Marshal()
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := Unmarshal(b); err == nil {
			again, _ := json.Marshal(e)
			if _, err := Unmarshal(again); err != nil {
				t.Fatalf("a decoded event does not re-decode: %v", err)
			}
		}
		if r, err := UnmarshalConsent(b); err == nil && r.Hash != r.ComputeHash() {
			t.Fatal("accepted a record with a wrong hash")
		}
	})
}
