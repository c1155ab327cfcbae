package whatsapp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// refusing is a Graph API that refuses every send with code.
func refusing(t *testing.T, code int) *whatsapp.Channel {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"message":"refused","type":"OAuthException","code":%d,"fbtrace_id":"A1"}}`, code)
	}))
	t.Cleanup(srv.Close)
	return whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))
}

func send(ch *whatsapp.Channel) (string, error) {
	return ch.Send(context.Background(), dispatcher.Sender{ID: "s1", Channel: "whatsapp", PhoneNumberID: "106540352242922", Token: "tok"},
		dispatcher.Message{To: "+66810000001", CallbackData: "42:9", Rendered: templates.Rendered{Channel: "whatsapp", Kind: templates.KindText, Text: "hi"}})
}

// Every code of the table comes back as the *dispatcher.SendError the core acts on: the
// table's action (one the Reactor carries out), signal and retryability, and the wait a
// retry or a marketing hold asks for.
func TestRefusalsAreTypedOutcomes(t *testing.T) {
	core := dispatcher.Actions()
	for _, a := range graph.Actions() {
		if !slices.Contains(core, a.String()) {
			t.Errorf("the classifier returns %s, which dispatcher.Actions does not list", a)
		}
	}
	for _, c := range graph.Codes {
		t.Run(fmt.Sprint(c.Code), func(t *testing.T) {
			_, err := send(refusing(t, c.Code))
			se, ok := errors.AsType[*dispatcher.SendError](err)
			if !ok {
				t.Fatalf("error %v, want a *dispatcher.SendError", err)
			}
			if se.Code != c.Code || se.Action != c.Action.String() || se.Signal != c.Signal || se.Retryable != c.Retryable {
				t.Errorf("refusal %+v, table says %+v", se, c)
			}
			var want time.Duration
			switch {
			case c.Retryable:
				want = graph.RetryAfter(c.Code, 0)
			case c.Action == graph.ActionHoldMarketing:
				want = throttle.MarketingHold
			}
			if se.RetryAfter != want {
				t.Errorf("RetryAfter %v, want %v", se.RetryAfter, want)
			}
		})
	}
	// The codes the reactor test refuses with (dispatcher's TestEveryProviderActionHasAReaction).
	for code, want := range map[int]struct {
		action string
		signal throttle.Signal
	}{
		130472: {dispatcher.ActionDrop, 0}, 131009: {dispatcher.ActionFailJob, 0},
		130429: {dispatcher.ActionRetry, throttle.SignalSlowSender}, 131048: {dispatcher.ActionPauseSender, throttle.SignalHoldSender},
		131056: {dispatcher.ActionBackoffRecipient, throttle.SignalBackoffRecipient}, 131049: {dispatcher.ActionHoldMarketing, throttle.SignalHoldMarketing},
		131050: {dispatcher.ActionOptOut, 0}, 131026: {dispatcher.ActionUndeliverable, 0}, 131047: {dispatcher.ActionConvertToTemplate, 0},
		130497: {dispatcher.ActionSkipCountry, 0}, 132001: {dispatcher.ActionPauseCampaign, 0}, 190: {dispatcher.ActionPauseAccount, 0},
	} {
		if cl := graph.ClassifyCode(code); cl.Action.String() != want.action || cl.Signal != want.signal {
			t.Errorf("code %d classifies as %s (%s), want %s (%s)", code, cl.Action, cl.Signal, want.action, want.signal)
		}
	}
}

// A send cancelled by its caller is the caller's error, not a refusal to classify.
func TestCancelledSendIsNotARefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	ch := whatsapp.New(graph.NewClient(graph.ClientConfig{BaseURL: srv.URL}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ch.Send(ctx, dispatcher.Sender{PhoneNumberID: "1", Token: "t"}, dispatcher.Message{To: "+66810000001", Rendered: templates.Rendered{Text: "hi"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, ok := errors.AsType[*dispatcher.SendError](err); ok {
		t.Fatalf("a cancelled send came back as a refusal: %v", err)
	}
}
