package dispatcher

import (
	"encoding/json"
	"time"
)

// The JSON of what the dispatcher reports (the CLI's --output json, the HTTP API):
// snake_case keys, times in RFC 3339, durations as milliseconds in keys ending in _ms.
// The types below hold time.Duration for the code and print it in milliseconds.

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// MarshalJSON prints the warm-up pause as warm_up_pause_ms.
func (s Sender) MarshalJSON() ([]byte, error) {
	type plain Sender
	return json.Marshal(struct {
		plain
		WarmUpPauseMS float64 `json:"warm_up_pause_ms,omitempty"`
	}{plain(s), millis(s.WarmUpPause)})
}

// MarshalJSON prints the ETA as eta_ms.
func (d DryRun) MarshalJSON() ([]byte, error) {
	type plain DryRun
	return json.Marshal(struct {
		plain
		ETAMS float64 `json:"eta_ms"`
	}{plain(d), millis(d.ETA)})
}

// MarshalJSON prints the ETA as eta_ms.
func (p SenderPlan) MarshalJSON() ([]byte, error) {
	type plain SenderPlan
	return json.Marshal(struct {
		plain
		ETAMS float64 `json:"eta_ms"`
	}{plain(p), millis(p.ETA)})
}
