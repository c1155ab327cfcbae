package analytics

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
)

// decodeSeeds are messages the decoder must treat exactly as events.Unmarshal: what
// producers write, and what they should not.
func decodeSeeds() [][]byte {
	full := events.New(events.Failed, "spring-sale", 4000000000, baseTime.Add(123456789*time.Nanosecond))
	full.SenderID, full.Channel, full.Template, full.Variant, full.Country = "106540352242922", "whatsapp", "promo", "B", "TH"
	full.ProviderMessageID, full.Reason, full.ErrorCode, full.Retryable = "wamid.HBgL", "x", -131049, true
	full.ConsentRef, full.Until = "cr-1", baseTime.Add(time.Hour)
	deferred := events.New(events.Deferred, "c", 7, baseTime)
	deferred.Reason, deferred.Until = "quiet_hours", time.Date(2025, 3, 10, 21, 0, 0, 0, time.FixedZone("ICT", 7*3600))
	conv := ConversionEvent(Conversion{ContactID: 9, OrderID: "o-1", Value: 1299.5, Currency: "THB", Time: baseTime}, "c")
	custom := events.New(events.Custom, "", 9, baseTime)
	custom.Name, custom.Properties = "cart_abandoned", events.EncodeProperties(map[string]string{"sku": "A-1", "note": "\"q\" ✓"})
	fallback := events.New(events.Fallback, "c", 9, baseTime)
	fallback.Channel, fallback.FromChannel, fallback.Reason = "sms", "whatsapp", "circuit_open"
	var seeds [][]byte
	for _, e := range []events.Event{events.New(events.Sent, "c", 1, baseTime), full, deferred, conv, custom, fallback,
		{ID: "x", Kind: events.Read, Time: baseTime, Template: "ünïcødé ✓", Reason: "<&>"}} {
		b, err := e.Marshal()
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"id":"a"}`, "not json", "{", "\x00\x01",
		`{"id":"x1","kind":"exploded","ts":"2025-03-10T09:00:00Z","contact":1}`,
		`{"kind":"queued","ts":"2025-03-10T09:00:00Z","contact":1}`,
		`{"id":"x2","kind":"queued","ts":"2200-01-01T00:00:00Z","contact":1}`,
		`{"id":"x3","kind":"queued","ts":"2025-03-10T09:00:00Z","contact":-4}`,
		` {"id" : "a" , "kind":"sent", "ts":"2025-03-10T09:00:00.5+07:00","contact":0 , "retryable":false} `,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"ID":"b"}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"id":"b"}`,
		`{"id":"a\u0062","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"extra":[1,{"x":null}]}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"reason":null}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1.0}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":01}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":4294967296}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"error_code":-0}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"error_code":-9223372036854775808}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"error_code":9223372036854775808}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"error_code":1e3}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":-0.5e-3,"currency":"EUR","order_id":"x"}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":1E+2}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":1e400}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":.5}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":1.}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":"12"}`,
		`{"id":"a","kind":"converted","ts":"2025-03-10T09:00:00Z","contact":1,"value":00.5}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T24:00:00Z","contact":1}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10 09:00:00Z","contact":1}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"until":""}`,
		`{"id":"a","kind":"sent","ts":"0001-01-01T00:00:00Z","contact":1}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,}`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1}x`,
		`{"id":"a","kind":"sent","ts":"2025-03-10T09:00:00Z","contact":1,"retryable":truex}`,
		"{\"id\":\"a\xff\",\"kind\":\"sent\",\"ts\":\"2025-03-10T09:00:00Z\",\"contact\":1}",
		"{\"id\":\"a\tb\",\"kind\":\"sent\",\"ts\":\"2025-03-10T09:00:00Z\",\"contact\":1}",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// sameDecoding fails unless decodeEvent gives what events.Unmarshal gives, and the
// scanner, when it accepts b, what encoding/json gives.
func sameDecoding(t *testing.T, b []byte) {
	want, wantErr := events.Unmarshal(b)
	got, err := decodeEvent(b)
	if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n decodeEvent     %+v, %v\n events.Unmarshal %+v, %v", b, got, err, want, wantErr)
	}
	if err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%q: error %q, events.Unmarshal says %q", b, err, wantErr)
	}
	if e, ok := scanEvent(b); ok {
		var j events.Event
		if err := json.Unmarshal(b, &j); err != nil || !reflect.DeepEqual(e, j) {
			t.Fatalf("%q: the scanner accepted it as %+v; encoding/json: %+v, %v", b, e, j, err)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	var fast int
	for _, b := range decodeSeeds() {
		sameDecoding(t, b)
		if _, ok := scanEvent(b); ok {
			fast++
		}
	}
	// What producers write takes the fast path.
	for _, b := range decodeSeeds()[:4] {
		if _, ok := scanEvent(b); !ok {
			t.Errorf("%s: not decoded by the fast path", b)
		}
	}
	for _, b := range eventMessages(t, benchEvents(100)) {
		if _, ok := scanEvent(b.Value); !ok {
			t.Errorf("%s: not decoded by the fast path", b.Value)
		}
	}
	t.Logf("%d of %d seeds on the fast path", fast, len(decodeSeeds()))
}

// go test ./analytics -run '^$' -fuzz FuzzDecodeEvent
func FuzzDecodeEvent(f *testing.F) {
	for _, b := range decodeSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameDecoding(t, b) })
}

// BenchmarkDecodeEvent compares decodeEvent with events.Unmarshal (encoding/json) on
// the events of BenchmarkSinkInsert.
func BenchmarkDecodeEvent(b *testing.B) {
	msgs := eventMessages(b, benchEvents(1000))
	for _, bc := range []struct {
		name string
		fn   func([]byte) (events.Event, error)
	}{{"encoding-json", events.Unmarshal}, {"scanner", decodeEvent}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := bc.fn(msgs[n%len(msgs)].Value); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}
