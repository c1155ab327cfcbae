package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// Custom events' name and properties encode as encoding/json encodes them.
func FuzzAppendJSONCustom(f *testing.F) {
	f.Add("order_placed", "order_id", "A-1", "total", "12.50")
	f.Add("<x>", "\xff", "\u2028", "", "a\"b")
	f.Fuzz(func(t *testing.T, name, k1, v1, k2, v2 string) {
		e := New(Custom, "", 7, time.Unix(1_800_000_000, 5).UTC())
		e.Name = name
		e.Properties = EncodeProperties(map[string]string{k1: v1, k2: v2})
		want, werr := json.Marshal(e)
		got, gerr := e.Marshal()
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("encoding/json error %v, AppendJSON error %v", werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n%s\nencoding/json\n%s", got, want)
		}
		back, err := Unmarshal(got)
		if err != nil || (utf8.ValidString(name) && back.Name != name) {
			t.Fatalf("round trip: %v %+v", err, back)
		}
	})
}
