package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// pollFor polls cond until it holds; the deadline only guards against a hang.
func pollFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// outageState is GET /_sandbox/outage.
func (e *env) outageState(t testing.TB) Outage {
	t.Helper()
	res, err := e.api.Client().Get(e.api.URL + "/_sandbox/outage")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o Outage
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

// An outage planned at start refuses every send in its window with Meta's error for a
// service outage (HTTP 503, code 2, Graph's shape), records none of them, and ends.
func TestOutageRefuseAtStart(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, Templates: []ApprovedTemplate{orderConfirmation},
		Outage: OutagePlan{Mode: OutageRefuse, At: 20 * time.Second, For: time.Minute}})
	if r := e.send(t, templateBody("+16505550001", "c:1")); r.status != http.StatusOK {
		t.Fatalf("before the outage: %d %s", r.status, r.raw)
	}
	if o := e.outageState(t); o.Active || o.Mode != OutageRefuse || o.Code != 2 || o.End.Sub(o.Start) != time.Minute {
		t.Fatalf("before the outage: %+v", o)
	}
	clk.Advance(20 * time.Second)
	for i := range 3 {
		r := e.send(t, templateBody("+1650555100"+string(rune('0'+i)), "c:x"))
		if r.status != http.StatusServiceUnavailable || r.err.Error.Code != 2 || r.err.Error.Type != "OAuthException" ||
			r.err.Error.Message != "(#2) Service temporarily unavailable" || r.err.Error.ErrorData == nil ||
			r.err.Error.ErrorData.MessagingProduct != "whatsapp" || r.err.Error.FBTraceID == "" {
			t.Fatalf("during the outage: %d %s", r.status, r.raw)
		}
	}
	if !e.outageState(t).Active {
		t.Error("GET /_sandbox/outage: not active during the outage")
	}
	clk.Advance(time.Minute)
	if r := e.send(t, templateBody("+16505550002", "c:2")); r.status != http.StatusOK {
		t.Fatalf("after the outage: %d %s", r.status, r.raw)
	}
	recs := e.sb.Records()
	if len(recs) != 2 || recs[0].CallbackData != "c:1" || recs[1].CallbackData != "c:2" {
		t.Fatalf("records %+v: want the sends before and after the outage only", recs)
	}
	if st := e.sb.Stats(); st.Accepted != 2 || st.Rejected[2] != 3 || st.Requests != 5 {
		t.Fatalf("stats %+v: want 2 accepted, 3 refused with code 2, 5 requests", st)
	}
}

// An outage planned at run time over the admin endpoint, in stall mode: a send hangs
// until the client gives up and is not recorded; with a short bound, the patient client
// gets the refusal after it; DELETE ends the outage and sends go through again. The
// refusal can be another of Meta's outage codes.
func TestOutageStallAtRunTime(t *testing.T) {
	e := newEnv(t, Config{Templates: []ApprovedTemplate{orderConfirmation}})
	admin := func(method, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.api.URL+"/_sandbox/outage", strings.NewReader(body))
		res, err := e.api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		return res.StatusCode, b.String()
	}
	if code, body := admin("POST", `{"mode":"stall","for":"1h","stall_max":"1h"}`); code != 200 || !strings.Contains(body, `"active":true`) {
		t.Fatalf("plan a stall: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.api.URL+"/v21.0/"+pnid+"/messages", strings.NewReader(templateBody("+16505550003", "c:3")))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if res, err := e.api.Client().Do(req); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		if res != nil {
			res.Body.Close()
		}
		t.Fatalf("a stalled send answered: %v", err)
	}
	pollFor(t, "the stalled request to be given up", func() bool { return e.sb.Stats().Rejected[2] == 1 })
	if st := e.sb.Stats(); st.Stalled != 1 || st.Accepted != 0 || len(e.sb.Records()) != 0 {
		t.Fatalf("stats %+v, %d records: want one stalled request, nothing accepted", st, len(e.sb.Records()))
	}

	if code, body := admin("POST", `{"mode":"stall","stall_max":"20ms","code":131016}`); code != 200 || !strings.Contains(body, `"code":131016`) {
		t.Fatalf("plan a short stall: %d %s", code, body)
	}
	if r := e.send(t, templateBody("+16505550004", "c:4")); r.status != http.StatusInternalServerError || r.err.Error.Code != 131016 {
		t.Fatalf("a send held to the bound: %d %s", r.status, r.raw)
	}
	if code, body := admin("DELETE", ""); code != 200 {
		t.Fatalf("end the outage: %d %s", code, body)
	}
	if o := e.outageState(t); o.Mode != "" || o.Active {
		t.Fatalf("after DELETE: %+v", o)
	}
	if r := e.send(t, templateBody("+16505550005", "c:5")); r.status != http.StatusOK {
		t.Fatalf("after the outage: %d %s", r.status, r.raw)
	}
	if recs := e.sb.Records(); len(recs) != 1 || recs[0].CallbackData != "c:5" {
		t.Fatalf("records %+v: want only the send after the outage", recs)
	}
	if st := e.sb.Stats(); st.Stalled != 2 || st.Rejected[131016] != 1 {
		t.Fatalf("stats %+v", st)
	}

	for _, bad := range []string{`{"mode":"down"}`, `{"mode":"refuse","for":"soon"}`, `{"mode":"refuse","code":130429}`,
		`{"mode":"refuse","at":"-1s"}`, `not json`} {
		if code, body := admin("POST", bad); code != http.StatusBadRequest || !strings.Contains(body, `"code":100`) {
			t.Errorf("POST %s: %d %s, want 400 and Graph code 100", bad, code, body)
		}
	}
	if o := e.outageState(t); o.Mode != "" {
		t.Errorf("a refused plan changed the outage: %+v", o)
	}
}

// Whatever the admin endpoint is sent, it answers 200 with a valid plan or 400 with a
// Graph error, and a refused body plans nothing.
func FuzzOutageRequest(f *testing.F) {
	for _, s := range []string{`{"mode":"refuse","for":"60s"}`, `{"mode":"stall","at":"20s","for":"1m","stall_max":"5s","code":133004}`,
		`{"mode":"refuse","code":1}`, `{"mode":""}`, `{}`, `[]`, `{"for":"-5s","mode":"stall"}`, `{"mode":"refuse","at":"9999999h"}`} {
		f.Add(s)
	}
	sb := New(Config{}, nil)
	h := sb.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		sb.ClearOutage()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/_sandbox/outage", strings.NewReader(body)))
		o := sb.Outage()
		switch w.Code {
		case http.StatusOK:
			if _, err := ParseOutageMode(string(o.Mode)); err != nil || outageErrors[o.Code] == nil || o.StallMaxMS <= 0 {
				t.Fatalf("accepted %q as %+v", body, o)
			}
		case http.StatusBadRequest:
			if o.Mode != "" || !strings.Contains(w.Body.String(), `"code":100`) {
				t.Fatalf("refused %q but planned %+v: %s", body, o, w.Body)
			}
		default:
			t.Fatalf("%q: status %d", body, w.Code)
		}
	})
}
