// Package links owns click tracking: the signed token of a tracked link and the
// rewriting of the URLs in a rendered message into https://<base>/c/<token>. A token
// carries everything the redirector needs (campaign, contact, the link's index in the
// message and the target URL) under an HMAC-SHA256, so a click is verified and
// redirected without a database lookup. It does not serve the redirect
// (internal/server) nor decide when links are tracked (the campaign does).
package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ErrBadToken is returned for a token that is malformed, forged or signed with another key.
var ErrBadToken = errors.New("bad click token")

const (
	version = 1
	macLen  = 16 // bytes of HMAC-SHA256 kept: 128 bits
	// MaxURL bounds the target URL a token carries.
	MaxURL = 2048
	// MaxCampaign bounds the campaign id a token carries.
	MaxCampaign = 128
	// MaxLinks bounds the links rewritten in one message.
	MaxLinks = 32
	// MinKeyLen is the shortest signing key accepted.
	MinKeyLen = 16
)

// Click is what a token says: contact Contact of campaign Campaign clicked link Index
// (0-based, in the order the links appear in the message) that goes to URL.
type Click struct {
	Campaign string
	Contact  uint32
	Index    int
	URL      string
}

// Codec signs and verifies tokens with one key. Safe for concurrent use.
type Codec struct {
	key []byte
}

// NewCodec returns a codec signing with key (at least MinKeyLen bytes; keep it secret
// and the same on every serve and worker process).
func NewCodec(key []byte) (*Codec, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("click tracking key is %d bytes; want at least %d", len(key), MinKeyLen)
	}
	return &Codec{key: append([]byte(nil), key...)}, nil
}

func (c *Codec) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}

// Token encodes and signs a click: base64url(version, contact, index, campaign, url, mac).
func (c *Codec) Token(cl Click) (string, error) {
	switch {
	case len(cl.Campaign) > MaxCampaign:
		return "", fmt.Errorf("click token: campaign id is %d bytes; the limit is %d", len(cl.Campaign), MaxCampaign)
	case len(cl.URL) > MaxURL:
		return "", fmt.Errorf("click token: URL is %d bytes; the limit is %d", len(cl.URL), MaxURL)
	case cl.Index < 0 || cl.Index >= MaxLinks:
		return "", fmt.Errorf("click token: link index %d out of range", cl.Index)
	case !safeURL(cl.URL):
		return "", fmt.Errorf("click token: %q is not an http(s) URL", cl.URL)
	}
	b := make([]byte, 0, 1+5+1+2+len(cl.Campaign)+len(cl.URL)+macLen)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(cl.Contact))
	b = append(b, byte(cl.Index))
	b = binary.AppendUvarint(b, uint64(len(cl.Campaign)))
	b = append(b, cl.Campaign...)
	b = append(b, cl.URL...)
	b = append(b, c.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Parse verifies a token and returns its click. Errors wrap ErrBadToken.
func (c *Codec) Parse(token string) (Click, error) {
	if len(token) > base64.RawURLEncoding.EncodedLen(1+5+1+2+MaxCampaign+MaxURL+macLen) {
		return Click{}, fmt.Errorf("%w: too long", ErrBadToken)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < 1+macLen {
		return Click{}, fmt.Errorf("%w: not a token", ErrBadToken)
	}
	payload, sig := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sig, c.mac(payload)) {
		return Click{}, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	// Signed by us: the layout is ours, but check it anyway.
	if payload[0] != version {
		return Click{}, fmt.Errorf("%w: version %d", ErrBadToken, payload[0])
	}
	p := payload[1:]
	contact, n := binary.Uvarint(p)
	if n <= 0 || contact > 1<<32-1 || len(p) < n+1 {
		return Click{}, fmt.Errorf("%w: bad contact", ErrBadToken)
	}
	p = p[n:]
	idx := int(p[0])
	p = p[1:]
	clen, n := binary.Uvarint(p)
	if n <= 0 || clen > uint64(len(p)-n) {
		return Click{}, fmt.Errorf("%w: bad campaign", ErrBadToken)
	}
	p = p[n:]
	cl := Click{Campaign: string(p[:clen]), Contact: uint32(contact), Index: idx, URL: string(p[clen:])}
	if !safeURL(cl.URL) {
		return Click{}, fmt.Errorf("%w: bad URL", ErrBadToken)
	}
	return cl, nil
}

// safeURL accepts absolute http and https URLs with a host: a redirect never goes to
// javascript:, data: or a relative path.
func safeURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && !strings.ContainsAny(s, " \t\r\n")
}

// urlRE finds http(s) URLs in text; trailing punctuation is trimmed by trimURL.
var urlRE = regexp.MustCompile(`https?://[^\s<>"'` + "`" + `]+`)

func trimURL(s string) string {
	for len(s) > 0 {
		last := s[len(s)-1]
		switch {
		case strings.IndexByte(".,;:!?'\"", last) >= 0:
			s = s[:len(s)-1]
		case last == ')' && strings.Count(s, "(") < strings.Count(s, ")"),
			last == ']' && strings.Count(s, "[") < strings.Count(s, "]"):
			s = s[:len(s)-1]
		default:
			return s
		}
	}
	return s
}

// Tracker rewrites the URLs of messages into tracked links.
type Tracker struct {
	Codec *Codec
	// Base is the redirector's origin, like https://t.example.com (no trailing slash):
	// links become Base + "/c/" + token.
	Base string
}

// Rewrite replaces every http(s) URL in text, in order, by a tracked link of (campaign,
// contact); at most MaxLinks, after which URLs are left as they are. first is the index
// of the first link (for a message whose links are spread over several fields). It
// returns the text and the number of links rewritten. URLs already pointing at Base are
// left alone.
func (t *Tracker) Rewrite(text, campaign string, contact uint32, first int) (string, int, error) {
	locs := urlRE.FindAllStringIndex(text, -1)
	if len(locs) == 0 {
		return text, 0, nil
	}
	var b strings.Builder
	prev, n := 0, 0
	for _, loc := range locs {
		raw := trimURL(text[loc[0]:loc[1]])
		end := loc[0] + len(raw)
		if first+n >= MaxLinks || strings.HasPrefix(raw, t.Base+"/c/") || !safeURL(raw) || len(raw) > MaxURL {
			continue
		}
		tok, err := t.Codec.Token(Click{Campaign: campaign, Contact: contact, Index: first + n, URL: raw})
		if err != nil {
			return "", 0, err
		}
		b.WriteString(text[prev:loc[0]])
		b.WriteString(t.Base)
		b.WriteString("/c/")
		b.WriteString(tok)
		prev = end
		n++
	}
	b.WriteString(text[prev:])
	return b.String(), n, nil
}
