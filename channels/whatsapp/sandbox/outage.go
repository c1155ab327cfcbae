package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// OutageMode is what the send endpoint does during an outage.
type OutageMode string

// Outage modes.
const (
	// OutageRefuse answers every send at once with Meta's error for a service outage
	// (by default HTTP 503, code 2 "Service temporarily unavailable").
	OutageRefuse OutageMode = "refuse"
	// OutageStall holds every send until the client gives up (its timeout) or, at
	// most, the plan's StallMax, and then answers the same refusal: the requests hang,
	// as they do when Meta's edge accepts connections and its backend is away.
	OutageStall OutageMode = "stall"
)

// ParseOutageMode reads "refuse" or "stall".
func ParseOutageMode(s string) (OutageMode, error) {
	switch m := OutageMode(s); m {
	case OutageRefuse, OutageStall:
		return m, nil
	}
	return "", fmt.Errorf("outage mode %q: want refuse or stall", s)
}

// DefaultStallMax is the longest a stalled send is held unless the plan says otherwise.
const DefaultStallMax = time.Minute

// outageErrors are the Graph errors Meta answers when the Cloud API is down
// (PROVIDERS.md: unknown / service unavailable, retryable), with their HTTP status.
var outageErrors = map[int]*graphError{
	2: {status: http.StatusServiceUnavailable, code: 2, message: "(#2) Service temporarily unavailable",
		details: "Temporary due to downtime or due to being overloaded."},
	131016: {status: http.StatusInternalServerError, code: 131016, message: "(#131016) Service unavailable",
		details: "A service is temporarily unavailable. Please check the status page."},
	131000: {status: http.StatusInternalServerError, code: 131000, message: "(#131000) Something went wrong",
		details: "Message failed to send due to an unknown error."},
	133004: {status: http.StatusServiceUnavailable, code: 133004, message: "(#133004) Server temporarily unavailable",
		details: "Server is temporarily unavailable."},
	1: {status: http.StatusBadRequest, code: 1, message: "(#1) An unknown error occurred",
		details: "Invalid request or possible server error."},
}

// OutagePlan is an outage relative to a moment (the sandbox's start for Config.Outage,
// the call for SetOutage): it begins At after it and lasts For (0: until cleared).
// The zero plan (no Mode) is no outage.
type OutagePlan struct {
	Mode     OutageMode
	At, For  time.Duration
	Code     int           // the Graph error answered: 2 (default), 131016, 131000, 133004 or 1
	StallMax time.Duration // stall: the longest a request is held (default DefaultStallMax)
}

// Outage is an outage window on the sandbox's clock (Config.Now), as GET
// /_sandbox/outage shows it.
type Outage struct {
	Mode       OutageMode `json:"mode"`
	Start      time.Time  `json:"start"`
	End        time.Time  `json:"end,omitzero"` // zero: until cleared
	Code       int        `json:"code"`
	StallMaxMS int64      `json:"stall_max_ms"`
	Active     bool       `json:"active"` // in force at the time of the answer
}

// check validates p and fills its defaults.
func (p OutagePlan) check() (OutagePlan, error) {
	if _, err := ParseOutageMode(string(p.Mode)); err != nil {
		return p, err
	}
	if p.At < 0 || p.For < 0 || p.StallMax < 0 {
		return p, fmt.Errorf("outage: at %s, for %s, stall max %s: want durations ≥ 0", p.At, p.For, p.StallMax)
	}
	if p.Code == 0 {
		p.Code = 2
	}
	if _, ok := outageErrors[p.Code]; !ok {
		return p, fmt.Errorf("outage code %d: want 2, 131016, 131000, 133004 or 1 (Meta's codes for a service outage)", p.Code)
	}
	if p.StallMax == 0 {
		p.StallMax = DefaultStallMax
	}
	return p, nil
}

// Validate reports what is wrong with p, if anything (the mode, a negative duration,
// a code Meta does not answer outages with).
func (p OutagePlan) Validate() error {
	_, err := p.check()
	return err
}

// window places p at from.
func (p OutagePlan) window(from time.Time) *Outage {
	o := &Outage{Mode: p.Mode, Start: from.Add(p.At), Code: p.Code, StallMaxMS: p.StallMax.Milliseconds()}
	if p.For > 0 {
		o.End = o.Start.Add(p.For)
	}
	return o
}

func (o *Outage) activeAt(t time.Time) bool {
	return o != nil && !t.Before(o.Start) && (o.End.IsZero() || t.Before(o.End))
}

// SetOutage plans an outage of the send endpoint from now (the sandbox's clock),
// replacing any other. During it no send is accepted, so nothing sent then is in the
// records: refuse answers at once, stall holds the request first (see OutageMode).
func (s *Sandbox) SetOutage(p OutagePlan) (Outage, error) {
	p, err := p.check()
	if err != nil {
		return Outage{}, err
	}
	o := p.window(s.now())
	s.outage.Store(o)
	s.log.Info("outage planned", "mode", o.Mode, "start", o.Start, "end", o.End, "code", o.Code)
	return s.Outage(), nil
}

// ClearOutage ends any outage now.
func (s *Sandbox) ClearOutage() { s.outage.Store(nil) }

// Outage is the planned or current outage (Mode "" when none).
func (s *Sandbox) Outage() Outage {
	o := s.outage.Load()
	if o == nil {
		return Outage{}
	}
	out := *o
	out.Active = o.activeAt(s.now())
	return out
}

// duringOutage answers a send request arriving during an outage and reports whether it
// did; the caller then stops.
func (s *Sandbox) duringOutage(w http.ResponseWriter, r *http.Request) bool {
	o := s.outage.Load()
	if !o.activeAt(s.now()) {
		return false
	}
	e := outageErrors[o.Code]
	if o.Mode == OutageStall {
		s.stalled.Add(1)
		t := time.NewTimer(time.Duration(o.StallMaxMS) * time.Millisecond)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.reject(e.code) // the client gave up: it learns nothing, the sandbox sent nothing
			return true
		}
	}
	s.fail(w, e)
	return true
}

// handleOutage is POST /_sandbox/outage: {"mode":"refuse"|"stall","at":"0s","for":"60s",
// "code":2,"stall_max":"60s"} (durations as Go writes them; at, code and stall_max
// optional; for "" or "0s": until cleared), answered with the outage planned.
func (s *Sandbox) handleOutage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Mode     string `json:"mode"`
		At       string `json:"at"`
		For      string `json:"for"`
		Code     int    `json:"code"`
		StallMax string `json:"stall_max"`
	}
	const want = `{"mode":"refuse"|"stall","at","for","code","stall_max"}`
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeGraphError(w, errParam("want %s: %v", want, err))
		return
	}
	p := OutagePlan{Mode: OutageMode(in.Mode), Code: in.Code}
	for _, d := range []struct {
		name string
		v    string
		dst  *time.Duration
	}{{"at", in.At, &p.At}, {"for", in.For, &p.For}, {"stall_max", in.StallMax, &p.StallMax}} {
		if d.v == "" {
			continue
		}
		x, err := time.ParseDuration(d.v)
		if err != nil {
			writeGraphError(w, errParam("%s %q: want a duration such as 60s", d.name, d.v))
			return
		}
		*d.dst = x
	}
	o, err := s.SetOutage(p)
	if err != nil {
		writeGraphError(w, errParam("%v", err))
		return
	}
	writeJSON(w, o)
}
