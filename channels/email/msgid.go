package email

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"

	"github.com/herald-dev/herald/dispatcher"
)

// Message-IDs name the (campaign, contact) a message was sent for, so that a bounce or a
// complaint quoting only the original Message-ID still finds its send:
//
//	<herald.{campaign}.{contact}.{random}@{domain}>
//	<herald.{campaign}.{contact}.{variant}.{random}@{domain}>
//
// campaign and variant keep ASCII letters, digits, '-' and '_' and write any other byte
// as "=XX" (upper-case hex), so the local part stays an RFC 5322 dot-atom whatever the
// ids hold; contact is decimal; random is 16 base32 characters (80 bits).

const msgIDPrefix = "herald."

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewMessageID returns a Message-ID (without angle brackets) for a message of campaign to
// contact (variant may be empty), at domain.
func NewMessageID(campaign string, contact uint32, variant, domain string) string {
	var rnd [10]byte
	_, _ = rand.Read(rnd[:])
	var b strings.Builder
	b.Grow(len(msgIDPrefix) + len(campaign) + len(variant) + len(domain) + 32)
	b.WriteString(msgIDPrefix)
	escapeAtom(&b, campaign)
	b.WriteByte('.')
	b.WriteString(strconv.FormatUint(uint64(contact), 10))
	if variant != "" {
		b.WriteByte('.')
		escapeAtom(&b, variant)
	}
	b.WriteByte('.')
	b.WriteString(idEncoding.EncodeToString(rnd[:]))
	b.WriteByte('@')
	b.WriteString(domain)
	return b.String()
}

// randomMessageID is a Message-ID naming no campaign.
func randomMessageID(domain string) string {
	var rnd [15]byte
	_, _ = rand.Read(rnd[:])
	return idEncoding.EncodeToString(rnd[:]) + "@" + domain
}

// ParseMessageID recovers the (campaign, contact) and variant from a Message-ID made by
// NewMessageID, with or without its angle brackets; ok is false for any other id.
func ParseMessageID(id string) (key dispatcher.Key, variant string, ok bool) {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if len(id) > 1024 {
		return dispatcher.Key{}, "", false
	}
	at := strings.LastIndexByte(id, '@')
	if at < 0 || !strings.HasPrefix(id, msgIDPrefix) {
		return dispatcher.Key{}, "", false
	}
	parts := strings.Split(id[len(msgIDPrefix):at], ".")
	if len(parts) != 3 && len(parts) != 4 {
		return dispatcher.Key{}, "", false
	}
	campaign, cok := unescapeAtom(parts[0])
	num := parts[1]
	if !cok || campaign == "" || num == "" || (len(num) > 1 && num[0] == '0') {
		return dispatcher.Key{}, "", false
	}
	contact, err := strconv.ParseUint(num, 10, 32)
	if err != nil || num[0] == '+' {
		return dispatcher.Key{}, "", false
	}
	if len(parts) == 4 {
		if variant, ok = unescapeAtom(parts[2]); !ok || variant == "" {
			return dispatcher.Key{}, "", false
		}
	}
	if r := parts[len(parts)-1]; len(r) != 16 {
		return dispatcher.Key{}, "", false
	}
	return dispatcher.Key{Campaign: campaign, Contact: uint32(contact)}, variant, true
}

// parseCallback reads the X-Herald-Callback header's value ("campaign:contact[:v.variant]",
// the dispatcher's callback data).
func parseCallback(s string) (key dispatcher.Key, variant string, ok bool) {
	campaign, contact, variant, ok := dispatcher.ParseCallbackVariant(strings.TrimSpace(s))
	return dispatcher.Key{Campaign: campaign, Contact: contact}, variant, ok
}

const hexDigits = "0123456789ABCDEF"

func atomSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func escapeAtom(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if atomSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}

func unescapeAtom(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		for i := 0; i < len(s); i++ {
			if !atomSafe(s[i]) {
				return "", false
			}
		}
		return s, true
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case atomSafe(c):
			out = append(out, c)
		case c == '=' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0:
			v := byte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			if atomSafe(v) {
				return "", false // not canonical: one id, one spelling
			}
			out = append(out, v)
			i += 2
		default:
			return "", false
		}
	}
	return string(out), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
