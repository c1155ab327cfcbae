package graph

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-dev/herald/throttle"
)

// TestClassifyCodes covers every code of the provider reference (docs/providers/whatsapp.md), spelled out.
func TestClassifyCodes(t *testing.T) {
	cases := []struct {
		code       int
		action     Action
		retryable  bool
		slowSender bool
	}{
		{130429, ActionRetry, true, true},
		{131056, ActionBackoffRecipient, true, false},
		{4, ActionRetry, true, false},
		{80007, ActionRetry, true, false},
		{131057, ActionRetry, true, false},
		{131000, ActionRetry, true, false},
		{131016, ActionRetry, true, false},
		{133004, ActionRetry, true, false},
		{1, ActionRetry, true, false},
		{2, ActionRetry, true, false},
		{131047, ActionConvertToTemplate, false, false},
		{131049, ActionHoldMarketing, false, false},
		{131050, ActionOptOut, false, false},
		{131026, ActionUndeliverable, false, false},
		{130403, ActionDrop, false, false},
		{130472, ActionDrop, false, false},
		{100, ActionFailJob, false, false},
		{131008, ActionFailJob, false, false},
		{131009, ActionFailJob, false, false},
		{131051, ActionFailJob, false, false},
		{132000, ActionPauseCampaign, false, false},
		{132012, ActionPauseCampaign, false, false},
		{132001, ActionPauseCampaign, false, false},
		{132015, ActionPauseCampaign, false, false},
		{132016, ActionPauseCampaign, false, false},
		{131048, ActionPauseSender, false, false},
		{131064, ActionPauseAccount, false, false},
		{190, ActionPauseAccount, false, false},
		{0, ActionPauseAccount, false, false},
		{10, ActionPauseAccount, false, false},
		{200, ActionPauseAccount, false, false},
		{250, ActionPauseAccount, false, false},
		{299, ActionPauseAccount, false, false},
		{368, ActionPauseAccount, false, false},
		{131031, ActionPauseAccount, false, false},
		{131042, ActionPauseAccount, false, false},
		{130497, ActionSkipCountry, false, false},
		// not in the table: unknown codes fail the job
		{199, ActionFailJob, false, false},
		{300, ActionFailJob, false, false},
		{999999, ActionFailJob, false, false},
		{-7, ActionFailJob, false, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			want := Class{Action: c.action, Retryable: c.retryable, SlowSender: c.slowSender, Code: c.code, Signal: signals[c.code]}
			if got := ClassifyCode(c.code); got != want {
				t.Errorf("ClassifyCode = %+v, want %+v", got, want)
			}
			// The same through an error, whatever the HTTP status says.
			err := fmt.Errorf("send job: %w", &APIError{HTTPStatus: 200, Code: c.code})
			if got := Classify(err); got != want {
				t.Errorf("Classify = %+v, want %+v", got, want)
			}
		})
	}
}

// signals are the pace signals of the codes that have one.
var signals = map[int]throttle.Signal{130429: throttle.SignalSlowSender, 131056: throttle.SignalBackoffRecipient,
	131057: throttle.SignalSenderMaintenance, 131049: throttle.SignalHoldMarketing, 131048: throttle.SignalHoldSender}

func TestClassifyErrors(t *testing.T) {
	retry := Class{Action: ActionRetry, Retryable: true, Code: CodeTransport}
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, Class{}},
		{"transport 502", &TransportError{HTTPStatus: 502, Body: "<html>"}, retry},
		{"wrapped transport", fmt.Errorf("x: %w", &TransportError{Err: errors.New("reset")}), retry},
		{"deadline", context.DeadlineExceeded, retry},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), retry},
		{"other", ErrInvalidRequest, Class{Action: ActionFailJob, Code: CodeTransport}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.err); got != c.want {
				t.Errorf("Classify(%v) = %+v, want %+v", c.err, got, c.want)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	seen := map[string]bool{}
	for a := ActionNone; a <= ActionSkipCountry; a++ {
		s := a.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("Action(%d).String() = %q", a, s)
		}
		seen[s] = true
	}
	if got := Action(200).String(); got != "unknown" {
		t.Errorf("out of range: %q", got)
	}
	if ActionPauseCampaign.String() != "pause_campaign" {
		t.Errorf("pause_campaign: %q", ActionPauseCampaign)
	}
}

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		code, attempt int
		want          time.Duration
	}{
		{131056, 1, 4 * time.Second},
		{131056, 2, 16 * time.Second},
		{131056, 3, 64 * time.Second},
		{131056, 0, 4 * time.Second},
		{131056, 50, time.Hour},
		{131057, 1, 60 * time.Second},
		{131057, 9, 60 * time.Second},
		{131049, 1, 24 * time.Hour},
		{130429, 1, time.Second},
		{130429, 2, 2 * time.Second},
		{130429, 4, 8 * time.Second},
		{131000, 30, 5 * time.Minute},
		{CodeTransport, 1, time.Second},
		{CodeTransport, 3, 4 * time.Second},
		{CodeTransport, 1000, 5 * time.Minute},
		{131026, 1, 0},
		{132001, 1, 0},
		{190, 1, 0},
		{0, 1, 0},
	}
	for _, c := range cases {
		if got := RetryAfter(c.code, c.attempt); got != c.want {
			t.Errorf("RetryAfter(%d, %d) = %v, want %v", c.code, c.attempt, got, c.want)
		}
	}
}
