// Package throttle is the policy engine a worker runs before every send: consent for the
// channel and purpose (from the consent ledger), the 24-hour customer-service window for
// free-form messages, the per-recipient rules, and the sender governor that keeps each
// sender under its rate across every worker process. Decisions are made in batches and
// each says allow, defer until a time, or skip with a reason code.
//
// Policy.Check decides a batch in two pipelined round trips whatever its size: consent
// and window first (one HMGET per hash), then one atomic script per job for the rules
// that follow, in this order:
//
//	consent        skip no_consent / opted_out
//	24h window     skip outside_window (free-form text only)
//	frequency caps skip frequency_cap (per contact and category, rolling windows)
//	quiet hours    defer quiet_hours: the recipient's local night and days not allowed
//	               (zone: the profile's, else the phone's region, else a fallback)
//	marketing hold defer marketing_hold: 24 h after a 131049, marketing purpose only
//	back-off       defer recipient_backoff: 4^n s after the nth 131056 from the sender
//	pair rate      defer pair_rate: one message per interval (6 s) from a sender to a contact
//	daily tier     defer daily_tier: the sender's unique recipients in a moving 24 h
//	               (messages inside the customer-service window do not count)
//
// A job's script reserves its cap slot, pair slot and tier place together or not at
// all: a job skipped or deferred by any rule holds nothing, and ReleaseCaps gives back
// what an allowed job that was not sent holds. Every decision takes "now" from the
// policy's clock; times are stored in the keys, and key expiry only cleans up, with
// margins. Policy.Preview decides without reserving (dry runs).
//
// It owns the consent ledger's write path (herald.consent first, then Redis state), the
// ledger's signed checkpoints of its chain heads (Checkpoint, Checkpointer: the format,
// digest, signing and verifying; analytics stores them and audits chains against them),
// the window timestamps, the per-recipient state and the governor state in Redis. It does
// not send, render or count campaign progress: that is the dispatcher's.
//
// Redis keys (P is the configured prefix):
//
//	P consent:{channel}:{purpose}  HASH contact id -> "g|<record id>" or "r|<record id>"
//	P consent:head                 HASH contact id -> hash of the contact's last ledger record
//	P consent:len                  HASH contact id -> records in the chain up to that head
//	P consent:dirty                SET contacts whose head moved since the last checkpoint
//	P consent:dirty:taken          SET contacts the checkpoint in progress lists
//	P consent:writing              HASH contact id -> "token:until ms": the writer sealing its next record (see consentlock.go)
//	P ledger:lock                  STRING the checkpoint in progress (token, with a TTL)
//	P window:{sender}              HASH contact id -> unix ms of the contact's last inbound message
//	P {gov:<sender>}:tat           GCRA theoretical arrival time of the sender, in µs of Redis time
//	P {gov:<sender>}:st            HASH hold (until), f and ft (130429 slow-down factor and when
//	                               it was set), wb (slots used in the current warm-up burst)
//	P {gov:<sender>}:log           ZSET the last per-minute cap's worth of slots (only when the
//	                               cap is below 60 × rate)
//	P {c:<contact>}:rules          HASH of the contact's per-recipient state, kept 1 h longer than
//	                               the longest cap window or 24 h, whichever is more:
//	                                 f:<category>  cap log: "ms campaign" lines, oldest first
//	                                 s:<sender>    last message reserved: "ms:tierPrev:tierFlag:campaign"
//	                                 S:<sender>    the s: record it replaced, restored on release
//	                                 b:<sender>    131056 back-off: "n:until ms"
//	                                 hold          131049 marketing hold: until ms
//	P {s:<sender>}:tier            ZSET contact id -> ms of the sender's last message to it, for
//	                               the daily tier; trimmed to 24 h as it grows, no expiry (on a
//	                               cluster a score may carry a fraction of a ms: see below)
//
// Redis Cluster. The keys one script or transaction touches share a hash tag (one
// slot). On a cluster (the policy is given a *redis.ClusterClient) two things change:
//
//   - The consent ledger's keys are P {consent}:… instead of P consent:… (the ledger's
//     script moves a chain's head, length, mark and state at once; a checkpoint reads
//     heads and lengths in one transaction, and its lock moves the marks): P {consent}:head,
//     P {consent}:len, P {consent}:dirty, P {consent}:dirty:taken, P {consent}:{channel}:{purpose},
//     P {consent}:ledger:lock. Each of them is one hash or set, so one slot spreads nothing
//     less. A deployment chooses its layout once: switching a running one between a
//     single Redis and a cluster means moving the data (`consent rebuild` rewrites the
//     consent state from the ledger).
//   - The daily tier, whose job touches its contact's {c:…} and its sender's {s:…}, is
//     decided in two scripts: the tier place is taken on the sender's slot first, then
//     the rules run on the contact's with the tier's answer, and a place the rules did
//     not take is given back. It stays exact: every place taken writes a score no other
//     pending place of the contact has (the clock's ms, or the last score + 1/1024 ms),
//     and a place is given back only while the score is still its own, to the score it
//     replaced; so the set may count a contact longer than needed, never shorter, and
//     never lets a sender over its tier. A worker dying between the two scripts leaks
//     at most one place per job in flight, for at most TierWindow; the job's retry
//     reuses it (a contact counts once). See tiersplit.go. On a single primary the one
//     script does it all, as before.
package throttle
