package cli

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/channels/telegram"
	tgsandbox "github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
)

// The provider `herald bench throttle` paces sends to: --channel whatsapp (the Cloud API
// sandbox, throughput --rate, 130429 when over) or telegram (the Bot API sandbox: the
// bot's --rate per second, 1 message/s per chat, 429 with retry_after when over; each
// job goes to a chat of its own).

const benchTelegramToken = "4242:bench-telegram-token"

// benchSandbox is the provider a governor bench sends to.
type benchSandbox interface {
	Handler() http.Handler
	Run(ctx context.Context) error
	acceptedCount() int64
	// accepted returns each accepted send's callback data and acceptance time.
	accepted() []benchAccepted
	// refusals returns the provider's throughput refusals (130429, Telegram's 429) and all
	// refusals by code.
	refusals() (int64, []CodeRequests)
}

type benchAccepted struct {
	cb string
	at time.Time
}

func newBenchSandbox(o throttleBenchOptions) benchSandbox {
	if o.Channel == "line" {
		return newLINEBench(o)
	}
	if o.Channel == telegram.ChannelName {
		sc := tgsandbox.Config{Bots: map[string]string{benchTelegramToken: "herald_bench_bot"}, BotRate: o.Rate}
		if o.Rate > telegram.DefaultRate {
			sc.PaidRate = o.Rate // paid broadcast
		}
		return tgBench{tgsandbox.New(sc)}
	}
	return waBench{sandbox.New(sandbox.Config{Token: benchToken, Throughput: o.Rate, DelayScale: -1, PairInterval: -1,
		Templates: []sandbox.ApprovedTemplate{{Name: benchTemplate, Language: "en_US", Category: "UTILITY"}}}, nil)}
}

type waBench struct{ *sandbox.Sandbox }

func (s waBench) acceptedCount() int64 { return s.Stats().Accepted }

func (s waBench) accepted() []benchAccepted {
	var out []benchAccepted
	for _, r := range s.Records() {
		if r.PhoneNumberID == benchPNID {
			out = append(out, benchAccepted{cb: r.CallbackData, at: r.AcceptedAt})
		}
	}
	return out
}

func (s waBench) refusals() (int64, []CodeRequests) {
	st := s.Stats()
	var out []CodeRequests
	for code, n := range st.Rejected {
		out = append(out, CodeRequests{Code: code, Requests: n})
	}
	return st.Rejected[130429], out
}

type tgBench struct{ *tgsandbox.Sandbox }

func (s tgBench) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (s tgBench) acceptedCount() int64 { return s.Stats().Accepted }

func (s tgBench) accepted() []benchAccepted {
	var out []benchAccepted
	for _, m := range s.Messages() {
		cb, _, _ := strings.Cut(m.Text, " ")
		out = append(out, benchAccepted{cb: cb, at: m.At})
	}
	return out
}

func (s tgBench) refusals() (int64, []CodeRequests) {
	st := s.Stats()
	var out []CodeRequests
	if st.TooMany > 0 {
		out = append(out, CodeRequests{Code: 429, Requests: st.TooMany})
	}
	return st.TooMany, out
}

// benchTelegramSend is a bench worker's send on Telegram: job's own chat, its callback
// data first in the text; paid broadcast above the free rate. It returns the Bot API's
// error code of a refusal (0: a transport error), and whether it was refused.
func benchTelegramSend(base string, rate float64) func(ctx context.Context, id, job int) (int, bool) {
	ch, err := telegram.New(telegram.Config{BaseURL: base})
	return func(ctx context.Context, id, job int) (int, bool) {
		if err != nil {
			return 0, true
		}
		_, serr := ch.SendRequest(ctx, benchTelegramToken, telegram.Request{ChatID: strconv.Itoa(1_000_000_000 + id*10_000_000 + job),
			Text: benchCallback(id, job) + " Your order has shipped", AllowPaidBroadcast: rate > telegram.DefaultRate})
		if serr == nil {
			return 0, false
		}
		if cl := telegram.Classify(serr); cl.Code != telegram.CodeTransport {
			return cl.Code, true
		}
		return 0, true
	}
}
