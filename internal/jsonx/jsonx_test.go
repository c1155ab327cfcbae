package jsonx

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "ไทย", "a\"b", "<&>", "\u2028", "\xff", "\ufffd", "e\u0301", "\x00\x1f\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", s, got, want)
		}
	})
}

func TestOutput(t *testing.T) {
	type item struct {
		Tags  []string       `json:"tags"`
		Attrs map[string]int `json:"attrs"`
	}
	type report struct {
		Items   []item           `json:"items"`
		ByName  map[string]*item `json:"by_name"`
		Ptr     *item            `json:"ptr,omitempty"`
		Nil     *item            `json:"nil,omitempty"`
		Any     any              `json:"any"`
		At      time.Time        `json:"at"`
		Array   [1]item          `json:"array"`
		Empty   []string         `json:"empty,omitempty"`
		private []string
	}
	bkk := time.FixedZone("ICT", 7*3600)
	in := report{Items: []item{{}}, ByName: map[string]*item{"a": {}}, Ptr: &item{}, Any: item{},
		At: time.Date(2026, 3, 10, 9, 0, 0, 0, bkk), private: nil}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, `null`},
		{3, `3`},
		{[]int(nil), `[]`},
		{map[string]int(nil), `{}`},
		{in, `{"items":[{"tags":[],"attrs":{}}],"by_name":{"a":{"tags":[],"attrs":{}}},"ptr":{"tags":[],"attrs":{}},` +
			`"any":{"tags":[],"attrs":{}},"at":"2026-03-10T02:00:00Z","array":[{"tags":[],"attrs":{}}]}`},
		{&in, `{"items":[{"tags":[],"attrs":{}}],"by_name":{"a":{"tags":[],"attrs":{}}},"ptr":{"tags":[],"attrs":{}},` +
			`"any":{"tags":[],"attrs":{}},"at":"2026-03-10T02:00:00Z","array":[{"tags":[],"attrs":{}}]}`},
	} {
		got, err := json.Marshal(Output(tc.v))
		if err != nil || string(got) != tc.want {
			t.Errorf("Output(%#v) prints %s (%v), want %s", tc.v, got, err, tc.want)
		}
	}
	// The value given is not changed.
	if in.Items[0].Tags != nil || in.Ptr.Attrs != nil || in.At.Location() != bkk {
		t.Errorf("Output changed its argument: %+v", in)
	}
}
