//go:build race

package segments

// raceEnabled: the race detector slows phonenumbers' regular expressions ~50×, so the
// comparison tests check a sample of their inputs.
const raceEnabled = true
