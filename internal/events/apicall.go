package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// APICall is the audit record of one mutating call of the /v1 HTTP API (POST, PUT,
// PATCH, DELETE) made with a valid API key, whatever its outcome: who (the key's id,
// name and role), what (method, route pattern, the resource it named or created),
// which request (the request id the caller saw, the Idempotency-Key), and the HTTP
// status it got. The API publishes it on herald.audit before answering; the sink
// copies it into the ClickHouse table api_audit. ID is unique per record (the request
// id is the caller's and may repeat).
type APICall struct {
	ID             string    `json:"id"`
	Time           time.Time `json:"ts"`
	RequestID      string    `json:"request_id"`
	KeyID          string    `json:"key_id"`
	KeyName        string    `json:"key_name"`
	Role           string    `json:"role"`
	Method         string    `json:"method"`
	Route          string    `json:"route"` // the pattern: POST /v1/campaigns/{id}/launch
	ResourceID     string    `json:"resource_id,omitempty"`
	Status         int       `json:"status"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	Replayed       bool      `json:"replayed,omitempty"` // the stored response of an earlier call with the same Idempotency-Key
	DurationMS     float64   `json:"duration_ms"`
}

// Marshal encodes the record as it travels on herald.audit.
func (c APICall) Marshal() ([]byte, error) { return json.Marshal(c) }

// UnmarshalAPICall decodes a record of herald.audit.
func UnmarshalAPICall(b []byte) (APICall, error) {
	var c APICall
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode api call: %w", err)
	}
	if c.ID == "" {
		return c, fmt.Errorf("decode api call: no id")
	}
	return c, nil
}
