package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
)

// ChannelName is the channel's name in campaigns, senders, consent and events.
const ChannelName = "whatsapp"

// Channel sends through the WhatsApp Cloud API (or the sandbox, which speaks it).
type Channel struct {
	Client *graph.Client
}

var _ dispatcher.Channel = (*Channel)(nil)

// New returns the adapter sending with client.
func New(client *graph.Client) *Channel { return &Channel{Client: client} }

// The Cloud API's bounds on a message (refused with code 100, invalid parameter).
const (
	MaxTextRunes         = 4096 // a free-form text body
	MaxCallbackDataRunes = 512  // biz_opaque_callback_data
)

// Send sends one rendered message and classifies a refusal by its error code. A message
// the Cloud API would refuse for its size is refused here, before any request, as Meta
// would refuse it (code 100).
func (c *Channel) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	req := graph.SendRequest{To: m.To, BizOpaqueCallbackData: m.CallbackData}
	switch {
	case m.Rendered.WhatsApp != nil:
		req.Type, req.Template = "template", m.Rendered.WhatsApp
	default:
		req.Type, req.Text = "text", &graph.Text{Body: m.Rendered.Text, PreviewURL: true}
		if n := utf8.RuneCountInString(m.Rendered.Text); n == 0 || n > MaxTextRunes {
			return "", invalid(fmt.Errorf("text body of %d characters (the Cloud API takes 1 to %d)", n, MaxTextRunes))
		}
	}
	if n := utf8.RuneCountInString(m.CallbackData); n > MaxCallbackDataRunes {
		return "", invalid(fmt.Errorf("callback data of %d characters (the Cloud API takes up to %d)", n, MaxCallbackDataRunes))
	}
	res, err := c.Client.Send(ctx, s.PhoneNumberID, s.Token, req)
	if err == nil {
		return res.MessageID, nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return "", err
	}
	cl := graph.Classify(err)
	se := &dispatcher.SendError{Code: cl.Code, Retryable: cl.Retryable, Action: cl.Action.String(), Signal: cl.Signal, Err: err}
	if cl.Retryable || cl.Action == graph.ActionHoldMarketing {
		se.RetryAfter = graph.RetryAfter(cl.Code, 0) // 131049: the 24 h hold
	}
	return "", se
}

// invalid is the refusal of a message the Cloud API would answer with code 100.
func invalid(err error) *dispatcher.SendError {
	cl := graph.ClassifyCode(100)
	return &dispatcher.SendError{Code: cl.Code, Retryable: cl.Retryable, Action: cl.Action.String(), Signal: cl.Signal, Err: err}
}
