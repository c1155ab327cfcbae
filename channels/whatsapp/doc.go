// Package whatsapp is Herald's WhatsApp channel on Meta's Cloud API (and anything that
// speaks it, such as the sandbox in channels/whatsapp/sandbox). Its folder owns
// everything about that provider: the wire in channels/whatsapp/graph (client, payloads,
// error code table and classifier, webhook payloads, signatures), the sandbox, and here
// the dispatcher.Channel adapter (Channel), which turns a Graph refusal into a
// *dispatcher.SendError whose Action and Signal the core carries out. It does not pace
// senders, decide consent or write events: the worker, throttle and the webhook server
// do, with what it returns.
//
// Wiring: New(graph.NewClient(graph.ClientConfig{BaseURL, APIVersion})); a sender's
// dispatcher.Sender.PhoneNumberID and Token name the number and its access token.
//
// Start with Channel.Send and graph.Codes.
package whatsapp
