package cli

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// `herald bench throttle --channel line`: the LINE sandbox's push endpoint allows --rate
// requests per second (LINE's own limit is 2,000), and the worker processes push one
// message per contact through the LINE adapter, each request in a governor slot. Its
// 429s are LINE's "Too Many Requests".

func newLINEBench(o throttleBenchOptions) benchSandbox {
	return lineBench{linesandbox.New(linesandbox.Config{Token: benchToken, PushRate: int(math.Ceil(o.Rate))})}
}

type lineBench struct{ *linesandbox.Sandbox }

func (s lineBench) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (s lineBench) acceptedCount() int64 { return s.Stats().Accepted }

// accepted reads each push's callback data from the start of its text.
func (s lineBench) accepted() []benchAccepted {
	var out []benchAccepted
	for _, r := range s.Records() {
		var m struct {
			Text string `json:"text"`
		}
		if len(r.Messages) > 0 && json.Unmarshal(r.Messages[0], &m) == nil {
			cb, _, _ := strings.Cut(m.Text, " ")
			out = append(out, benchAccepted{cb: cb, at: r.At})
		}
	}
	return out
}

func (s lineBench) refusals() (int64, []CodeRequests) {
	st := s.Stats()
	out := []CodeRequests{}
	for reason, n := range st.Rejected {
		code, _ := strconv.Atoi(strings.Fields(reason)[0])
		out = append(out, CodeRequests{Code: code, Requests: n})
	}
	slices.SortFunc(out, func(a, b CodeRequests) int { return a.Code - b.Code })
	return st.Rejected["429 rate"], out
}

// benchLINESend is a bench worker's send on LINE: a push to the job's own user with its
// callback data first in the text and its retry key. A refusal's pace signal goes to
// the governor, as the worker does (a rate 429 slows the sender). It returns the HTTP
// status of a refusal (0: a transport error), and whether it was refused.
func benchLINESend(base string, gov *throttle.Governor) func(ctx context.Context, id, job int) (int, bool) {
	ch, err := line.New(line.Config{BaseURL: base})
	return func(ctx context.Context, id, job int) (int, bool) {
		if err != nil {
			return 0, true
		}
		cb := benchCallback(id, job)
		msgs, merr := line.Messages(templates.Rendered{Kind: templates.KindText, Text: cb + " Herald bench"})
		if merr != nil {
			return 0, true
		}
		_, serr := ch.Push(ctx, benchToken, line.RetryKey(cb), linesandbox.UserID(cb), msgs)
		var ae *line.APIError
		switch {
		case serr == nil:
			return 0, false
		case errors.As(serr, &ae):
			_ = gov.Pushback(ctx, benchSender, line.Classify(serr).Signal)
			return ae.Status, true
		}
		return 0, true
	}
}
