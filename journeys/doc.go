// Package journeys owns automated journeys: a versioned YAML definition (an entry
// trigger, steps, exit conditions), its validation, and the engine that moves contacts
// through it. It does not send: a send step becomes a one-contact job of a "journey
// campaign" on herald.outbound, so the worker's claim, the throttle (consent, window,
// frequency caps, quiet hours) and the sender limits apply as to any campaign.
//
// Where to start: Parse and Validate (definition.go), Store (versions in Redis), Engine
// (engine.go): instance state per (journey, contact) in Redis hash buckets, durable
// timers in a Redis sorted set, triggers consumed from herald.events and herald.inbound.
//
// Exactly once per (journey, version, contact, step, entry): every instance state has a
// timer (due at once while a step runs, with a lease), a step's effects are idempotent
// (a send's journey campaign is named by journey, version, step and entry, so the
// worker's claim bitmap drops a repeat; events have deterministic ids; tags are sets),
// and a state change commits only if the instance is still in the state it started
// from (a compare-and-set on its sequence number).
//
// Redis keys (P is the prefix; {jrn:ID} is a hash tag):
//
//	P journeys                  ZSET: journey ids by creation time
//	P {jrn:ID}                  HASH: state, latest version, v:N sources
//	P {jrn:ID}:i:B              HASH: instance per contact (contact>>7 == B), compact
//	P {jrn:ID}:h:B              HASH: entry history per contact (entries, last entry ms)
//	P {jrn:ID}:ek:C:KEY         STRING with TTL: an entry key already used (every_time
//	                            or entry_key journeys; others keep the last in the history)
//	P {jrn:ID}:timers           ZSET: "contact|entry|seq" by due time (ms)
//	P {jrn:ID}:x:B              HASH: entries that exited on a condition, per contact (the
//	                            worker skips their queued sends: journey_exited)
//	P {jrn:ID}:seg              STRING: a segment- or tag-entered journey's view of who is
//	                            in (a bitmap; whoever flips a bit owns that transition)
//
// Every key of a journey shares its hash tag, so its scripts run in one Redis Cluster
// slot (the timer claim also reads instance buckets it names from ARGV: same slot).
//
// Metrics: herald_journey_entered_total, herald_journey_steps_total{kind},
// herald_journey_exits_total{reason}, herald_journey_timer_lateness_seconds.
package journeys
