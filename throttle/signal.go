package throttle

// Signal is what a provider's refusal asks of the pace of a sender or a recipient, in
// the throttle's own terms: channel adapters translate their providers' codes into
// signals (WhatsApp's 130429 is SignalSlowSender, Twilio's 20429 too), and the throttle
// never sees a provider code.
type Signal uint8

// Signals. The zero Signal asks nothing.
const (
	SignalNone Signal = iota
	// SignalSlowSender: the sender's pace caused the refusal; the governor lowers its
	// rate and recovers it gradually (Governor.Pushback).
	SignalSlowSender
	// SignalHoldSender: the sender's quality is at stake; the governor holds it.
	SignalHoldSender
	// SignalSenderMaintenance: the provider holds the sender briefly (an upgrade).
	SignalSenderMaintenance
	// SignalBackoffRecipient: too many messages from the sender to this recipient; the
	// pair backs off exponentially (Policy.Pushback).
	SignalBackoffRecipient
	// SignalHoldMarketing: the provider holds the recipient's marketing for a while.
	SignalHoldMarketing
)

var signalNames = [...]string{
	SignalNone:              "none",
	SignalSlowSender:        "slow_sender",
	SignalHoldSender:        "hold_sender",
	SignalSenderMaintenance: "sender_maintenance",
	SignalBackoffRecipient:  "backoff_recipient",
	SignalHoldMarketing:     "hold_marketing",
}

// String returns a bounded, metric-label-safe name.
func (s Signal) String() string {
	if int(s) < len(signalNames) {
		return signalNames[s]
	}
	return "unknown"
}

// AboutSender reports whether the signal is for the governor (else for the policy).
func (s Signal) AboutSender() bool {
	return s == SignalSlowSender || s == SignalHoldSender || s == SignalSenderMaintenance
}
