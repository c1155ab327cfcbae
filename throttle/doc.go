// Package throttle is the policy engine a worker runs before every send: consent for the
// channel and purpose (from the consent ledger), the 24-hour customer-service window for
// free-form messages, and the sender governor that keeps each sender under its rate
// across every worker process. Decisions are made in batches, one pipelined Redis round
// trip per batch, and each says allow, defer until a time, or skip with a reason code.
//
// It owns the consent ledger's write path (herald.consent first, then Redis state), the
// window timestamps and the governor state in Redis. It does not send, render or count
// campaign progress: that is the dispatcher's.
//
// Redis keys (P is the configured prefix):
//
//	P consent:{channel}:{purpose}  HASH contact id -> "g|<record id>" or "r|<record id>"
//	P consent:head                 HASH contact id -> hash of the contact's last ledger record
//	P window:{sender}              HASH contact id -> unix ms of the contact's last inbound message
//	P {gov:<sender>}:tat           GCRA theoretical arrival time of the sender, in µs of Redis time
package throttle
