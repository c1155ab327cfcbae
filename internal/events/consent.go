package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ConsentAction is what a ledger record does.
type ConsentAction string

// Consent actions.
const (
	Grant  ConsentAction = "grant"
	Revoke ConsentAction = "revoke"
)

// ConsentRecord is one entry of the consent ledger, written to herald.consent (keyed by
// contact id) before Redis state changes, and appended to ClickHouse consent_log. Records
// of one contact form a hash chain: Hash covers every field and PrevHash, so an edited or
// removed row breaks the chain.
type ConsentRecord struct {
	ID             string        `json:"id"`
	ContactID      uint32        `json:"contact"`
	Channel        string        `json:"channel"` // whatsapp, sms, email, ...
	Purpose        string        `json:"purpose"` // marketing, utility, ...
	Action         ConsentAction `json:"action"`
	Source         string        `json:"source"` // import, web_form, keyword, api, provider
	Wording        string        `json:"wording,omitempty"`
	WordingVersion string        `json:"wording_version,omitempty"`
	IP             string        `json:"ip,omitempty"`
	UserAgent      string        `json:"user_agent,omitempty"`
	Actor          string        `json:"actor,omitempty"`
	Proof          string        `json:"proof,omitempty"` // e.g. import file and line, keyword message id
	Time           time.Time     `json:"ts"`
	PrevHash       string        `json:"prev_hash"`
	Hash           string        `json:"hash"`
}

// ComputeHash returns the chain hash of r over its fields and PrevHash.
func (r ConsentRecord) ComputeHash() string {
	fields := []string{r.ID, strconv.FormatUint(uint64(r.ContactID), 10), r.Channel, r.Purpose,
		string(r.Action), r.Source, r.Wording, r.WordingVersion, r.IP, r.UserAgent, r.Actor, r.Proof,
		strconv.FormatInt(r.Time.UTC().UnixMilli(), 10), r.PrevHash}
	h := sha256.New()
	for _, f := range fields {
		h.Write(strconv.AppendInt(nil, int64(len(f)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Seal links r to the previous record's hash and sets its own.
func (r *ConsentRecord) Seal(prev string) {
	r.Time = r.Time.UTC().Truncate(time.Millisecond)
	r.PrevHash = prev
	r.Hash = r.ComputeHash()
}

// Marshal encodes r for Kafka.
func (r ConsentRecord) Marshal() ([]byte, error) { return json.Marshal(r) }

// UnmarshalConsent decodes and checks a ledger record, including its own hash.
func UnmarshalConsent(b []byte) (ConsentRecord, error) {
	var r ConsentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode consent record: %w", err)
	}
	if r.ID == "" || r.ContactID == 0 || r.Channel == "" || r.Purpose == "" {
		return r, fmt.Errorf("decode consent record %q: missing id, contact, channel or purpose", r.ID)
	}
	if r.Action != Grant && r.Action != Revoke {
		return r, fmt.Errorf("decode consent record %s: unknown action %q", r.ID, r.Action)
	}
	if r.Hash != r.ComputeHash() {
		return r, fmt.Errorf("decode consent record %s: hash does not match its contents", r.ID)
	}
	return r, nil
}

// VerifyChain checks that records (one contact's, in ledger order) link hash to hash.
// It returns the index of the first broken record, or -1.
func VerifyChain(records []ConsentRecord) int {
	prev := ""
	for i, r := range records {
		if r.PrevHash != prev || r.Hash != r.ComputeHash() {
			return i
		}
		prev = r.Hash
	}
	return -1
}

// Inbound is a message from a contact, published on herald.inbound by the webhook server.
// It opens the 24h window, may carry a keyword (STOP), and counts as a reply.
type Inbound struct {
	ID                string    `json:"id"` // provider message id
	ContactID         uint32    `json:"contact"`
	From              string    `json:"from"`   // E.164
	SenderID          string    `json:"sender"` // our phone-number id that received it
	Channel           string    `json:"channel"`
	Type              string    `json:"type"`
	Text              string    `json:"text,omitempty"`
	ReplyToProviderID string    `json:"reply_to,omitempty"`
	Time              time.Time `json:"ts"`
}

// NormalizeKeyword folds an inbound text for keyword matching (STOP, Stop., " stop ").
func NormalizeKeyword(s string) string {
	return strings.ToUpper(strings.Trim(strings.TrimSpace(s), ".!¡¿? "))
}
