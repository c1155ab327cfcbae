package events

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// The hand encoder writes what encoding/json writes, byte for byte.
func FuzzAppendJSON(f *testing.F) {
	f.Add("c1", "sent", int64(1_700_000_000_123_456_789), uint32(42), "106540352242", "whatsapp", "offer", "B", "TH", "wamid.HBg=", "", 0, false, "rec-1", int64(0), "", 0.0, "")
	f.Add("<&>", "failed", int64(-1), uint32(0), "a\"b\\c", "\u2028", "\x00\x1f", "\xff\xfe", "ไทย", "e\u0301", "x\ty", 131049, true, "é", int64(1_800_000_000_000_000_000), "o-1", 1234.5, "THB")
	f.Add("", "converted", int64(0), uint32(math.MaxUint32), "", "", "", "", "", "", "\ufffd", -7, false, "", int64(5), "", 1e-7, "")
	f.Add("c", "clicked", int64(7), uint32(1), "", "", "", "", "", "", "", 0, false, "", int64(0), "", 1e21, "")
	f.Fuzz(func(t *testing.T, campaign, kind string, ts int64, contact uint32, sender, channel, tmpl, variant, country, pmid, reason string,
		code int, retry bool, consent string, until int64, order string, value float64, currency string) {
		e := Event{ID: ID(campaign, contact, Kind(kind), ""), Kind: Kind(kind), Time: time.Unix(0, ts).UTC(), CampaignID: campaign, ContactID: contact,
			SenderID: sender, Channel: channel, Template: tmpl, Variant: variant, Country: country, ProviderMessageID: pmid, Reason: reason,
			ErrorCode: code, Retryable: retry, ConsentRef: consent, OrderID: order, Value: value, Currency: currency}
		if until != 0 {
			e.Until = time.Unix(0, until).In(time.FixedZone("x", 7*3600))
		}
		want, werr := json.Marshal(e)
		got, gerr := e.Marshal()
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("encoding/json error %v, AppendJSON error %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n%s\nencoding/json\n%s", got, want)
		}
	})
}

// Years outside 0–9999 are refused, as encoding/json refuses them.
func TestAppendJSONYearRange(t *testing.T) {
	e := New(Sent, "c", 1, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	if _, err := e.Marshal(); err == nil {
		t.Fatal("year 10000 encoded")
	}
}

func BenchmarkMarshal(b *testing.B) {
	e := New(Delivered, "1234", 987654, time.Now())
	e.SenderID, e.Channel, e.ProviderMessageID, e.Variant = "106540352242001", "whatsapp", "wamid.HBgLMTY1MDM4NzQzMDIVAgARGBI4QkE0QjQ5RkNFQzY1MzY5MDAA", "A"
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
