package journeys

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Trigger kinds: what a journey is entered by or waits for.
const (
	OnInbound        = "inbound"         // a message from the contact (optionally matching keywords)
	OnReplied        = "replied"         // same as inbound, without keywords
	OnRead           = "read"            // a message of ours was read
	OnClicked        = "clicked"         // a tracked link was clicked
	OnConverted      = "converted"       // an order was attributed
	OnOptedOut       = "opted_out"       // consent revoked
	OnConsentGranted = "consent_granted" // consent granted (opted_in)
	OnTagAdded       = "tag_added"
	OnTagRemoved     = "tag_removed"
	OnCustom         = "custom" // a custom event posted to the API, by name
	OnSegment        = "segment"
)

var triggerKinds = map[string]bool{OnInbound: true, OnReplied: true, OnRead: true, OnClicked: true, OnConverted: true,
	OnOptedOut: true, OnConsentGranted: true, OnTagAdded: true, OnTagRemoved: true, OnCustom: true, OnSegment: true}

// Exit conditions a journey may list.
const (
	ExitReplied     = "replied"
	ExitConverted   = "converted"
	ExitOptedOut    = "opted_out"
	ExitLeftSegment = "left_segment"
)

var exitKinds = map[string]bool{ExitReplied: true, ExitConverted: true, ExitOptedOut: true, ExitLeftSegment: true}

// Re-entry rules.
const (
	ReentryOnce      = "once"
	ReentryOncePer   = "once_per"
	ReentryEveryTime = "every_time"
)

// Definition is one version of a journey.
type Definition struct {
	ID      string   `json:"id"`
	Name    string   `json:"name,omitempty"`
	Channel string   `json:"channel"`           // default whatsapp
	Senders []string `json:"senders,omitempty"` // the journey's senders (round robin)
	Purpose string   `json:"purpose"`           // consent purpose of its sends (default marketing)
	// CapCategory is the frequency-cap category of its sends (default "automated": a
	// cap such as automated:3/24h in HERALD_FREQUENCY_CAPS limits every journey's sends
	// to a contact together).
	CapCategory string  `json:"cap_category"`
	Entry       Trigger `json:"entry"`
	// EntryKey names the event property whose value deduplicates entries ("" : the
	// event's id, so a redelivered event never enters twice).
	EntryKey  string        `json:"entry_key,omitempty"`
	Reentry   string        `json:"reentry"`
	ReentryIn time.Duration `json:"reentry_period,omitempty"` // once_per's period
	Exits     []string      `json:"exit_on,omitempty"`
	Steps     []*Step       `json:"steps"`

	index map[string]int
}

// Trigger is an event that enters a contact or ends a wait_for.
type Trigger struct {
	Event    string              `json:"event"`
	Name     string              `json:"name,omitempty"`     // custom: the event's name; tag_*: the tag
	Keywords map[string][]string `json:"keywords,omitempty"` // inbound: language → keywords (any matches)
	Where    map[string]string   `json:"where,omitempty"`    // custom: property filters (equality)
	Campaign string              `json:"campaign,omitempty"` // read/clicked/converted: only this campaign
	Segment  string              `json:"segment,omitempty"`  // segment: the expression
	Line     int                 `json:"-"`
}

// Step kinds.
const (
	KindSend    = "send"
	KindWait    = "wait"
	KindWaitFor = "wait_for"
	KindBranch  = "branch"
	KindSplit   = "split"
	KindTag     = "tag"
	KindUntag   = "untag"
	KindExit    = "exit"
)

// Step is one step. Next is where it goes on ("" : the step after it in the list, or
// the journey's end).
type Step struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Next string `json:"next,omitempty"`
	Line int    `json:"line"`

	// send
	Template string `json:"template,omitempty"`
	Channel  string `json:"channel,omitempty"`
	sendLine int
	// wait
	Wait *Wait `json:"wait,omitempty"`
	// wait_for
	For       *Trigger      `json:"for,omitempty"`
	Timeout   time.Duration `json:"timeout,omitempty"`
	OnEvent   string        `json:"on_event,omitempty"`
	OnTimeout string        `json:"on_timeout,omitempty"`
	// branch: Segment (an expression) or Property = Equals; Then / Else
	Segment  string `json:"segment,omitempty"`
	Property string `json:"property,omitempty"`
	Equals   string `json:"equals,omitempty"`
	Then     string `json:"then,omitempty"`
	Else     string `json:"else,omitempty"`
	// split
	Split []SplitArm `json:"split,omitempty"`
	// tag, untag
	Tag string `json:"tag,omitempty"`
	// exit
	Reason string `json:"reason,omitempty"`
}

// SplitArm is a share of a random split; Holdout arms leave the journey (reason holdout).
type SplitArm struct {
	Percent int    `json:"percent"`
	Next    string `json:"next,omitempty"`
	Holdout bool   `json:"holdout,omitempty"`
}

// Wait is how long a wait step waits: a duration, until a local time of day (on some
// weekdays) in the contact's zone, or until a date attribute of the contact ± Offset.
type Wait struct {
	For       time.Duration  `json:"for,omitempty"`
	At        string         `json:"at,omitempty"` // "10:00"
	Weekdays  []time.Weekday `json:"weekdays,omitempty"`
	Attribute string         `json:"attribute,omitempty"`
	Offset    time.Duration  `json:"offset,omitempty"`
	atMin     int
}

// LineError is a definition error at a line of the YAML source.
type LineError struct {
	Line int
	Msg  string
}

func (e *LineError) Error() string {
	if e.Line <= 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Errors is every problem found in a definition, in line order.
type Errors []*LineError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)

type parser struct{ errs Errors }

func (p *parser) errf(n *yaml.Node, format string, a ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &LineError{Line: line, Msg: fmt.Sprintf(format, a...)})
}

// Parse reads a definition and checks what can be checked without the stores (step
// references, reachability, cycles without a wait, durations). Errors carry lines.
func Parse(src []byte) (*Definition, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, Errors{{Msg: "journey: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, Errors{{Line: root.Line, Msg: "journey: want a mapping (id, entry, steps…)"}}
	}
	p := &parser{}
	d := p.definition(root.Content[0])
	if len(p.errs) == 0 {
		p.check(d)
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return d, nil
}

func pairs(n *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func (p *parser) scalar(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode {
		p.errf(n, "%s: want a single value", field)
		return ""
	}
	return n.Value
}

func (p *parser) ref(n *yaml.Node, field string) string {
	s := p.scalar(n, field)
	if s != "" && !idRE.MatchString(s) {
		p.errf(n, "%s: %q is not a step id (lower-case letters, digits, _ and -)", field, s)
	}
	return s
}

func (p *parser) duration(n *yaml.Node, field string) time.Duration {
	s := p.scalar(n, field)
	d, err := ParseDuration(s)
	if err != nil {
		p.errf(n, "%s: %v", field, err)
	}
	return d
}

func (p *parser) definition(n *yaml.Node) *Definition {
	d := &Definition{Channel: "whatsapp", Purpose: "marketing", CapCategory: "automated", Reentry: ReentryOnce}
	var stepsNode *yaml.Node
	seenEntry := false
	for _, kv := range pairs(n) {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "id":
			d.ID = p.scalar(v, "id")
			if d.ID != "" && !idRE.MatchString(d.ID) {
				p.errf(v, "id %q: lower-case letters, digits, _ and -, at most 48", d.ID)
			}
		case "name":
			d.Name = p.scalar(v, "name")
		case "channel":
			d.Channel = p.scalar(v, "channel")
		case "purpose":
			d.Purpose = p.scalar(v, "purpose")
		case "cap_category":
			d.CapCategory = p.scalar(v, "cap_category")
		case "sender", "senders":
			if v.Kind == yaml.SequenceNode {
				for _, s := range v.Content {
					d.Senders = append(d.Senders, p.scalar(s, "senders"))
				}
			} else {
				d.Senders = append(d.Senders, p.scalar(v, "sender"))
			}
		case "entry":
			seenEntry = true
			d.Entry = p.trigger(v, "entry")
		case "entry_key":
			d.EntryKey = p.scalar(v, "entry_key")
		case "reentry":
			switch v.Kind {
			case yaml.ScalarNode:
				switch v.Value {
				case ReentryOnce, ReentryEveryTime:
					d.Reentry = v.Value
				default:
					p.errf(v, "reentry %q: want once, every_time or once_per: <duration>", v.Value)
				}
			case yaml.MappingNode:
				for _, kv := range pairs(v) {
					if kv[0].Value != ReentryOncePer {
						p.errf(kv[0], "reentry: unknown key %q (want once_per)", kv[0].Value)
						continue
					}
					d.Reentry, d.ReentryIn = ReentryOncePer, p.duration(kv[1], "reentry once_per")
				}
			default:
				p.errf(v, "reentry: want once, every_time or once_per: <duration>")
			}
		case "exit_on":
			if v.Kind != yaml.SequenceNode {
				p.errf(v, "exit_on: want a list (replied, converted, opted_out, left_segment)")
				continue
			}
			for _, e := range v.Content {
				s := p.scalar(e, "exit_on")
				if !exitKinds[s] {
					p.errf(e, "exit_on: unknown condition %q (want replied, converted, opted_out or left_segment)", s)
				}
				d.Exits = append(d.Exits, s)
			}
		case "steps":
			stepsNode = v
		default:
			p.errf(k, "unknown key %q", k.Value)
		}
	}
	if d.ID == "" {
		p.errf(n, "id: required")
	}
	if !seenEntry {
		p.errf(n, "entry: required (an event or a segment)")
	}
	if stepsNode == nil || stepsNode.Kind != yaml.SequenceNode || len(stepsNode.Content) == 0 {
		p.errf(n, "steps: want a list of at least one step")
		return d
	}
	for _, sn := range stepsNode.Content {
		if s := p.step(sn); s != nil {
			d.Steps = append(d.Steps, s)
		}
	}
	for _, e := range d.Exits {
		if e == ExitLeftSegment && d.Entry.Event != OnSegment {
			p.errf(n, "exit_on left_segment: only a journey entered by a segment can be left by it")
		}
	}
	return d
}

func (p *parser) trigger(n *yaml.Node, field string) Trigger {
	t := Trigger{Line: n.Line}
	if n.Kind == yaml.ScalarNode {
		t.Event = n.Value
	} else if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: want an event name or a mapping (event, keywords, name, where, segment)", field)
		return t
	} else {
		for _, kv := range pairs(n) {
			k, v := kv[0], kv[1]
			switch k.Value {
			case "event":
				t.Event = p.scalar(v, field+" event")
			case "name", "tag":
				t.Name = p.scalar(v, field+" "+k.Value)
			case "campaign":
				t.Campaign = p.scalar(v, field+" campaign")
			case "segment":
				t.Segment = p.scalar(v, field+" segment")
				if t.Event == "" {
					t.Event = OnSegment
				}
			case "keywords":
				t.Keywords = map[string][]string{}
				switch v.Kind {
				case yaml.SequenceNode:
					for _, w := range v.Content {
						t.Keywords["any"] = append(t.Keywords["any"], strings.ToLower(p.scalar(w, "keywords")))
					}
				case yaml.MappingNode:
					for _, lv := range pairs(v) {
						if lv[1].Kind != yaml.SequenceNode {
							p.errf(lv[1], "keywords %s: want a list", lv[0].Value)
							continue
						}
						for _, w := range lv[1].Content {
							t.Keywords[lv[0].Value] = append(t.Keywords[lv[0].Value], strings.ToLower(p.scalar(w, "keywords")))
						}
					}
				default:
					p.errf(v, "keywords: want a list or language: [words]")
				}
			case "where":
				if v.Kind != yaml.MappingNode {
					p.errf(v, "where: want property: value pairs")
					continue
				}
				t.Where = map[string]string{}
				for _, pv := range pairs(v) {
					t.Where[pv[0].Value] = p.scalar(pv[1], "where "+pv[0].Value)
				}
			default:
				p.errf(k, "%s: unknown key %q", field, k.Value)
			}
		}
	}
	if t.Event == "" {
		p.errf(n, "%s: event: required", field)
		return t
	}
	if !triggerKinds[t.Event] {
		p.errf(n, "%s: unknown event %q (want inbound, read, clicked, converted, tag_added, tag_removed, consent_granted, opted_out, custom or segment)", field, t.Event)
	}
	if t.Event == OnCustom && t.Name == "" {
		p.errf(n, "%s: a custom event needs its name", field)
	}
	if (t.Event == OnTagAdded || t.Event == OnTagRemoved) && t.Name == "" {
		p.errf(n, "%s: %s needs the tag", field, t.Event)
	}
	if t.Event == OnSegment && strings.TrimSpace(t.Segment) == "" {
		p.errf(n, "%s: segment: an expression is required", field)
	}
	if len(t.Keywords) > 0 && t.Event != OnInbound && t.Event != OnReplied {
		p.errf(n, "%s: keywords apply to inbound messages only", field)
	}
	return t
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func (p *parser) step(n *yaml.Node) *Step {
	if n.Kind != yaml.MappingNode {
		p.errf(n, "step: want a mapping with an id and one of send, wait, wait_for, branch, split, tag, untag, exit")
		return nil
	}
	s := &Step{Line: n.Line}
	for _, kv := range pairs(n) {
		k, v := kv[0], kv[1]
		setKind := func(kind string) {
			if s.Kind != "" {
				p.errf(k, "step %q: %s and %s: one action per step", s.ID, s.Kind, kind)
			}
			s.Kind = kind
		}
		switch k.Value {
		case "id":
			s.ID = p.scalar(v, "id")
			if !idRE.MatchString(s.ID) {
				p.errf(v, "step id %q: lower-case letters, digits, _ and -, at most 48", s.ID)
			}
		case "next":
			s.Next = p.ref(v, "next")
		case KindSend:
			setKind(KindSend)
			s.sendLine = v.Line
			if v.Kind == yaml.ScalarNode {
				s.Template = v.Value
				break
			}
			for _, kv := range pairs(v) {
				switch kv[0].Value {
				case "template":
					s.Template = p.scalar(kv[1], "send template")
				case "channel":
					s.Channel = p.scalar(kv[1], "send channel")
				default:
					p.errf(kv[0], "send: unknown key %q (want template, channel)", kv[0].Value)
				}
			}
			if s.Template == "" {
				p.errf(v, "send: template: required")
			}
		case KindWait:
			setKind(KindWait)
			s.Wait = p.wait(v)
		case KindWaitFor:
			setKind(KindWaitFor)
			if v.Kind != yaml.MappingNode {
				p.errf(v, "wait_for: want event, timeout, on_event, on_timeout")
				break
			}
			var ev *yaml.Node
			for _, kv := range pairs(v) {
				switch kv[0].Value {
				case "event":
					ev = kv[1]
				case "timeout":
					s.Timeout = p.duration(kv[1], "wait_for timeout")
				case "on_event":
					s.OnEvent = p.ref(kv[1], "on_event")
				case "on_timeout":
					s.OnTimeout = p.ref(kv[1], "on_timeout")
				default:
					p.errf(kv[0], "wait_for: unknown key %q", kv[0].Value)
				}
			}
			if ev == nil {
				p.errf(v, "wait_for: event: required")
			} else {
				t := p.trigger(ev, "wait_for event")
				s.For = &t
			}
			if s.Timeout <= 0 {
				p.errf(v, "wait_for: timeout: required (a positive duration)")
			}
		case KindBranch:
			setKind(KindBranch)
			for _, kv := range pairs(v) {
				switch kv[0].Value {
				case "segment":
					s.Segment = p.scalar(kv[1], "branch segment")
				case "property":
					s.Property = p.scalar(kv[1], "branch property")
				case "equals":
					s.Equals = p.scalar(kv[1], "branch equals")
				case "then":
					s.Then = p.ref(kv[1], "then")
				case "else":
					s.Else = p.ref(kv[1], "else")
				default:
					p.errf(kv[0], "branch: unknown key %q (want segment or property/equals, then, else)", kv[0].Value)
				}
			}
			if (s.Segment == "") == (s.Property == "") {
				p.errf(v, "branch: want exactly one of segment or property")
			}
			if s.Then == "" {
				p.errf(v, "branch: then: required")
			}
		case KindSplit:
			setKind(KindSplit)
			if v.Kind != yaml.SequenceNode {
				p.errf(v, "split: want a list of {percent, next} or {percent, holdout: true}")
				break
			}
			total := 0
			for _, an := range v.Content {
				var a SplitArm
				for _, kv := range pairs(an) {
					switch kv[0].Value {
					case "percent":
						n, err := strconv.Atoi(kv[1].Value)
						if err != nil || n <= 0 || n > 100 {
							p.errf(kv[1], "split percent %q: want 1 to 100", kv[1].Value)
						}
						a.Percent = n
					case "next":
						a.Next = p.ref(kv[1], "split next")
					case "holdout":
						a.Holdout = kv[1].Value == "true"
					default:
						p.errf(kv[0], "split: unknown key %q", kv[0].Value)
					}
				}
				if a.Next == "" && !a.Holdout {
					p.errf(an, "split arm: next or holdout: true required")
				}
				total += a.Percent
				s.Split = append(s.Split, a)
			}
			if total != 100 {
				p.errf(v, "split: percents add up to %d, want 100", total)
			}
		case KindTag, KindUntag:
			setKind(k.Value)
			s.Tag = p.scalar(v, k.Value)
			if s.Tag == "" {
				p.errf(v, "%s: a tag name is required", k.Value)
			}
		case KindExit:
			setKind(KindExit)
			if v.Kind == yaml.ScalarNode && v.Value != "true" && v.Value != "" {
				s.Reason = v.Value
			}
		default:
			p.errf(k, "step: unknown key %q", k.Value)
		}
	}
	if s.ID == "" {
		p.errf(n, "step: id: required")
	}
	if s.Kind == "" {
		p.errf(n, "step %q: no action (want send, wait, wait_for, branch, split, tag, untag or exit)", s.ID)
	}
	if s.Reason == "" {
		s.Reason = "completed"
	}
	return s
}

func (p *parser) wait(v *yaml.Node) *Wait {
	w := &Wait{}
	if v.Kind == yaml.ScalarNode {
		w.For = p.duration(v, "wait")
		if w.For <= 0 {
			p.errf(v, "wait: want a positive duration")
		}
		return w
	}
	if v.Kind != yaml.MappingNode {
		p.errf(v, "wait: want a duration, {until: HH:MM, weekdays: [...]} or {attribute: NAME, offset: DURATION}")
		return w
	}
	for _, kv := range pairs(v) {
		switch kv[0].Value {
		case "for", "duration":
			w.For = p.duration(kv[1], "wait duration")
		case "until", "at":
			w.At = p.scalar(kv[1], "wait until")
			h, m, ok := parseHHMM(w.At)
			if !ok {
				p.errf(kv[1], "wait until %q: want a local time HH:MM", w.At)
			}
			w.atMin = h*60 + m
		case "weekdays":
			for _, dn := range kv[1].Content {
				wd, ok := weekdays[strings.ToLower(dn.Value)[:min(3, len(dn.Value))]]
				if !ok {
					p.errf(dn, "weekday %q: want mon, tue, wed, thu, fri, sat or sun", dn.Value)
				}
				w.Weekdays = append(w.Weekdays, wd)
			}
		case "attribute":
			w.Attribute = p.scalar(kv[1], "wait attribute")
		case "offset":
			w.Offset = p.duration(kv[1], "wait offset")
		default:
			p.errf(kv[0], "wait: unknown key %q", kv[0].Value)
		}
	}
	kinds := 0
	if w.For > 0 {
		kinds++
	}
	if w.At != "" {
		kinds++
	}
	if w.Attribute != "" {
		kinds++
	}
	if kinds != 1 {
		p.errf(v, "wait: want exactly one of a duration, until (a local time) or attribute")
	}
	if len(w.Weekdays) > 0 && w.At == "" {
		p.errf(v, "wait: weekdays need until: HH:MM")
	}
	return w
}

func parseHHMM(s string) (int, int, bool) {
	hs, ms, ok := strings.Cut(s, ":")
	h, err := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	return h, m, ok && err == nil && err2 == nil && len(ms) == 2 && h >= 0 && h < 24 && m >= 0 && m < 60
}

// ParseDuration reads Go durations plus days and weeks: "30m", "1h30m", "30d", "2w", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	neg := strings.HasPrefix(s, "-")
	rest := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	var total time.Duration
	for _, unit := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		if i := strings.IndexByte(rest, unit.suffix); i > 0 {
			n, err := strconv.Atoi(rest[:i])
			if err != nil || n < 0 || n > 5000 {
				return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 2h, 30d, 1w", s)
			}
			total += time.Duration(n) * unit.d
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 || strings.HasPrefix(rest, "-") {
			return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 2h, 30d, 1w", s)
		}
		total += d
	}
	if total > 5*366*24*time.Hour {
		return 0, fmt.Errorf("bad duration %q: more than 5 years", s)
	}
	if neg {
		total = -total
	}
	return total, nil
}

// check validates references, reachability and cycles.
func (p *parser) check(d *Definition) {
	d.index = map[string]int{}
	for i, s := range d.Steps {
		if j, dup := d.index[s.ID]; dup {
			p.errf(&yaml.Node{Line: s.Line}, "step id %q is used twice (first at line %d)", s.ID, d.Steps[j].Line)
			continue
		}
		d.index[s.ID] = i
	}
	refs := func(s *Step) []string { return d.successors(s) }
	for _, s := range d.Steps {
		for _, r := range refs(s) {
			if _, ok := d.index[r]; !ok {
				p.errf(&yaml.Node{Line: s.Line}, "step %q goes to unknown step %q", s.ID, r)
			}
		}
	}
	if len(p.errs) > 0 {
		return
	}
	// Reachability from the first step.
	seen := make([]bool, len(d.Steps))
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[i] {
			continue
		}
		seen[i] = true
		for _, r := range refs(d.Steps[i]) {
			stack = append(stack, d.index[r])
		}
	}
	for i, s := range d.Steps {
		if !seen[i] {
			p.errf(&yaml.Node{Line: s.Line}, "step %q is unreachable: no step goes to it", s.ID)
		}
	}
	// A cycle through steps none of which waits would run forever at once: look for one
	// in the graph without the wait and wait_for steps.
	state := make([]int, len(d.Steps)) // 0 new, 1 on the path, 2 done
	var visit func(i int) bool
	visit = func(i int) bool {
		state[i] = 1
		for _, r := range refs(d.Steps[i]) {
			j := d.index[r]
			if k := d.Steps[j].Kind; k == KindWait || k == KindWaitFor {
				continue
			}
			if state[j] == 1 {
				p.errf(&yaml.Node{Line: d.Steps[j].Line}, "steps %q → … → %q form a cycle without a wait: add a wait step to it", d.Steps[j].ID, d.Steps[i].ID)
				return true
			}
			if state[j] == 0 && visit(j) {
				return true
			}
		}
		state[i] = 2
		return false
	}
	for i, s := range d.Steps {
		if state[i] == 0 && s.Kind != KindWait && s.Kind != KindWaitFor {
			if visit(i) {
				break
			}
		}
	}
}

// successors are the steps s may go to.
func (d *Definition) successors(s *Step) []string {
	var out []string
	next := s.Next
	if next == "" {
		if i, ok := d.index[s.ID]; ok && i+1 < len(d.Steps) {
			next = d.Steps[i+1].ID
		}
	}
	switch s.Kind {
	case KindExit:
	case KindWaitFor:
		out = append(out, orNext(s.OnEvent, next), orNext(s.OnTimeout, next))
	case KindBranch:
		out = append(out, s.Then, orNext(s.Else, next))
	case KindSplit:
		for _, a := range s.Split {
			if !a.Holdout {
				out = append(out, a.Next)
			}
		}
	default:
		out = append(out, next)
	}
	var clean []string
	for _, r := range out {
		if r != "" {
			clean = append(clean, r)
		}
	}
	return clean
}

func orNext(s, next string) string {
	if s != "" {
		return s
	}
	return next
}

// Step returns the step with id, or nil.
func (d *Definition) Step(id string) *Step {
	if d.index == nil {
		d.index = map[string]int{}
		for i, s := range d.Steps {
			d.index[s.ID] = i
		}
	}
	i, ok := d.index[id]
	if !ok {
		return nil
	}
	return d.Steps[i]
}

// next is where s goes on by default ("" : the journey ends).
func (d *Definition) next(s *Step) string {
	if s.Next != "" {
		return s.Next
	}
	if i := d.index[s.ID]; i+1 < len(d.Steps) {
		return d.Steps[i+1].ID
	}
	return ""
}

// CheckTemplates refuses sends of unknown templates, with the step's line.
func (d *Definition) CheckTemplates(exists func(name string) bool) error {
	var errs Errors
	for _, s := range d.Steps {
		if s.Kind == KindSend && !exists(s.Template) {
			errs = append(errs, &LineError{Line: max(s.sendLine, s.Line), Msg: fmt.Sprintf("step %q sends unknown template %q (add it with `herald templates add`)", s.ID, s.Template)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// cares reports whether a trigger of kind may matter to a contact already in this
// version of the journey: an exit condition or a wait_for event.
func (d *Definition) cares(kind string) bool {
	for _, x := range d.Exits {
		switch {
		case x == ExitReplied && (kind == OnInbound || kind == OnReplied),
			x == ExitConverted && kind == OnConverted, x == ExitOptedOut && kind == OnOptedOut:
			return true
		}
	}
	for _, s := range d.Steps {
		if s.Kind == KindWaitFor && s.For != nil {
			if s.For.Event == kind || ((s.For.Event == OnInbound || s.For.Event == OnReplied) && (kind == OnInbound || kind == OnReplied)) {
				return true
			}
		}
	}
	return false
}

// exits reports whether the journey lists exit condition kind.
func (d *Definition) exits(kind string) bool {
	for _, e := range d.Exits {
		if e == kind {
			return true
		}
	}
	return false
}
