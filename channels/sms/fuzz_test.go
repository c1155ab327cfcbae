package sms

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

// FuzzDecodeStatus: never panics; an error or an ignored status yields a zero Report;
// an accepted one names its campaign, message and kind, and carries an action exactly
// when it failed.
func FuzzDecodeStatus(f *testing.F) {
	f.Add(statusForm("delivered").Encode(), "42:9")
	f.Add(statusForm("undelivered", "ErrorCode", "30003", "RawDlrDoneDate", "2509171342").Encode(), "42:9:v.b")
	f.Add(statusForm("failed", "ErrorCode", "0021610").Encode(), "c:1")
	f.Add(statusForm("accepted").Encode(), "")
	f.Add("MessageSid=SM1&MessageStatus=sent&MessageStatus=failed", "a:0")
	f.Add("SmsSid=&SmsStatus=read&ErrorCode=-1", "x:4294967296")
	f.Fuzz(func(t *testing.T, raw, cb string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		rep, ok, err := DecodeStatus(form, cb)
		if err != nil || !ok {
			if rep != (dispatcher.Report{}) || ok {
				t.Fatalf("DecodeStatus = %+v, %v, %v: want a zero report", rep, ok, err)
			}
			return
		}
		if !rep.Kind.Valid() || rep.Campaign == "" || rep.MessageID == "" || rep.Channel != ChannelName {
			t.Fatalf("incomplete report %+v", rep)
		}
		failed := rep.Kind == events.Failed
		if failed != (rep.Action != "") || (!failed && rep.Code != 0) {
			t.Fatalf("report %+v: action and code must come with failed only", rep)
		}
		if failed && rep.Action != ClassifyCode(rep.Code).Action {
			t.Fatalf("report %+v: action is not the table's", rep)
		}
		// Whatever decodes was signable: the signature of the same form verifies.
		const token, u = "tok", "https://h.example/webhooks/sms/status"
		if err := VerifySignature(token, u, form, Sign(token, u, form)); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
	})
}

// FuzzDecodeInbound: never panics; an accepted message has its id, both numbers and a
// bounded UTF-8 text; Keyword never says both opt-out and opt-in.
func FuzzDecodeInbound(f *testing.F) {
	f.Add("MessageSid=SM1&From=%2B14155550123&To=%2B14155550100&Body=STOP")
	f.Add("SmsMessageSid=SM1&From=a&To=b&Body=+start+")
	f.Add("MessageSid=SM1&From=a&To=b&Body=%ff")
	f.Add("MessageSid=&From=&To=")
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		in, err := DecodeInbound(form)
		if err != nil {
			if in != (dispatcher.Inbound{}) {
				t.Fatalf("error %v with %+v", err, in)
			}
			return
		}
		if in.MessageID == "" || in.From == "" || in.SenderRef == "" || in.Channel != ChannelName {
			t.Fatalf("incomplete inbound %+v", in)
		}
		if !utf8.ValidString(in.Text) || utf8.RuneCountInString(in.Text) > MaxInboundChars {
			t.Fatalf("text not bounded UTF-8: %q", in.Text)
		}
		if out, opt := Keyword(in.Text); out && opt {
			t.Fatalf("Keyword(%q) is both", in.Text)
		}
	})
}

// FuzzVerifySignature: never panics; accepts only the exact signature of the URL (or
// its default-port variant) and form.
func FuzzVerifySignature(f *testing.F) {
	ex := twilioExample
	f.Add(ex.token, ex.url, ex.form.Encode(), ex.sig)
	f.Add("t", "https://h.example:443/p?cb=1", "A=1&A=2", "")
	f.Add("t", "http://[::1]/p", "", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("", "", "", "x")
	f.Fuzz(func(t *testing.T, token, u, raw, header string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		err = VerifySignature(token, u, form, header)
		if token == "" {
			if err == nil {
				t.Fatal("verified without a token")
			}
			return
		}
		if err := VerifySignature(token, u, form, Sign(token, u, form)); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
		if err == nil {
			h := strings.TrimSpace(header)
			for _, v := range urlVariants(u) {
				if h == Sign(token, v, form) {
					return
				}
			}
			t.Fatalf("accepted %q for %q", header, u)
		}
	})
}
