package dispatcher

import (
	"strconv"
	"strings"
)

// The callback data of a send: what a channel hands its provider with each message and
// gets back with every status about it, so a report leads to its (campaign, contact)
// and the variant it was rendered with. Every channel uses this one format.

// maxCallbackData bounds what ParseCallbackVariant accepts: the most any provider carries
// back (WhatsApp's biz_opaque_callback_data holds 512 bytes).
const maxCallbackData = 512

// CallbackData names a (campaign, contact) as a provider echoes it back on statuses,
// "campaign:contact" (e.g. "42:9"): Message.CallbackData, WhatsApp's
// biz_opaque_callback_data, an SMS status callback's cb parameter, an email's
// X-Herald-Callback header.
func CallbackData(campaign string, contact uint32) string {
	return campaign + ":" + strconv.FormatUint(uint64(contact), 10)
}

// CallbackDataVariant adds the template variant ("42:9:v.b"), so that every status
// report carries the variant the message was rendered with.
func CallbackDataVariant(campaign string, contact uint32, variant string) string {
	if variant == "" {
		return CallbackData(campaign, contact)
	}
	return CallbackData(campaign, contact) + ":v." + variant
}

// ParseCallbackData is the inverse of CallbackData (a variant suffix is accepted and
// dropped). The contact follows the last ':' and must be a canonical decimal uint32;
// the campaign must not be empty.
func ParseCallbackData(s string) (campaign string, contact uint32, ok bool) {
	campaign, contact, _, ok = ParseCallbackVariant(s)
	return campaign, contact, ok
}

// ParseCallbackVariant is the inverse of CallbackDataVariant.
func ParseCallbackVariant(s string) (campaign string, contact uint32, variant string, ok bool) {
	if len(s) > maxCallbackData {
		return "", 0, "", false
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 && strings.HasPrefix(s[i+1:], "v.") {
		variant, s = s[i+3:], s[:i]
		if variant == "" {
			return "", 0, "", false
		}
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return "", 0, "", false
	}
	num := s[i+1:]
	if len(num) > 1 && num[0] == '0' {
		return "", 0, "", false
	}
	for j := 0; j < len(num); j++ {
		if num[j] < '0' || num[j] > '9' {
			return "", 0, "", false
		}
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return "", 0, "", false
	}
	return s[:i], uint32(v), variant, true
}
