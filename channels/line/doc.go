// Package line is Herald's LINE channel for the LINE Messaging API (and anything that
// speaks it, such as the sandbox in channels/line/sandbox). It owns everything about that
// provider: the client (Channel, a dispatcher.Channel and dispatcher.BatchChannel: push
// for one contact, multicast for up to 500), the mapping of Herald's rendered templates
// to LINE message objects (text, buttons template, flex bubble), its error table (Codes →
// dispatcher.Action… signals, rendered to docs/providers/line.md), the X-Line-Retry-Key
// derivation that makes a retried request take effect once, webhook decoding (follow,
// unfollow, message) and X-Line-Signature verification. It does not pace senders, decide
// consent or write events: the worker, throttle and the webhook server do, with what it
// returns.
//
// Wiring:
//
//   - New(Config{BaseURL}): a send uses the dispatcher.Sender's Token (the channel
//     access token); SetSecret(senderID, channel secret) registers the key the channel's
//     webhooks are signed with.
//   - The HTTP server serves POST WebhookPath: ReadBody the request (bounded), then
//     Channel.Verify(body, X-Line-Signature) and Decode(body).
//
// LINE has no delivery statuses for push or multicast: a 200 (or a 409 naming the
// accepted request) is the final word, and a user who blocked the account is not told
// apart (LINE answers 200 and delivers nothing). The unfollow event is how Herald learns
// of the block.
//
// Start with Channel.Send, Channel.SendBatch, RetryKey and the Codes table.
package line
