package sms

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
)

// ChannelName is the channel name SMS reports and inbound messages carry.
const ChannelName = "sms"

// SignatureHeader is the header Twilio signs webhook requests with.
const SignatureHeader = "X-Twilio-Signature"

// Signature errors; VerifySignature wraps them with detail.
var (
	ErrNoAuthToken        = errors.New("no auth token configured")
	ErrSignatureMissing   = errors.New("missing " + SignatureHeader + " header")
	ErrSignatureMalformed = errors.New("malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New(SignatureHeader + " does not match the request")
)

// Sign returns the X-Twilio-Signature of a request to fullURL with form parameters form:
// base64 of HMAC-SHA1 under authToken over fullURL followed by each parameter's name and
// value, sorted by name (a name with several values: each pair, values sorted).
func Sign(authToken, fullURL string, form url.Values) string {
	var sum [sha1.Size]byte
	return base64.StdEncoding.EncodeToString(mac(authToken, fullURL, form, sum[:0]))
}

func mac(authToken, fullURL string, form url.Values, dst []byte) []byte {
	m := hmac.New(sha1.New, []byte(authToken))
	_, _ = io.WriteString(m, fullURL)
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := form[k]
		if len(vs) > 1 {
			vs = slices.Clone(vs)
			slices.Sort(vs)
		}
		for _, v := range vs {
			_, _ = io.WriteString(m, k)
			_, _ = io.WriteString(m, v)
		}
	}
	return m.Sum(dst)
}

// VerifySignature checks header (the X-Twilio-Signature value) against a form POST in
// constant time. fullURL is the URL exactly as Twilio requested it — scheme, host, path
// and query (?cb=…) — which behind a proxy is Herald's public URL, not the one the
// server sees (FullURL builds it). As Twilio's own libraries do, the URL is also tried
// with the scheme's default port added or removed. Verify before acting on the form: a
// forged or altered request must change nothing.
func VerifySignature(authToken, fullURL string, form url.Values, header string) error {
	if authToken == "" {
		return fmt.Errorf("verify webhook signature: %w", ErrNoAuthToken)
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return fmt.Errorf("verify webhook signature: %w", ErrSignatureMissing)
	}
	var got [sha1.Size + 2]byte // room to notice a longer value
	if base64.StdEncoding.DecodedLen(len(header)) > len(got) {
		return fmt.Errorf("verify webhook signature: %w: want 28 base64 characters, got %d", ErrSignatureMalformed, len(header))
	}
	n, err := base64.StdEncoding.Decode(got[:], []byte(header))
	if err != nil || n != sha1.Size {
		return fmt.Errorf("verify webhook signature: %w: want the base64 of a 20-byte HMAC-SHA1", ErrSignatureMalformed)
	}
	var want [sha1.Size]byte
	for _, u := range urlVariants(fullURL) {
		if hmac.Equal(got[:n], mac(authToken, u, form, want[:0])) {
			return nil
		}
	}
	return fmt.Errorf("verify webhook signature: %w", ErrSignatureMismatch)
}

// urlVariants returns fullURL, then fullURL with the scheme's default port removed
// (when present) or added (when absent).
func urlVariants(fullURL string) []string {
	out := []string{fullURL}
	u, err := url.Parse(fullURL)
	if err != nil || u.Host == "" {
		return out
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if def == "" {
		return out
	}
	switch u.Port() {
	case def:
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") { // IPv6
			u.Host = "[" + u.Host + "]"
		}
	case "":
		u.Host += ":" + def
	default:
		return out
	}
	return append(out, u.String())
}

// FullURL is the URL Twilio requested: Herald's public base URL (as in
// Config.PublicURL) joined with the request URI the server received (r.URL.RequestURI(),
// path and query). Verify signatures against it, never against the server's own view of
// the host when it sits behind a proxy.
func FullURL(publicURL, requestURI string) string {
	return strings.TrimRight(publicURL, "/") + requestURI
}

// MaxWebhookBody bounds a webhook request body: an SMS callback or inbound message is a
// few hundred bytes to a few kilobytes (a 1600-character body escapes to ~14 KB).
const MaxWebhookBody = 64 << 10

// ErrBadWebhook is wrapped by every ReadForm, DecodeStatus and DecodeInbound error.
var ErrBadWebhook = errors.New("bad SMS webhook")

// ReadForm reads and parses a webhook body (application/x-www-form-urlencoded) of at
// most MaxWebhookBody bytes. Any malformed pair rejects the whole body.
func ReadForm(r io.Reader) (url.Values, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", ErrBadWebhook, err)
	}
	if len(b) > MaxWebhookBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadWebhook, MaxWebhookBody)
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w: form: %w", ErrBadWebhook, err)
	}
	return form, nil
}

// Message status values (the MessageStatus of a status callback).
const (
	StatusAccepted    = "accepted"
	StatusScheduled   = "scheduled"
	StatusQueued      = "queued"
	StatusSending     = "sending"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusRead        = "read"
	StatusCanceled    = "canceled"
	StatusReceiving   = "receiving"
	StatusReceived    = "received"
	StatusPartially   = "partially_delivered"
)

// DecodeStatus decodes a status callback (verify its signature first). cb is the value
// of the callback URL's cb query parameter (r.URL.Query().Get("cb")): the message's
// callback data, "campaign:contact[:v.variant]".
//
// MessageStatus queued, sending and sent report events.Sent (Twilio accepted it; expect
// one Report per status, deduplicated downstream by message and kind), delivered
// Delivered, read Read, undelivered and failed Failed with Code = ErrorCode and Action
// from the Codes table. ok is false, with no error, for statuses Herald records nothing
// for (accepted, scheduled, canceled, receiving, received, partially_delivered). Time is
// RawDlrDoneDate when Twilio sends one (delivered and undelivered SMS), else zero: stamp
// the receipt time. Unknown statuses, a missing MessageSid or MessageStatus, bad
// callback data and non-numeric error codes are errors.
func DecodeStatus(form url.Values, cb string) (rep dispatcher.Report, ok bool, err error) {
	sid := first(form, "MessageSid", "SmsSid")
	status := first(form, "MessageStatus", "SmsStatus")
	switch {
	case sid == "":
		return rep, false, fmt.Errorf("%w: status callback without MessageSid", ErrBadWebhook)
	case status == "":
		return rep, false, fmt.Errorf("%w: status callback for %s without MessageStatus", ErrBadWebhook, sid)
	}
	switch status {
	case StatusQueued, StatusSending, StatusSent:
		rep.Kind = events.Sent
	case StatusDelivered:
		rep.Kind = events.Delivered
	case StatusRead:
		rep.Kind = events.Read
	case StatusUndelivered, StatusFailed:
		rep.Kind = events.Failed
	case StatusAccepted, StatusScheduled, StatusCanceled, StatusReceiving, StatusReceived, StatusPartially:
		return dispatcher.Report{}, false, nil
	default:
		return rep, false, fmt.Errorf("%w: status callback for %s: unknown MessageStatus %q", ErrBadWebhook, sid, status)
	}
	campaign, contact, variant, valid := dispatcher.ParseCallbackVariant(cb)
	if !valid {
		return dispatcher.Report{}, false, fmt.Errorf("%w: status callback for %s: cb %q is not campaign:contact callback data", ErrBadWebhook, sid, cb)
	}
	rep.Campaign, rep.Contact, rep.Variant = campaign, contact, variant
	rep.Channel, rep.MessageID = ChannelName, sid
	rep.SenderRef = first(form, "From", "MessagingServiceSid")
	if ec := form.Get("ErrorCode"); ec != "" {
		code, err := parseCode(ec)
		if err != nil {
			return dispatcher.Report{}, false, fmt.Errorf("%w: status callback for %s: ErrorCode %q: %w", ErrBadWebhook, sid, ec, err)
		}
		if rep.Kind == events.Failed {
			rep.Code = code
		}
	}
	if rep.Kind == events.Failed {
		cl := ClassifyCode(rep.Code)
		rep.Action = cl.Action
		if cl.SlowSender {
			rep.Signal = throttle.SignalSlowSender
		}
	}
	if d := form.Get("RawDlrDoneDate"); d != "" {
		if t, err := parseDlrDate(d); err == nil {
			rep.Time = t
		}
	}
	return rep, true, nil
}

// parseCode reads a decimal error code of at most 9 digits.
func parseCode(s string) (int, error) {
	if len(s) > 9 {
		return 0, errors.New("want a decimal code of at most 9 digits")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("want a decimal code")
		}
	}
	return strconv.Atoi(s)
}

// parseDlrDate reads RawDlrDoneDate, the carrier's YYMMDDhhmm (UTC).
func parseDlrDate(s string) (time.Time, error) {
	if len(s) != 10 {
		return time.Time{}, errors.New("want YYMMDDhhmm")
	}
	return time.Parse("0601021504", s)
}

func first(form url.Values, keys ...string) string {
	for _, k := range keys {
		if v := form.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// MaxInboundChars bounds the Body of an inbound message: Twilio reassembles a
// concatenated SMS, which is at most templates.MaxSMSChars characters.
const MaxInboundChars = templates.MaxSMSChars

// DecodeInbound decodes an incoming-message webhook (verify its signature first): From
// (the contact), To (our number: SenderRef), Body and MessageSid. Time is zero (Twilio
// sends none): stamp the receipt time. A missing MessageSid, From or To, a body that is
// not UTF-8 or longer than MaxInboundChars characters are errors; an empty Body (media
// only) is not.
func DecodeInbound(form url.Values) (dispatcher.Inbound, error) {
	in := dispatcher.Inbound{
		Channel:   ChannelName,
		MessageID: first(form, "MessageSid", "SmsMessageSid", "SmsSid"),
		From:      form.Get("From"),
		SenderRef: form.Get("To"),
		Text:      form.Get("Body"),
	}
	switch {
	case in.MessageID == "":
		return dispatcher.Inbound{}, fmt.Errorf("%w: inbound message without MessageSid", ErrBadWebhook)
	case in.From == "":
		return dispatcher.Inbound{}, fmt.Errorf("%w: inbound message %s without From", ErrBadWebhook, in.MessageID)
	case in.SenderRef == "":
		return dispatcher.Inbound{}, fmt.Errorf("%w: inbound message %s without To", ErrBadWebhook, in.MessageID)
	case !utf8.ValidString(in.Text):
		return dispatcher.Inbound{}, fmt.Errorf("%w: inbound message %s: Body is not UTF-8", ErrBadWebhook, in.MessageID)
	}
	if n := utf8.RuneCountInString(in.Text); n > MaxInboundChars {
		return dispatcher.Inbound{}, fmt.Errorf("%w: inbound message %s: Body has %d characters, more than %d", ErrBadWebhook, in.MessageID, n, MaxInboundChars)
	}
	return in, nil
}

// Carrier keywords. A message that is exactly one of them (any case, surrounding
// whitespace ignored) opts the sender out of, or back into, messages from the number it
// was sent to; Twilio enforces them itself (21610 afterwards).
var (
	OptOutKeywords = []string{"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"}
	OptInKeywords  = []string{"START", "UNSTOP"}
)

// Keyword reports whether text is an opt-out or opt-in carrier keyword: the whole
// message, case- and surrounding-whitespace-insensitive ("stop", " Stop\n"), never a word
// within a sentence ("stop by the store"). YES, which Twilio also takes as an opt-in,
// is left out on purpose: it is a common answer to anything.
func Keyword(text string) (optOut, optIn bool) {
	t := strings.TrimSpace(text)
	if len(t) > len("UNSUBSCRIBE") {
		return false, false
	}
	for _, k := range OptOutKeywords {
		if asciiEqualFold(t, k) {
			return true, false
		}
	}
	for _, k := range OptInKeywords {
		if asciiEqualFold(t, k) {
			return false, true
		}
	}
	return false, false
}

// asciiEqualFold compares s with the upper-case ASCII keyword k ignoring ASCII case
// only: carriers do not take "ſtop" (long s) for STOP, as Unicode folding would.
func asciiEqualFold(s, k string) bool {
	if len(s) != len(k) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != k[i] {
			return false
		}
	}
	return true
}
