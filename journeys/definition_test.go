package journeys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 5 {
		t.Fatalf("%d examples, want the 5 recipes", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.ID+".yaml" != filepath.Base(f) {
			t.Errorf("%s: id %q does not match its file", f, d.ID)
		}
	}
}

func TestParseFields(t *testing.T) {
	d, err := Parse([]byte(`id: j1
senders: [s1]
entry: {event: custom, name: order_placed, where: {plan: gold}}
entry_key: order_id
reentry: {once_per: 2d}
exit_on: [replied]
steps:
  - id: a
    wait: {until: "09:30", weekdays: [mon, fri]}
  - id: b
    wait_for: {event: clicked, timeout: 1w, on_event: c, on_timeout: d}
  - id: c
    send: tpl
  - id: d
    split: [{percent: 80, next: b}, {percent: 20, holdout: true}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Reentry != ReentryOncePer || d.ReentryIn != 48*time.Hour || d.Entry.Where["plan"] != "gold" || d.EntryKey != "order_id" {
		t.Fatalf("%+v", d)
	}
	if w := d.Steps[0].Wait; w.At != "09:30" || len(w.Weekdays) != 2 || w.Weekdays[1] != time.Friday {
		t.Fatalf("wait %+v", w)
	}
	if s := d.Steps[1]; s.Timeout != 7*24*time.Hour || s.OnEvent != "c" || s.For.Event != OnClicked {
		t.Fatalf("wait_for %+v", s)
	}
	if d.Steps[2].Template != "tpl" || len(d.Steps[3].Split) != 2 {
		t.Fatalf("steps %+v %+v", d.Steps[2], d.Steps[3])
	}
}

// Bad definitions are refused with the line of the problem.
func TestParseRefusesWithLine(t *testing.T) {
	head := "id: j\nsenders: [s]\nentry: read\nsteps:\n"
	cases := []struct {
		name, steps string
		line        int
		msg         string
	}{
		{"unknown step", "  - id: a\n    send: t\n    next: nowhere\n", 5, `unknown step "nowhere"`},
		{"cycle without a wait", "  - id: a\n    send: t\n  - id: b\n    tag: x\n    next: a\n", 5, "cycle without a wait"},
		{"unreachable", "  - id: a\n    exit: true\n  - id: b\n    send: t\n", 7, `"b" is unreachable`},
		{"bad duration", "  - id: a\n    wait: 3 days\n", 6, "bad duration"},
		{"bad wait_for timeout", "  - id: a\n    wait_for: {event: read, timeout: soon, on_event: a}\n", 6, "bad duration"},
		{"split not 100", "  - id: a\n    split: [{percent: 50, next: a}]\n  - id: b\n    wait: 1h\n", 6, "add up to 50"},
		{"two actions", "  - id: a\n    send: t\n    wait: 1h\n", 7, "one action per step"},
		{"duplicate id", "  - id: a\n    wait: 1h\n  - id: a\n    wait: 1h\n", 7, "used twice"},
		{"bad time", "  - id: a\n    wait: {until: \"25:00\"}\n", 6, "local time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(head + c.steps))
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("accepted, or not an Errors: %v", err)
			}
			if es[0].Line != c.line || !strings.Contains(es[0].Msg, c.msg) {
				t.Fatalf("got %v, want line %d: …%s…", err, c.line, c.msg)
			}
		})
	}
	// A cycle through a wait is fine.
	if _, err := Parse([]byte(head + "  - id: a\n    send: t\n  - id: b\n    wait: 1d\n    next: a\n")); err != nil {
		t.Fatal(err)
	}
	// Unknown templates are refused with the step's line.
	d, _ := Parse([]byte(head + "  - id: a\n    wait: 1h\n  - id: b\n    send: nope\n"))
	err := d.CheckTemplates(func(n string) bool { return n == "t" })
	if err == nil || !strings.Contains(err.Error(), "line 8") || !strings.Contains(err.Error(), `unknown template "nope"`) {
		t.Fatalf("%v", err)
	}
	for _, bad := range []string{"", "[1, 2]", "id: x", "id: x\nentry: read\nsteps: []\n", "id: X!\nentry: read\nsteps: [{id: a, exit: true}]",
		"id: x\nentry: teleported\nsteps: [{id: a, exit: true}]", "id: x\nentry: {event: custom}\nsteps: [{id: a, exit: true}]"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30m": 30 * time.Minute, "30d": 720 * time.Hour, "1w": 168 * time.Hour,
		"1d12h": 36 * time.Hour, "-1d": -24 * time.Hour, "90s": 90 * time.Second} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "3 days", "1x", "10000d", "1d-2h"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("examples/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("id: j\nentry: read\nsteps:\n  - id: a\n    wait: 1d\n    next: a\n"))
	f.Add([]byte("id: j\nentry: {event: inbound, keywords: {th: [ราคา]}}\nsteps: [{id: a, branch: {segment: vip, then: a}}]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		d, err := Parse(src)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not an Errors: %v", err)
			}
			return
		}
		// A valid definition has steps, each reachable, and no reference dangles.
		if len(d.Steps) == 0 || d.ID == "" {
			t.Fatalf("accepted without steps or id: %+v", d)
		}
		for _, s := range d.Steps {
			for _, r := range d.successors(s) {
				if d.Step(r) == nil {
					t.Fatalf("dangling reference %q", r)
				}
			}
		}
	})
}
