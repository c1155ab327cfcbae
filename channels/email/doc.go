// Package email is Herald's email channel: everything about sending campaign mail over
// SMTP and reading back what the receiving side says about it, handed to the core in its
// own terms (the channel contract in dispatcher/channel.go).
//
// It owns:
//   - Channel (New, Send): a dispatcher.Channel that submits each message to the
//     sender's SMTP server over a small pool of reused connections (go-mail), with a
//     Message-ID naming the (campaign, contact), X-Herald-Callback, RFC 8058 one-click
//     unsubscribe headers and an optional DKIM signature (go-msgauth). A sender's SMTP
//     settings are a SenderConfig in Config.Senders, keyed by dispatcher.Sender.ID.
//   - Codes: the one table of SMTP replies (basic and enhanced codes) → dispatcher
//     Action… signals, read by Classify and ParseReport and rendered into
//     docs/providers/email.md (a test keeps the two equal).
//   - ParseReport: bounces (RFC 3464 DSNs) and complaints (RFC 5965 ARF reports) →
//     []dispatcher.Report; Receiver: an SMTP listener that feeds them to a handler.
//   - sandbox/: a real SMTP server that behaves like a provider and records the truth.
//
// It does not own what the core does with a signal (dispatcher.Reactor), consent,
// suppression or pacing (throttle), rendering (templates), nor the wiring into the
// worker and serve. Start with Channel.Send, Codes and ParseReport.
package email
