package graph

import (
	"errors"
	"slices"
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

// object reads an object whose keys are keys: field(k) reads the value of keys[k]. A
// key seen twice is declined (encoding/json would merge the two), as is one that matches
// a key only case-insensitively (encoding/json would take it); other keys are skipped.
func (d *decoder) object(keys []string, field func(k int) bool) bool {
	var seen uint64
	for key, ok := range d.fields() {
		if !ok {
			return false
		}
		if k := slices.Index(keys, key); k >= 0 && seen&(1<<k) == 0 {
			seen |= 1 << k
			ok = field(k)
		} else {
			ok = d.other(key, keys)
		}
		if !ok {
			return false
		}
	}
	return d.err == nil
}

// The objects of a status batch and their keys, in the order of their fields.
var (
	notificationKeys = []string{"object", "entry"}
	entryKeys        = []string{"id", "changes"}
	changeKeys       = []string{"field", "value"}
	// Values' contacts, messages, user_preferences and errors go to encoding/json.
	valueKeys        = []string{"messaging_product", "metadata", "statuses", "contacts", "messages", "user_preferences", "errors"}
	metadataKeys     = []string{"display_phone_number", "phone_number_id"}
	statusKeys       = []string{"id", "status", "timestamp", "recipient_id", "biz_opaque_callback_data", "errors", "pricing", "conversation"}
	webhookErrorKeys = []string{"code", "title", "message", "error_data"}
	errorDataKeys    = []string{"messaging_product", "details"}
	pricingKeys      = []string{"billable", "pricing_model", "type", "category"}
	conversationKeys = []string{"id", "origin"}
	originKeys       = []string{"type"}
)

func (d *decoder) notification(n *Notification) bool {
	return d.object(notificationKeys, func(k int) bool {
		if k == 0 {
			return d.str(&n.Object)
		}
		return d.array(func() bool {
			n.Entry = append(n.Entry, Entry{})
			return d.entry(&n.Entry[len(n.Entry)-1])
		})
	})
}

func (d *decoder) entry(e *Entry) bool {
	return d.object(entryKeys, func(k int) bool {
		if k == 0 {
			return d.str(&e.ID)
		}
		return d.array(func() bool {
			e.Changes = append(e.Changes, Change{})
			return d.change(&e.Changes[len(e.Changes)-1])
		})
	})
}

func (d *decoder) change(ch *Change) bool {
	return d.object(changeKeys, func(k int) bool {
		if k == 0 {
			return d.str(&ch.Field)
		}
		return d.value(&ch.Value)
	})
}

func (d *decoder) value(v *Value) bool {
	return d.object(valueKeys, func(k int) bool {
		switch k {
		case 0:
			return d.str(&v.MessagingProduct)
		case 1:
			return d.object(metadataKeys, func(k int) bool {
				if k == 0 {
					return d.str(&v.Metadata.DisplayPhoneNumber)
				}
				return d.str(&v.Metadata.PhoneNumberID)
			})
		case 2:
			return d.array(func() bool {
				v.Statuses = append(v.Statuses, Status{})
				return d.status(&v.Statuses[len(v.Statuses)-1])
			})
		}
		return false
	})
}

func (d *decoder) status(s *Status) bool {
	return d.object(statusKeys, func(k int) bool {
		switch k {
		case 0:
			return d.str(&s.ID)
		case 1:
			return d.str(&s.Status)
		case 2:
			return d.str(&s.Timestamp)
		case 3:
			return d.str(&s.RecipientID)
		case 4:
			return d.str(&s.BizOpaqueCallbackData)
		case 5:
			return d.array(func() bool {
				s.Errors = append(s.Errors, WebhookError{})
				return d.webhookError(&s.Errors[len(s.Errors)-1])
			})
		case 6:
			s.Pricing = &Pricing{}
			return d.pricing(s.Pricing)
		default:
			c := &Conversation{}
			s.Conversation = c
			return d.object(conversationKeys, func(k int) bool {
				if k == 0 {
					return d.str(&c.ID)
				}
				return d.object(originKeys, func(int) bool { return d.str(&c.Origin.Type) })
			})
		}
	})
}

func (d *decoder) webhookError(e *WebhookError) bool {
	return d.object(webhookErrorKeys, func(k int) bool {
		switch k {
		case 0:
			return d.int(&e.Code)
		case 1:
			return d.str(&e.Title)
		case 2:
			return d.str(&e.Message)
		}
		ed := &ErrorData{}
		e.ErrorData = ed
		return d.object(errorDataKeys, func(k int) bool {
			if k == 0 {
				return d.str(&ed.MessagingProduct)
			}
			return d.str(&ed.Details)
		})
	})
}

func (d *decoder) pricing(p *Pricing) bool {
	return d.object(pricingKeys, func(k int) bool {
		switch k {
		case 0:
			return d.bool(&p.Billable)
		case 1:
			return d.str(&p.PricingModel)
		case 2:
			return d.str(&p.Type)
		}
		return d.str(&p.Category)
	})
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

// other handles a key that is not decoded here: its value is skipped unless the key
// matches one of keys case-insensitively (encoding/json would take it: decline).
func (d *decoder) other(key string, keys []string) bool {
	for _, k := range keys {
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
