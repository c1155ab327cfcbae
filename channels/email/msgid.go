package email

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
	"sync"

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
// ids hold; contact is decimal; random is 24 base32 characters: a 40-bit nonce and an
// 80-bit HMAC-SHA256 (under the MessageKey) of the campaign, contact, variant and nonce.
// A report (bounce, complaint) acts only on a Message-ID its key verifies
// (VerifyMessageID): anyone can mail a report, and one naming a guessed campaign and
// contact must not opt that contact out or suppress them.

// MessageKey signs and verifies the Message-IDs of campaign messages. Every process that
// sends email and every one that reads reports must share it (internal/app keeps one
// in Redis). An empty key means this process's own random key: enough when the sender
// and the report reader are one process, as in tests.
type MessageKey []byte

var processKey = sync.OnceValue(func() MessageKey {
	k := make(MessageKey, 32)
	_, _ = rand.Read(k)
	return k
})

func (k MessageKey) orProcess() MessageKey {
	if len(k) == 0 {
		return processKey()
	}
	return k
}

const (
	nonceBytes = 5
	macBytes   = 10
	// signedLen is the length of a signed id's random part; unsignedLen that of the ids
	// made before they were signed (parsed, never trusted).
	signedLen   = (nonceBytes + macBytes) * 8 / 5
	unsignedLen = 16
)

const msgIDPrefix = "herald."

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewMessageID returns a Message-ID (without angle brackets) for a message of campaign to
// contact (variant may be empty), at domain, signed under key.
func NewMessageID(campaign string, contact uint32, variant, domain string, key MessageKey) string {
	var nonce [nonceBytes]byte
	_, _ = rand.Read(nonce[:])
	return messageID(campaign, contact, variant, domain, nonce, key)
}

// idMAC is the MAC of a Message-ID's (campaign, contact, variant) and nonce.
func idMAC(key MessageKey, campaign string, contact uint32, variant string, nonce []byte) []byte {
	m := hmac.New(sha256.New, key.orProcess())
	m.Write([]byte(campaign))
	m.Write([]byte{0})
	m.Write(strconv.AppendUint(nil, uint64(contact), 10))
	m.Write([]byte{0})
	m.Write([]byte(variant))
	m.Write([]byte{0})
	m.Write(nonce)
	return m.Sum(nil)[:macBytes]
}

func messageID(campaign string, contact uint32, variant, domain string, nonce [nonceBytes]byte, key MessageKey) string {
	rnd := append(nonce[:], idMAC(key, campaign, contact, variant, nonce[:])...)
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
	b.WriteString(idEncoding.EncodeToString(rnd))
	b.WriteByte('@')
	b.WriteString(domain)
	return b.String()
}

// ResignMessageIDs returns raw with every Herald Message-ID in it that parses (signed or
// made before ids were signed) replaced by one that key verifies and names the same
// campaign, contact and variant, for tests and tools that replay archived bounces and
// complaints into a Herald whose key they hold. The nonce comes from the old id, so the
// same input gives the same output.
func ResignMessageIDs(raw []byte, key MessageKey) []byte {
	return heraldMsgID.ReplaceAllFunc(raw, func(m []byte) []byte {
		id := strings.Trim(string(m), "<>")
		k, variant, random, ok := parseMessageID(id)
		if !ok {
			return m
		}
		var nonce [nonceBytes]byte
		sum := sha256.Sum256([]byte(random))
		copy(nonce[:], sum[:])
		signed := messageID(k.Campaign, k.Contact, variant, id[strings.LastIndexByte(id, '@')+1:], nonce, key)
		if m[0] == '<' {
			return []byte("<" + signed + ">")
		}
		return []byte(signed)
	})
}

// randomMessageID is a Message-ID naming no campaign.
func randomMessageID(domain string) string {
	var rnd [15]byte
	_, _ = rand.Read(rnd[:])
	return idEncoding.EncodeToString(rnd[:]) + "@" + domain
}

// VerifyMessageID recovers the (campaign, contact) and variant from a Message-ID made by
// NewMessageID under key, with or without its angle brackets; ok is false for any other
// id, and for one whose signature key does not verify (forged, altered, or made before
// Message-IDs were signed).
func VerifyMessageID(id string, key MessageKey) (dispatcher.Key, string, bool) {
	k, variant, random, ok := parseMessageID(id)
	if !ok || len(random) != signedLen {
		return dispatcher.Key{}, "", false
	}
	raw, err := idEncoding.DecodeString(random)
	if err != nil || len(raw) != nonceBytes+macBytes {
		return dispatcher.Key{}, "", false
	}
	if !hmac.Equal(raw[nonceBytes:], idMAC(key, k.Campaign, k.Contact, variant, raw[:nonceBytes])) {
		return dispatcher.Key{}, "", false
	}
	return k, variant, true
}

// ParseMessageID recovers the (campaign, contact) and variant from a Message-ID shaped
// like NewMessageID's, with or without its angle brackets, without checking its
// signature: what it names is a claim, to be trusted only through VerifyMessageID.
func ParseMessageID(id string) (key dispatcher.Key, variant string, ok bool) {
	key, variant, _, ok = parseMessageID(id)
	return key, variant, ok
}

func parseMessageID(id string) (key dispatcher.Key, variant, random string, ok bool) {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if len(id) > 1024 {
		return dispatcher.Key{}, "", "", false
	}
	at := strings.LastIndexByte(id, '@')
	if at < 0 || !strings.HasPrefix(id, msgIDPrefix) {
		return dispatcher.Key{}, "", "", false
	}
	parts := strings.Split(id[len(msgIDPrefix):at], ".")
	if len(parts) != 3 && len(parts) != 4 {
		return dispatcher.Key{}, "", "", false
	}
	campaign, cok := unescapeAtom(parts[0])
	num := parts[1]
	if !cok || campaign == "" || num == "" || (len(num) > 1 && num[0] == '0') {
		return dispatcher.Key{}, "", "", false
	}
	contact, err := strconv.ParseUint(num, 10, 32)
	if err != nil || num[0] == '+' {
		return dispatcher.Key{}, "", "", false
	}
	if len(parts) == 4 {
		if variant, ok = unescapeAtom(parts[2]); !ok || variant == "" {
			return dispatcher.Key{}, "", "", false
		}
	}
	random = parts[len(parts)-1]
	if len(random) != signedLen && len(random) != unsignedLen {
		return dispatcher.Key{}, "", "", false
	}
	return dispatcher.Key{Campaign: campaign, Contact: uint32(contact)}, variant, random, true
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
