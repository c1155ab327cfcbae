package links

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// unsubscribeVersion marks an unsubscribe token: a click token never passes for one.
const unsubscribeVersion = 0x55

// Unsubscribe is what an unsubscribe token says: contact Contact, reached by campaign
// Campaign on Channel, asks to receive no more marketing there.
type Unsubscribe struct {
	Campaign string
	Contact  uint32
	Channel  string
}

// UnsubscribeToken encodes and signs an unsubscribe request: base64url(version, contact,
// channel, campaign, mac).
func (c *Codec) UnsubscribeToken(u Unsubscribe) (string, error) {
	if len(u.Campaign) > MaxCampaign || len(u.Channel) == 0 || len(u.Channel) > 32 {
		return "", fmt.Errorf("unsubscribe token: campaign (≤ %d bytes) and channel (1-32 bytes) out of range", MaxCampaign)
	}
	b := make([]byte, 0, 1+5+1+len(u.Channel)+len(u.Campaign)+macLen)
	b = append(b, unsubscribeVersion)
	b = binary.AppendUvarint(b, uint64(u.Contact))
	b = append(b, byte(len(u.Channel)))
	b = append(b, u.Channel...)
	b = append(b, u.Campaign...)
	b = append(b, c.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ParseUnsubscribe verifies an unsubscribe token. Errors wrap ErrBadToken.
func (c *Codec) ParseUnsubscribe(token string) (Unsubscribe, error) {
	if len(token) > base64.RawURLEncoding.EncodedLen(1+5+1+32+MaxCampaign+macLen) {
		return Unsubscribe{}, fmt.Errorf("%w: too long", ErrBadToken)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < 1+macLen {
		return Unsubscribe{}, fmt.Errorf("%w: not a token", ErrBadToken)
	}
	payload, sig := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sig, c.mac(payload)) {
		return Unsubscribe{}, fmt.Errorf("%w: signature does not match", ErrBadToken)
	}
	if payload[0] != unsubscribeVersion {
		return Unsubscribe{}, fmt.Errorf("%w: not an unsubscribe token", ErrBadToken)
	}
	p := payload[1:]
	contact, n := binary.Uvarint(p)
	if n <= 0 || contact == 0 || contact > 1<<32-1 || len(p) < n+1 {
		return Unsubscribe{}, fmt.Errorf("%w: bad contact", ErrBadToken)
	}
	p = p[n:]
	cl := int(p[0])
	p = p[1:]
	if cl == 0 || cl > len(p) {
		return Unsubscribe{}, fmt.Errorf("%w: bad channel", ErrBadToken)
	}
	return Unsubscribe{Contact: uint32(contact), Channel: string(p[:cl]), Campaign: string(p[cl:])}, nil
}

// UnsubscribeURL is the one-click unsubscribe link of (campaign, contact) on channel:
// Base + "/u/" + token, served by `herald serve` (RFC 8058: a POST unsubscribes).
func (t *Tracker) UnsubscribeURL(campaign string, contact uint32, channel string) (string, error) {
	tok, err := t.Codec.UnsubscribeToken(Unsubscribe{Campaign: campaign, Contact: contact, Channel: channel})
	if err != nil {
		return "", err
	}
	return t.Base + "/u/" + tok, nil
}
