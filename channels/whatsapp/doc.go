// Package whatsapp is Herald's WhatsApp channel on Meta's Cloud API (and anything that
// speaks it, such as the sandbox in channels/whatsapp/sandbox). Its folder owns
// everything about that provider: the wire in channels/whatsapp/graph (client, payloads,
// error code table and classifier, webhook payloads and signatures), the sandbox, and
// here the core's side: the dispatcher.Channel adapter (Channel), which turns a Graph
// refusal into a *dispatcher.SendError whose Action and Signal the core carries out, and
// Decode, which turns a webhook notification into dispatcher Reports, Inbound messages
// and Preferences. It does not pace senders, decide consent or write events: the worker,
// throttle and the webhook server do, with what it returns.
//
// Wiring:
//
//   - New(graph.NewClient(graph.ClientConfig{BaseURL, APIVersion})); a sender's
//     dispatcher.Sender.PhoneNumberID and Token name the number and its access token.
//   - The HTTP server answers GET /webhooks/whatsapp with graph.VerifyChallenge, and on
//     POST checks graph.VerifySignature (the app secret) on the raw body before
//     graph.ParseNotification and Decode.
//
// Start with Channel.Send, Decode and graph.Codes.
package whatsapp
