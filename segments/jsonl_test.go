package segments

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestImportJSONL(t *testing.T) {
	s, _, _ := newStore(t)
	body := "\xEF\xBB\xBF" + `{"phone": "+66 81 800 0001", "name": "Ann", "tags": ["vip", "gold"], "opted_in": true}` + "\r\n" +
		"\n" +
		`{"phone": "+66 81 800 0002", "Plan": "pro", "tags": "lead", "score": 4.5}` + "\n" +
		`{"phone": "12345", "name": "Bad"}` + "\n" +
		`["not", "an", "object"]` + "\n" +
		`{"phone": "+66 81 800 0003", "address": {"city": "Bangkok"}}` + "\n" +
		`{"phone": "+66 81 800 0004", "name": ` + "\n" +
		`{"phone": 66818000005}` + "\n" +
		`{"phone": "+66 81 800 0006", "name": null, "locale": "th", "opted_in": "maybe"}` + "\n" +
		`{"phone": "+66 81 800 0007", "ชื่อ": "x"}` + "\n" +
		`{"phone": "+66 81 800 0008", "tz": "Asia/Bangkok"}` + "\n"
	cons := &consentRecorder{s: s}
	rep, err := s.ImportJSONL(context.Background(), strings.NewReader(body), ImportOptions{Consent: cons})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Read != 10 || rep.Created != 3 || rep.Rejected != 7 {
		t.Fatalf("report %+v", rep)
	}
	want := []struct {
		line   int
		reason string
	}{{4, "invalid phone"}, {5, "malformed row"}, {6, "malformed row"}, {7, "malformed row"}, {8, "invalid phone"}, {9, "invalid opted_in value"}, {10, "malformed row"}}
	for i, w := range want {
		if r := rep.Rejects[i]; r.Line != w.line || r.Reason != w.reason {
			t.Errorf("reject %d = %v, want line %d %s", i, r, w.line, w.reason)
		}
	}
	ann := mustProfile(t, s, mustLookup(t, s, "+66818000001"))
	if ann.Name != "Ann" || !slices.Equal(ann.Tags, []string{"gold", "vip"}) {
		t.Fatalf("Ann = %+v", ann)
	}
	two := mustProfile(t, s, mustLookup(t, s, "+66818000002"))
	if two.Attrs["plan"] != "pro" || two.Attrs["score"] != "4.5" || !slices.Equal(two.Tags, []string{"lead"}) {
		t.Fatalf("contact 2 = %+v", two)
	}
	if len(cons.rows) != 1 || !cons.rows[0].OptedIn || cons.rows[0].Line != 1 || len(cons.errs) > 0 {
		t.Fatalf("consent rows %+v %v", cons.rows, cons.errs)
	}
	// Importing it again changes nothing.
	rep, err = s.ImportJSONL(context.Background(), strings.NewReader(body), ImportOptions{})
	if err != nil || rep.Unchanged != 3 || rep.Created+rep.Updated != 0 {
		t.Fatalf("again: %+v, %v", rep, err)
	}
}

func FuzzJSONLRow(f *testing.F) {
	for _, s := range []string{`{"phone": "+66812345678", "tags": ["a", "b"]}`, `{"phone": 1, "x": {"y": 1}}`, `[1]`, `{"a": [[1]]}`, `{"": null}`, `{"phone": "\u0000"}`, "{\"p\xff\": 1}", `{"email": "A@b.co"}`, `{"email": "x", "phone": null}`,
		`{"telegram_chat_id": 1.23457e11}`, `{"telegram_chat_id": -100123, "line_user_id": "U4AF4980629D8EF6E1CC5D5A27E6BF99C"}`, `{"line": "Cabc"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		j := newJSONLSource(strings.NewReader(line+"\n"), nil)
		for {
			rec, err := j.read()
			if err != nil {
				break
			}
			lay := j.layout([]record{rec})
			if rec.bad == "" && len(rec.fields) != len(lay.kinds) {
				t.Fatalf("%q: %d fields, layout has %d", line, len(rec.fields), len(lay.kinds))
			}
			r, rej, blank := lay.parse(rec, &rowConfig{zones: &zoneCache{}})
			if rej == nil && !blank && r.ident() == (identity{}) {
				t.Fatalf("%q: accepted without an identity: %+v", line, r)
			}
		}
	})
}
