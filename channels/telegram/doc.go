// Package telegram is Herald's Telegram channel for the Bot API (and anything that
// speaks it, such as the sandbox in channels/telegram/sandbox). It owns everything about
// that provider: the client (Channel, a dispatcher.Channel: sendMessage, sendPhoto,
// sendDocument with inline URL buttons), its error table (Codes → dispatcher.Action…
// signals, rendered to docs/providers/telegram.md), update decoding for the webhook
// (DecodeUpdate: /start <payload> and /stop as consent, other text as replies), the
// secret-token check (VerifySecret) and the signed deep-link payloads that name a contact
// (LinkPayload, ParsePayload). It does not pace senders, decide consent or write events:
// the worker, throttle and the webhook server do, with what it returns.
//
// A Telegram sender is a bot: dispatcher.Sender.Token is its token, Settings
// "paid_broadcast" ("true") sends with allow_paid_broadcast (up to 1,000 msg/s, billed),
// "username" is the bot's @username for deep links. Recipients (dispatcher.Message.To) are
// chat ids; provider ids are "<chat_id>:<message_id>".
//
// Telegram reports nothing about a bot's message after it accepted it: no delivery or
// read receipts. The funnel of a Telegram campaign is sent (and replies).
//
// Start with Channel.Send, DecodeUpdate and the Codes table.
package telegram
