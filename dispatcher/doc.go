// Package dispatcher owns campaigns and the send path: the campaign lifecycle
// (draft → running → completed), the audience snapshot taken at launch, the checkpointed
// fan-out of one send job per (campaign, contact) to herald.outbound (keyed by sender),
// and the worker that consumes those jobs: claim → policy (throttle) → render (templates)
// → pace (governor) → send (a channel adapter: channels/whatsapp, sms, email) → events.
//
// Exactly-once per (campaign, contact) rests on two Redis bitmaps per campaign: a job is
// claimed (bit set atomically) before anything is sent and marked done when its outcome
// is recorded. A redelivered job whose contact is done is dropped; one claimed but not
// done was in flight when its worker died: it is "in doubt" and is settled by the
// provider's status webhook, never sent again blindly.
//
// A fan-out runs under a lease (renewed at each checkpoint) in the process that
// launched or resumed the campaign, so one process at a time queues its jobs; if that
// process dies (a `campaigns launch` killed half-way), the scheduler's leader finishes
// the fan-out from its checkpoint once the lease has run out (30 s by default).
//
// The scheduler's leader also runs the periodic jobs it is given (LeaderJob): the
// consent ledger's signed checkpoints and the firing of recurring campaigns (package
// recurring), wired by internal/app. A recurring campaign's runs are campaigns with ids
// the schedule picks and audiences it computes (CreateRun, StoreAudience in runs.go).
//
// Redis keys (P is the configured prefix; {cmp:ID} is a hash tag, so one campaign's keys
// share a Redis Cluster slot):
//
//	P campaign:seq            INCR: campaign ids
//	P campaigns               ZSET: campaign ids by creation time
//	P {cmp:ID}                HASH: spec, state, audience, fan-out cursor, counters
//	P {cmp:ID}:audience       STRING: the audience snapshot (a serialized roaring bitmap)
//	P {cmp:ID}:fanout         STRING: the fan-out lease (a process's token, with a TTL)
//	P fanouts                 SET: campaigns whose fan-out started and has not finished
//	P {cmp:ID}:claimed        bitmap of claimed contacts
//	P {cmp:ID}:done           bitmap of contacts with a final outcome
//	P sender:ID               HASH: a sender (channel, phone-number id, token, rate)
//	P senders                 SET of sender ids
//
// Metrics (registered on the Registerer passed in): herald_worker_jobs_total{outcome},
// herald_worker_skips_total{reason}, herald_worker_send_errors_total{code},
// herald_worker_batch_seconds.
package dispatcher
