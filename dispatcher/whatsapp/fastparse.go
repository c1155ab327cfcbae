package whatsapp

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// decodeStatuses decodes the common shape of a status webhook — entries of changes
// whose values carry metadata and statuses, nothing else — without reflection. It
// answers ok = false for anything it does not take on (escapes in strings, nulls,
// numbers with fractions, duplicate or case-folded keys, inbound messages, contacts,
// user preferences, value errors, invalid JSON), and the caller decodes those bodies
// with encoding/json. When it answers ok, the result is what encoding/json decodes from
// the same bytes (FuzzDecodeStatuses holds it to that).
func decodeStatuses(b []byte) (n Notification, ok bool) {
	d := decoder{b: b}
	if !d.notification(&n) || n.Entry == nil {
		return Notification{}, false // no "entry" decodes to nil: leave it to encoding/json
	}
	d.ws()
	return n, d.i == len(d.b)
}

// Each method below reads one object: d.fields yields its keys, a known key's bit in
// seen refuses it twice (encoding/json would merge), and d.other skips unknown keys.

func (d *decoder) notification(n *Notification) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "object" && d.once(&seen, 0):
			ok = d.str(&n.Object)
		case key == "entry" && d.once(&seen, 1):
			ok = d.array(func() bool {
				n.Entry = append(n.Entry, Entry{})
				return d.entry(&n.Entry[len(n.Entry)-1])
			})
		default:
			ok = d.other(key, "object", "entry")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) entry(e *Entry) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "id" && d.once(&seen, 0):
			ok = d.str(&e.ID)
		case key == "changes" && d.once(&seen, 1):
			ok = d.array(func() bool {
				e.Changes = append(e.Changes, Change{})
				return d.change(&e.Changes[len(e.Changes)-1])
			})
		default:
			ok = d.other(key, "id", "changes")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) change(ch *Change) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "field" && d.once(&seen, 0):
			ok = d.str(&ch.Field)
		case key == "value" && d.once(&seen, 1):
			ok = d.value(&ch.Value)
		default:
			ok = d.other(key, "field", "value")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) value(v *Value) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "messaging_product" && d.once(&seen, 0):
			ok = d.str(&v.MessagingProduct)
		case key == "metadata" && d.once(&seen, 1):
			ok = d.metadata(&v.Metadata)
		case key == "statuses" && d.once(&seen, 2):
			ok = d.array(func() bool {
				v.Statuses = append(v.Statuses, Status{})
				return d.status(&v.Statuses[len(v.Statuses)-1])
			})
		default:
			// contacts, messages, user_preferences, errors: encoding/json.
			ok = d.other(key, "messaging_product", "metadata", "statuses", "contacts", "messages", "user_preferences", "errors")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) metadata(m *Metadata) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "display_phone_number" && d.once(&seen, 0):
			ok = d.str(&m.DisplayPhoneNumber)
		case key == "phone_number_id" && d.once(&seen, 1):
			ok = d.str(&m.PhoneNumberID)
		default:
			ok = d.other(key, "display_phone_number", "phone_number_id")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) status(s *Status) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "id" && d.once(&seen, 0):
			ok = d.str(&s.ID)
		case key == "status" && d.once(&seen, 1):
			ok = d.str(&s.Status)
		case key == "timestamp" && d.once(&seen, 2):
			ok = d.str(&s.Timestamp)
		case key == "recipient_id" && d.once(&seen, 3):
			ok = d.str(&s.RecipientID)
		case key == "biz_opaque_callback_data" && d.once(&seen, 4):
			ok = d.str(&s.BizOpaqueCallbackData)
		case key == "errors" && d.once(&seen, 5):
			ok = d.array(func() bool {
				s.Errors = append(s.Errors, WebhookError{})
				return d.webhookError(&s.Errors[len(s.Errors)-1])
			})
		case key == "pricing" && d.once(&seen, 6):
			s.Pricing = &Pricing{}
			ok = d.pricing(s.Pricing)
		case key == "conversation" && d.once(&seen, 7):
			s.Conversation = &Conversation{}
			ok = d.conversation(s.Conversation)
		default:
			ok = d.other(key, "id", "status", "timestamp", "recipient_id", "biz_opaque_callback_data", "errors", "pricing", "conversation")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) webhookError(e *WebhookError) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "code" && d.once(&seen, 0):
			ok = d.int(&e.Code)
		case key == "title" && d.once(&seen, 1):
			ok = d.str(&e.Title)
		case key == "message" && d.once(&seen, 2):
			ok = d.str(&e.Message)
		case key == "error_data" && d.once(&seen, 3):
			e.ErrorData = &ErrorData{}
			var seen2 uint32
			for key, ok := range d.fields() {
				if !ok {
					return false
				}
				switch {
				case key == "messaging_product" && d.once(&seen2, 0):
					ok = d.str(&e.ErrorData.MessagingProduct)
				case key == "details" && d.once(&seen2, 1):
					ok = d.str(&e.ErrorData.Details)
				default:
					ok = d.other(key, "messaging_product", "details")
				}
				if !ok {
					return false
				}
			}
			ok = d.err == nil
		default:
			ok = d.other(key, "code", "title", "message", "error_data")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) pricing(p *Pricing) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "billable" && d.once(&seen, 0):
			ok = d.bool(&p.Billable)
		case key == "pricing_model" && d.once(&seen, 1):
			ok = d.str(&p.PricingModel)
		case key == "type" && d.once(&seen, 2):
			ok = d.str(&p.Type)
		case key == "category" && d.once(&seen, 3):
			ok = d.str(&p.Category)
		default:
			ok = d.other(key, "billable", "pricing_model", "type", "category")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

func (d *decoder) conversation(c *Conversation) bool {
	var seen uint32
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		switch {
		case key == "id" && d.once(&seen, 0):
			ok = d.str(&c.ID)
		case key == "origin" && d.once(&seen, 1):
			var seen2 uint32
			for key, ok := range d.fields() {
				if !ok {
					return false
				}
				if key == "type" && d.once(&seen2, 0) {
					ok = d.str(&c.Origin.Type)
				} else {
					ok = d.other(key, "type")
				}
				if !ok {
					return false
				}
			}
			ok = d.err == nil
		default:
			ok = d.other(key, "id", "origin")
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

// decoder reads JSON from b at i. Every method answers false where encoding/json might
// decode differently, so that the caller falls back to it.
type decoder struct {
	b   []byte
	i   int
	err error // set by fields when the object is malformed
}

var errDecline = errors.New("declined")

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c.
func (d *decoder) next(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// once marks known key number bit seen; false if it was seen already.
func (d *decoder) once(seen *uint32, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		return false
	}
	*seen |= 1 << bit
	return true
}

// fields reads an object's keys and the colons after them, yielding each key for the
// loop body to read its value; it yields ok = false (and sets d.err) when the object is
// malformed. The body returning from the loop stops it.
func (d *decoder) fields() func(yield func(string, bool) bool) {
	return func(yield func(string, bool) bool) {
		d.err = nil
		if !d.next('{') {
			d.err = errDecline
			yield("", false)
			return
		}
		if d.next('}') {
			return
		}
		for {
			var key string
			if !d.str(&key) || !d.next(':') {
				d.err = errDecline
				yield("", false)
				return
			}
			if !yield(key, true) {
				return
			}
			if d.next(',') {
				continue
			}
			if !d.next('}') {
				d.err = errDecline
				yield("", false)
			}
			return
		}
	}
}

// array reads a non-empty array, calling elem for each element. An empty array is left
// to encoding/json (it makes an empty, non-nil slice).
func (d *decoder) array(elem func() bool) bool {
	if !d.next('[') || d.next(']') {
		return false
	}
	for {
		if !elem() {
			return false
		}
		if d.next(',') {
			continue
		}
		return d.next(']')
	}
}

// other handles a key that is not decoded here: its value is skipped if it is no
// field of the struct at all (known lists the struct's keys, and those left to
// encoding/json), else the body goes to encoding/json — which also matches keys
// case-insensitively.
func (d *decoder) other(key string, known ...string) bool {
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return false
		}
	}
	return d.skip(0)
}

// str reads a string without escapes (those go to encoding/json) of valid UTF-8 into v.
func (d *decoder) str(v *string) bool {
	if !d.next('"') {
		return false
	}
	start := d.i
	ascii := true
	for ; d.i < len(d.b); d.i++ {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return false
			}
			if v != nil {
				*v = intern(s)
			}
			return true
		case c == '\\' || c < 0x20:
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return false
}

// intern returns the strings every status repeats without allocating.
func intern(b []byte) string {
	switch string(b) {
	case "delivered":
		return "delivered"
	case "read":
		return "read"
	case "sent":
		return "sent"
	case "failed":
		return "failed"
	case "whatsapp":
		return "whatsapp"
	case "messages":
		return "messages"
	}
	return string(b)
}

// int reads an integer that fits in 32 bits (no fraction, no exponent) into v.
func (d *decoder) int(v *int) bool {
	d.ws()
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	start := d.i
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int(d.b[d.i]-'0')
		d.i++
		if d.i-start > 9 {
			return false
		}
	}
	if d.i == start || (d.b[start] == '0' && d.i-start > 1) || d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return false
	}
	if neg {
		n = -n
	}
	*v = n
	return true
}

func (d *decoder) bool(v *bool) bool {
	d.ws()
	switch {
	case d.lit("true"):
		*v = true
	case d.lit("false"):
		*v = false
	default:
		return false
	}
	return true
}

func (d *decoder) lit(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// skip passes over one value of any kind that is valid JSON; anything doubtful
// (escapes included) answers false.
func (d *decoder) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	d.ws()
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		return d.str(nil)
	case c == '{':
		for _, ok := range d.fields() {
			if !ok || !d.skip(depth+1) {
				return false
			}
		}
		return d.err == nil
	case c == '[':
		at := d.i
		d.i++
		if d.next(']') {
			return true
		}
		d.i = at // array() consumes '[' itself
		return d.array(func() bool { return d.skip(depth + 1) })
	case c == 't':
		return d.lit("true")
	case c == 'f':
		return d.lit("false")
	case c == 'n':
		return d.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return false
}

// number passes over a JSON number (RFC 8259 grammar).
func (d *decoder) number() bool {
	if d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		s := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
		}
		return d.i - s
	}
	start := d.i
	n := digits()
	if n == 0 || (n > 1 && d.b[start] == '0') {
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
