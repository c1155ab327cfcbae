package sms

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/throttle"
)

// twilioExample is the request of Twilio's security documentation
// (https://www.twilio.com/docs/usage/security#validating-requests): auth token 12345, a
// POST to https://mycompany.com/myapp.php?foo=1&bar=2 with these parameters, signed
// 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
var twilioExample = struct {
	token, url, sig string
	form            url.Values
}{
	token: "12345",
	url:   "https://mycompany.com/myapp.php?foo=1&bar=2",
	sig:   "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
	form: url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+12349013030"},
		"Digits":  {"1234"},
		"From":    {"+12349013030"},
		"To":      {"+18005551212"},
	},
}

func TestSignTwilioExample(t *testing.T) {
	ex := twilioExample
	if got := Sign(ex.token, ex.url, ex.form); got != ex.sig {
		t.Fatalf("Sign = %s, Twilio's documentation says %s", got, ex.sig)
	}
	if err := VerifySignature(ex.token, ex.url, ex.form, ex.sig); err != nil {
		t.Fatalf("documented signature rejected: %v", err)
	}
	// Twilio's libraries also accept the URL with the scheme's default port.
	if err := VerifySignature(ex.token, "https://mycompany.com:443/myapp.php?foo=1&bar=2", ex.form, ex.sig); err != nil {
		t.Fatalf("URL with :443 rejected: %v", err)
	}
}

func TestVerifySignatureRejects(t *testing.T) {
	ex := twilioExample
	altered := url.Values{}
	for k, v := range ex.form {
		altered[k] = v
	}
	altered.Set("Digits", "1235")
	extra := url.Values{}
	for k, v := range ex.form {
		extra[k] = v
	}
	extra.Set("ErrorCode", "21610")
	tests := []struct {
		name, token, url, header string
		form                     url.Values
		want                     error
	}{
		{"no token", "", ex.url, ex.sig, ex.form, ErrNoAuthToken},
		{"no header", ex.token, ex.url, "  ", ex.form, ErrSignatureMissing},
		{"not base64", ex.token, ex.url, "not base64!", ex.form, ErrSignatureMalformed},
		{"short", ex.token, ex.url, "AAAA", ex.form, ErrSignatureMalformed},
		{"too long", ex.token, ex.url, ex.sig + ex.sig, ex.form, ErrSignatureMalformed},
		{"wrong token", "54321", ex.url, ex.sig, ex.form, ErrSignatureMismatch},
		{"altered value", ex.token, ex.url, ex.sig, altered, ErrSignatureMismatch},
		{"added parameter", ex.token, ex.url, ex.sig, extra, ErrSignatureMismatch},
		{"other query", ex.token, "https://mycompany.com/myapp.php?foo=1&bar=3", ex.sig, ex.form, ErrSignatureMismatch},
		{"other host", ex.token, "https://evil.example/myapp.php?foo=1&bar=2", ex.sig, ex.form, ErrSignatureMismatch},
		{"http instead of https", ex.token, "http://mycompany.com/myapp.php?foo=1&bar=2", ex.sig, ex.form, ErrSignatureMismatch},
		{"odd port", ex.token, "https://mycompany.com:8443/myapp.php?foo=1&bar=2", ex.sig, ex.form, ErrSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.token, tt.url, tt.form, tt.header)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifySignature = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignRepeatedParameters(t *testing.T) {
	a := url.Values{"MediaUrl": {"b", "a"}, "To": {"+1"}}
	b := url.Values{"MediaUrl": {"a", "b"}, "To": {"+1"}}
	if Sign("t", "https://h/x", a) != Sign("t", "https://h/x", b) {
		t.Fatal("the order of a parameter's values changed the signature")
	}
	if Sign("t", "https://h/x", a) == Sign("t", "https://h/x", url.Values{"MediaUrl": {"a"}, "To": {"+1"}}) {
		t.Fatal("dropping a value kept the signature")
	}
}

func TestURLVariants(t *testing.T) {
	tests := map[string][]string{
		"https://h.example/p?cb=1":      {"https://h.example/p?cb=1", "https://h.example:443/p?cb=1"},
		"https://h.example:443/p":       {"https://h.example:443/p", "https://h.example/p"},
		"http://h.example/p":            {"http://h.example/p", "http://h.example:80/p"},
		"http://[::1]:80/p":             {"http://[::1]:80/p", "http://[::1]/p"},
		"https://h.example:8443/p":      {"https://h.example:8443/p"},
		"not a url":                     {"not a url"},
		"ftp://h.example/p":             {"ftp://h.example/p"},
		"https://h.example/p?cb=a%3A1&": {"https://h.example/p?cb=a%3A1&", "https://h.example:443/p?cb=a%3A1&"},
	}
	for in, want := range tests {
		got := urlVariants(in)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("urlVariants(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFullURLAndStatusCallback(t *testing.T) {
	cb := StatusCallbackURL("https://herald.example.com/", "42:9:v.b")
	if cb != "https://herald.example.com/webhooks/sms/status?cb=42%3A9%3Av.b" {
		t.Fatalf("StatusCallbackURL = %s", cb)
	}
	u, _ := url.Parse(cb)
	if got := FullURL("https://herald.example.com", u.RequestURI()); got != cb {
		t.Fatalf("FullURL = %s, want what Twilio requested: %s", got, cb)
	}
	if got := u.Query().Get("cb"); got != "42:9:v.b" {
		t.Fatalf("cb = %q", got)
	}
}

func statusForm(status string, extra ...string) url.Values {
	f := url.Values{
		"AccountSid":    {"AC00000000000000000000000000000001"},
		"ApiVersion":    {"2010-04-01"},
		"MessageSid":    {"SM0123456789abcdef0123456789abcdef"},
		"SmsSid":        {"SM0123456789abcdef0123456789abcdef"},
		"MessageStatus": {status},
		"SmsStatus":     {status},
		"From":          {"+14155550100"},
		"To":            {"+14155550123"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

func TestDecodeStatus(t *testing.T) {
	base := dispatcher.Report{Key: dispatcher.Key{Campaign: "42", Contact: 9}, Channel: "sms", SenderRef: "+14155550100", MessageID: "SM0123456789abcdef0123456789abcdef"}
	with := func(f func(*dispatcher.Report)) dispatcher.Report {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name string
		form url.Values
		cb   string
		want dispatcher.Report
		ok   bool
	}{
		{"queued", statusForm("queued"), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Sent }), true},
		{"sending", statusForm("sending"), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Sent }), true},
		{"sent", statusForm("sent"), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Sent }), true},
		{"delivered with carrier time", statusForm("delivered", "RawDlrDoneDate", "2509171342"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Time = events.Delivered, time.Date(2025, 9, 17, 13, 42, 0, 0, time.UTC)
		}), true},
		{"read", statusForm("read"), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Read }), true},
		{"variant", statusForm("delivered"), "42:9:v.b", with(func(r *dispatcher.Report) { r.Kind, r.Variant = events.Delivered, "b" }), true},
		{"undelivered 30003", statusForm("undelivered", "ErrorCode", "30003"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Code, r.Action = events.Failed, 30003, dispatcher.ActionUndeliverable
		}), true},
		{"failed 30007", statusForm("failed", "ErrorCode", "30007"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Code, r.Action = events.Failed, 30007, dispatcher.ActionDrop
		}), true},
		{"failed 30001", statusForm("failed", "ErrorCode", "30001"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Code, r.Action, r.Signal = events.Failed, 30001, dispatcher.ActionRetry, throttle.SignalSlowSender // the queue overflowed: slow the sender
		}), true},
		{"failed 21610", statusForm("failed", "ErrorCode", "21610"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Code, r.Action = events.Failed, 21610, dispatcher.ActionOptOut
		}), true},
		{"failed unknown code", statusForm("failed", "ErrorCode", "39999"), "42:9", with(func(r *dispatcher.Report) {
			r.Kind, r.Code, r.Action = events.Failed, 39999, dispatcher.ActionFailJob
		}), true},
		{"messaging service", func() url.Values {
			f := statusForm("sent")
			f.Del("From")
			f.Set("MessagingServiceSid", "MG1")
			return f
		}(), "42:9", with(func(r *dispatcher.Report) { r.Kind, r.SenderRef = events.Sent, "MG1" }), true},
		{"legacy SmsSid only", func() url.Values {
			f := statusForm("sent")
			f.Del("MessageSid")
			f.Del("MessageStatus")
			return f
		}(), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Sent }), true},
		{"accepted is not reported", statusForm("accepted"), "42:9", dispatcher.Report{}, false},
		{"canceled is not reported", statusForm("canceled"), "", dispatcher.Report{}, false},
		{"bad carrier time is ignored", statusForm("delivered", "RawDlrDoneDate", "yesterday"), "42:9", with(func(r *dispatcher.Report) { r.Kind = events.Delivered }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := DecodeStatus(tt.form, tt.cb)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || got != tt.want {
				t.Fatalf("DecodeStatus = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDecodeStatusRejects(t *testing.T) {
	noSid := statusForm("sent")
	noSid.Del("MessageSid")
	noSid.Del("SmsSid")
	noStatus := statusForm("sent")
	noStatus.Del("MessageStatus")
	noStatus.Del("SmsStatus")
	tests := []struct {
		name string
		form url.Values
		cb   string
	}{
		{"no sid", noSid, "42:9"},
		{"no status", noStatus, "42:9"},
		{"unknown status", statusForm("exploded"), "42:9"},
		{"no callback data", statusForm("delivered"), ""},
		{"callback data without contact", statusForm("delivered"), "42"},
		{"contact not a number", statusForm("delivered"), "42:nine"},
		{"error code not a number", statusForm("failed", "ErrorCode", "30003x"), "42:9"},
		{"error code too long", statusForm("failed", "ErrorCode", "1234567890"), "42:9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if rep, ok, err := DecodeStatus(tt.form, tt.cb); !errors.Is(err, ErrBadWebhook) || ok || rep != (dispatcher.Report{}) {
				t.Fatalf("DecodeStatus = %+v, %v, %v; want ErrBadWebhook", rep, ok, err)
			}
		})
	}
}

func TestDecodeInbound(t *testing.T) {
	form := url.Values{
		"AccountSid": {"AC1"}, "MessageSid": {"SM1"}, "SmsSid": {"SM1"},
		"From": {"+14155550123"}, "To": {"+14155550100"}, "Body": {"STOP"}, "NumMedia": {"0"},
	}
	in, err := DecodeInbound(form)
	if err != nil {
		t.Fatal(err)
	}
	want := dispatcher.Inbound{Channel: "sms", From: "+14155550123", SenderRef: "+14155550100", MessageID: "SM1", Text: "STOP"}
	if in != want {
		t.Fatalf("DecodeInbound = %+v, want %+v", in, want)
	}
	if optOut, _ := Keyword(in.Text); !optOut {
		t.Fatal("STOP is not an opt-out")
	}

	media := url.Values{"MessageSid": {"MM1"}, "From": {"+1"}, "To": {"+2"}, "NumMedia": {"1"}}
	if in, err := DecodeInbound(media); err != nil || in.Text != "" {
		t.Fatalf("media-only message: %+v, %v", in, err)
	}
	for name, f := range map[string]url.Values{
		"no sid":   {"From": {"+1"}, "To": {"+2"}, "Body": {"hi"}},
		"no from":  {"MessageSid": {"SM1"}, "To": {"+2"}, "Body": {"hi"}},
		"no to":    {"MessageSid": {"SM1"}, "From": {"+1"}, "Body": {"hi"}},
		"not utf8": {"MessageSid": {"SM1"}, "From": {"+1"}, "To": {"+2"}, "Body": {"\xff"}},
		"too long": {"MessageSid": {"SM1"}, "From": {"+1"}, "To": {"+2"}, "Body": {strings.Repeat("é", MaxInboundChars+1)}},
	} {
		if _, err := DecodeInbound(f); !errors.Is(err, ErrBadWebhook) {
			t.Errorf("%s: DecodeInbound = %v, want ErrBadWebhook", name, err)
		}
	}
}

func TestKeyword(t *testing.T) {
	optOut := []string{"STOP", "stop", "Stop", " stop\n", "\tSTOPALL ", "unsubscribe", "End", "QUIT", "revoke", "OptOut", "cancel", "\u00a0STOP\u00a0"}
	optIn := []string{"START", "start", " Unstop "}
	neither := []string{"", "stop by the store", "STOP!", "please stop", "STOP ALL", "S T O P", "yes", "YES", "unstoppable",
		"\u017ftop", // long s: Unicode folds it to s, carriers do not
		"starts", "help", "st0p", "STOPSTOP"}
	for _, s := range optOut {
		if out, in := Keyword(s); !out || in {
			t.Errorf("Keyword(%q) = %v, %v; want opt-out", s, out, in)
		}
	}
	for _, s := range optIn {
		if out, in := Keyword(s); out || !in {
			t.Errorf("Keyword(%q) = %v, %v; want opt-in", s, out, in)
		}
	}
	for _, s := range neither {
		if out, in := Keyword(s); out || in {
			t.Errorf("Keyword(%q) = %v, %v; want neither", s, out, in)
		}
	}
	for _, k := range append(append([]string(nil), OptOutKeywords...), OptInKeywords...) {
		if out, in := Keyword(strings.ToLower(k)); !out && !in {
			t.Errorf("keyword %s is not recognised", k)
		}
	}
}

func TestReadForm(t *testing.T) {
	f, err := ReadForm(strings.NewReader("Body=STOP&From=%2B14155550123"))
	if err != nil || f.Get("Body") != "STOP" || f.Get("From") != "+14155550123" {
		t.Fatalf("ReadForm = %v, %v", f, err)
	}
	if _, err := ReadForm(strings.NewReader("Body=" + strings.Repeat("a", MaxWebhookBody))); !errors.Is(err, ErrBadWebhook) {
		t.Fatalf("oversized body: %v", err)
	}
	if _, err := ReadForm(strings.NewReader("Body=%zz")); !errors.Is(err, ErrBadWebhook) {
		t.Fatalf("malformed body: %v", err)
	}
}

func TestDecodeReply(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := decodeReply(201, "", []byte(`{"sid":"SM1","status":"queued","num_segments":"2","from":"+14155550100","error_code":null}`), now)
	if err != nil || res != (Result{SID: "SM1", Status: "queued", NumSegments: 2, From: "+14155550100"}) {
		t.Fatalf("201: %+v, %v", res, err)
	}
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		code       int // APIError code; 0: TransportError
		wait       time.Duration
	}{
		{"twilio error", 400, "", `{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"https://www.twilio.com/docs/errors/21610","status":400}`, 21610, 0},
		{"429 with body and seconds", 429, "7", `{"code":20429,"message":"Too Many Requests","status":429}`, 20429, 7 * time.Second},
		{"429 without body, HTTP date", 429, now.Add(3 * time.Second).Format(http1123), ``, 20429, 3 * time.Second},
		{"429 html", 429, "", `<html>slow down</html>`, 20429, 0},
		{"500 html", 500, "", `<html>oops</html>`, 0, 0},
		{"503 with retry-after", 503, "2", `upstream down`, 0, 2 * time.Second},
		{"2xx without sid", 200, "", `{"status":"queued"}`, 0, 0},
		{"error code on 2xx", 200, "", `{"code":21610}`, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeReply(tt.status, tt.retryAfter, []byte(tt.body), now)
			if tt.code != 0 {
				ae, ok := errors.AsType[*APIError](err)
				if !ok || ae.Code != tt.code || ae.HTTPStatus != tt.status || ae.RetryAfter != tt.wait {
					t.Fatalf("err = %#v, want APIError %d waiting %v", err, tt.code, tt.wait)
				}
				return
			}
			te, ok := errors.AsType[*TransportError](err)
			if !ok || te.HTTPStatus != tt.status || te.RetryAfter != tt.wait {
				t.Fatalf("err = %#v, want TransportError waiting %v", err, tt.wait)
			}
		})
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, Class{Action: dispatcher.ActionNone}},
		{"opt-out", &APIError{HTTPStatus: 400, Code: 21610}, Class{Action: dispatcher.ActionOptOut, Code: 21610}},
		{"rate", &APIError{HTTPStatus: 429, Code: 20429}, Class{Action: dispatcher.ActionRetry, Retryable: true, SlowSender: true, Code: 20429}},
		{"unknown code on 4xx", &APIError{HTTPStatus: 400, Code: 21999}, Class{Action: dispatcher.ActionFailJob, Code: 21999}},
		{"unknown code on 5xx", &APIError{HTTPStatus: 502, Code: 29999}, Class{Action: dispatcher.ActionTransport, Retryable: true, Code: 29999}},
		{"transport", &TransportError{Err: errors.New("reset")}, Class{Action: dispatcher.ActionTransport, Retryable: true}},
		{"other", errors.New("bug"), Class{Action: dispatcher.ActionFailJob}},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		code, attempt int
		want          time.Duration
	}{
		{21611, 1, time.Minute}, {30001, 3, time.Minute}, {30036, 1, time.Minute},
		{20429, 1, time.Second}, {20429, 2, 2 * time.Second}, {20429, 20, 5 * time.Minute},
		{CodeTransport, 0, time.Second}, {CodeTransport, 4, 8 * time.Second},
		{21610, 1, 0}, {30007, 1, 0}, {99999, 1, 0},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.code, tt.attempt); got != tt.want {
			t.Errorf("RetryAfter(%d, %d) = %v, want %v", tt.code, tt.attempt, got, tt.want)
		}
	}
}

func TestSenderConfigValidate(t *testing.T) {
	good := SenderConfig{AccountSID: "AC1", AuthToken: "t", From: "+14155550100", Type: LongCode}
	if err := good.Validate("s1"); err != nil {
		t.Fatal(err)
	}
	if d := good.withDefaults(); d.Rate != 1 || d.Type != LongCode {
		t.Fatalf("defaults: %+v", d)
	}
	if d := (SenderConfig{Type: ShortCode}).withDefaults(); d.Rate != 100 {
		t.Fatalf("short code default rate %v", d.Rate)
	}
	bad := map[string]SenderConfig{
		"no account":   {AuthToken: "t", From: "+1"},
		"no token":     {AccountSID: "AC1", From: "+1"},
		"no sender":    {AccountSID: "AC1", AuthToken: "t"},
		"both senders": {AccountSID: "AC1", AuthToken: "t", From: "+1", MessagingServiceSID: "MG1"},
		"bad type":     {AccountSID: "AC1", AuthToken: "t", From: "+1", Type: "pigeon"},
		"bad rate":     {AccountSID: "AC1", AuthToken: "t", From: "+1", Rate: -1},
		"long valid":   {AccountSID: "AC1", AuthToken: "t", From: "+1", ValidityPeriod: 11 * time.Hour},
		"ms validity":  {AccountSID: "AC1", AuthToken: "t", From: "+1", ValidityPeriod: 1500 * time.Millisecond},
		"sid with /":   {AccountSID: "AC1/../x", AuthToken: "t", From: "+1"},
	}
	for name, c := range bad {
		if err := c.Validate("s1"); err == nil || !strings.Contains(err.Error(), "s1") {
			t.Errorf("%s: Validate = %v, want an error naming the sender", name, err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	sc := SenderConfig{AccountSID: "AC1", AuthToken: "t", From: "+14155550100"}
	for name, cfg := range map[string]Config{
		"no public URL":         {Senders: map[string]SenderConfig{"s": sc}},
		"relative public URL":   {PublicURL: "/hooks"},
		"public URL with query": {PublicURL: "https://h.example/?a=1"},
		"bad base URL":          {PublicURL: "https://h.example", BaseURL: "api.twilio.com"},
		"bad sender":            {PublicURL: "https://h.example", Senders: map[string]SenderConfig{"s": {From: "+1"}}},
		"two tokens": {PublicURL: "https://h.example", Senders: map[string]SenderConfig{
			"a": sc, "b": {AccountSID: "AC1", AuthToken: "other", From: "+14155550101"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
