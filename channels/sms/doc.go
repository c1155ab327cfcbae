// Package sms is Herald's SMS channel for Twilio's Messages API (and anything that
// speaks it, such as the sandbox in channels/sms/sandbox). It owns everything about that
// provider: the client (Channel, a dispatcher.Channel), its error table (Codes →
// dispatcher.Action… signals, rendered to docs/providers/sms.md), status-callback and
// inbound-message decoding, X-Twilio-Signature verification, and the carrier keywords
// (STOP, START…). It does not pace senders, decide consent or write events: the worker,
// throttle and the webhook server do, with what it returns.
//
// Wiring:
//
//   - New(Config{PublicURL, Senders}): Senders maps each Herald sender id
//     (dispatcher.Sender.ID) to its SenderConfig (Twilio account and auth token, From
//     number or Messaging Service, sender type and rate), read with ParseSenders;
//     dispatcher.Sender's WhatsApp fields are not used.
//   - Every send sets StatusCallback = PublicURL + StatusPath + "?cb=<callback data>".
//   - The HTTP server serves POST StatusPath and POST InboundPath: ReadForm the body,
//     Channel.Verify it against FullURL(PublicURL, r.URL.RequestURI()) — the URL as
//     Twilio requested it, not as a proxy forwarded it — then DecodeStatus(form,
//     r.URL.Query().Get("cb")) or DecodeInbound(form) and Keyword(in.Text).
//
// Start with Channel.Send, DecodeStatus and the Codes table.
package sms
