package line

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-dev/herald/templates"
)

const fuzzUser = "U0123456789abcdef0123456789abcdef"

// FuzzDecode: any body decodes to events Herald can act on, or to an error and nothing.
func FuzzDecode(f *testing.F) {
	f.Add(`{"destination":"Ubot","events":[{"type":"follow","mode":"active","timestamp":1,"source":{"type":"user","userId":"` + fuzzUser + `"},"webhookEventId":"01A","deliveryContext":{"isRedelivery":false}}]}`)
	f.Add(`{"destination":"Ubot","events":[{"type":"message","mode":"active","timestamp":1,"source":{"type":"user","userId":"` + fuzzUser + `"},"webhookEventId":"01B","message":{"id":"1","type":"text","text":"STOP","quotedMessageId":"9"}}]}`)
	f.Add(`{"destination":"Ubot","events":[{"type":"unfollow","timestamp":1,"source":{"type":"group","groupId":"C1"},"webhookEventId":"01C"}]}`)
	f.Add(`{"events":[]}`)
	f.Add(`{"events":null}`)
	f.Add(`[]`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, body string) {
		d, err := Decode([]byte(body), "s1")
		if err != nil {
			if len(d.Inbound) != 0 || len(d.Preferences) != 0 {
				t.Fatalf("error %v with %+v", err, d)
			}
			return
		}
		for _, p := range d.Preferences {
			if !ValidUserID(p.From) || p.ID == "" || p.Proof == "" || p.Channel != ChannelName || p.SenderRef != "s1" {
				t.Fatalf("preference %+v", p)
			}
		}
		for _, in := range d.Inbound {
			if !ValidUserID(in.From) || in.MessageID == "" || !utf8.ValidString(in.Text) || in.Time.IsZero() {
				t.Fatalf("inbound %+v", in)
			}
		}
	})
}

// FuzzVerifySignature: only the signature of the body under the secret verifies.
func FuzzVerifySignature(f *testing.F) {
	f.Add("secret", []byte(`{"events":[]}`), "")
	f.Add("secret", []byte(`{}`), "garbage")
	f.Add("s", []byte{}, strings.Repeat("A", 44))
	f.Fuzz(func(t *testing.T, secret string, body []byte, header string) {
		good := Sign(secret, body)
		if secret != "" && VerifySignature(secret, body, good) != nil {
			t.Fatal("its own signature does not verify")
		}
		if header != good && strings.TrimSpace(header) != good && VerifySignature(secret, body, header) == nil {
			t.Fatalf("header %q verified for body %q", header, body)
		}
	})
}

// FuzzMessages: whatever a template renders, the adapter sends message objects LINE
// accepts (valid JSON, the limits held) or refuses before sending.
func FuzzMessages(f *testing.F) {
	f.Add("Hi {{name}}, see https://h.example/c/abc")
	f.Add(strings.Repeat("a", MaxTextChars))
	f.Add("")
	f.Add("\xff")
	f.Add("x https://a.example/\" y")
	f.Fuzz(func(t *testing.T, text string) {
		ms, err := Messages(templates.Rendered{Kind: templates.KindText, Text: text})
		if err != nil {
			if ae, ok := err.(*APIError); !ok || ae.Status != http.StatusBadRequest {
				t.Fatalf("refusal %v is not a 400", err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > MaxMessages {
			t.Fatalf("%d messages", len(ms))
		}
		for _, m := range ms {
			var v struct {
				Type    string `json:"type"`
				Text    string `json:"text"`
				AltText string `json:"altText"`
			}
			if err := json.Unmarshal(m, &v); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			switch v.Type {
			case "text":
				if v.Text != text {
					t.Fatalf("text %q became %q", text, v.Text)
				}
			case "template":
				if n := utf8.RuneCountInString(v.AltText); n == 0 || n > maxTemplateAlt {
					t.Fatalf("altText of %d characters", n)
				}
			case "flex":
				if n := utf8.RuneCountInString(v.AltText); n == 0 || n > maxFlexAlt {
					t.Fatalf("altText of %d characters", n)
				}
			default:
				t.Fatalf("type %q", v.Type)
			}
		}
	})
}

// FuzzDecodeAnswer: any answer is a result only for 200 and 409 with the accepted id,
// else a typed error.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add(200, `{"sentMessages":[{"id":"1","quoteToken":"q"}]}`, "")
	f.Add(409, `{"message":"The retry key is already accepted"}`, "abc")
	f.Add(429, `{"message":"You have reached your monthly limit."}`, "")
	f.Add(400, `{"message":"x","details":[{"message":"bad","property":"to[1]"}]}`, "")
	f.Add(502, `<html>`, "")
	f.Fuzz(func(t *testing.T, status int, body, accepted string) {
		if status < 100 || status > 999 {
			return
		}
		h := http.Header{}
		h.Set(RequestIDHeader, "req")
		if accepted != "" {
			h.Set(AcceptedRequestIDHeader, accepted)
		}
		res, err := decodeAnswer(status, h, []byte(body))
		switch {
		case err == nil && status != 200 && !(status == 409 && strings.TrimSpace(h.Get(AcceptedRequestIDHeader)) != ""):
			t.Fatalf("status %d decoded to %+v", status, res)
		case err != nil:
			_, api := err.(*APIError)
			_, tr := err.(*TransportError)
			if !api && !tr {
				t.Fatalf("untyped error %T %v", err, err)
			}
		}
	})
}
