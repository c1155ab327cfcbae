package throttle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/kafkax"
)

// Publisher writes messages to one Kafka topic (a *kafka.Writer).
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Ledger records consent grants and revocations. Every change is written to the
// herald.consent topic (the source of truth) before the Redis state that the policy reads
// changes, so a crash in between leaves a record that `herald consent rebuild` replays.
type Ledger struct {
	rdb    redis.UniversalClient
	prefix string
	pub    Publisher
	now    func() time.Time
}

// NewLedger returns a ledger writing to pub (the consent topic) and Redis.
func NewLedger(rdb redis.UniversalClient, prefix string, pub Publisher) *Ledger {
	return &Ledger{rdb: rdb, prefix: prefix, pub: pub, now: time.Now}
}

// Change is one consent grant or revocation to record.
type Change struct {
	ContactID      uint32
	Channel        string // whatsapp
	Purpose        string // marketing, utility
	Action         events.ConsentAction
	Source         string // import, web_form, keyword, api, provider
	Wording        string
	WordingVersion string
	IP, UserAgent  string
	Actor          string
	Proof          string
	Time           time.Time // zero: now
}

func (c Change) validate() error {
	switch {
	case c.ContactID == 0:
		return fmt.Errorf("consent change: missing contact")
	case c.Channel == "" || c.Purpose == "":
		return fmt.Errorf("consent change for contact %d: channel and purpose are required", c.ContactID)
	case c.Action != events.Grant && c.Action != events.Revoke:
		return fmt.Errorf("consent change for contact %d: action must be grant or revoke, not %q", c.ContactID, c.Action)
	case c.Source == "":
		return fmt.Errorf("consent change for contact %d: source is required", c.ContactID)
	}
	return nil
}

func (l *Ledger) stateKey(channel, purpose string) string {
	return consentBase(l.prefix, l.rdb) + channel + ":" + purpose
}

func (l *Ledger) headKey() string { return consentBase(l.prefix, l.rdb) + "head" }

// lenKey holds each chain's length (records up to its head); dirtyKey the contacts whose
// head moved since the last checkpoint (see Checkpointer).
func (l *Ledger) lenKey() string   { return consentBase(l.prefix, l.rdb) + "len" }
func (l *Ledger) dirtyKey() string { return consentBase(l.prefix, l.rdb) + "dirty" }

func newRecordID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "cr_" + hex.EncodeToString(b)
}

// applyScript moves a contact's chain head from ARGV[1] to ARGV[2] and sets the consent
// state, only if the head is still ARGV[1]; it returns 0 when another writer got there first.
// With the head it counts the chain's records (KEYS[3]; a chain from before lengths were
// kept stays without one until `consent rebuild`) and marks the contact for the next
// checkpoint (KEYS[4]).
var applyScript = redis.NewScript(`
local head = redis.call('HGET', KEYS[1], ARGV[3]) or ''
if head ~= ARGV[1] then
  -- Already applied (a pipeline go-redis sent again after a timeout): the head is this
  -- record, or the state still names it. Anything else moved the head under us.
  if head == ARGV[2] or redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[4] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if head == '' then
  redis.call('HSET', KEYS[3], ARGV[3], 1)
elseif redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
end
redis.call('SADD', KEYS[4], ARGV[3])
return 1
`)

// Apply records changes: it seals each into a hash-chained record, writes them all to the
// consent topic, then applies them to Redis. Changes that would not change the state are
// dropped unless force is set, so re-importing a file is a no-op.
func (l *Ledger) Apply(ctx context.Context, changes []Change, force bool) ([]events.ConsentRecord, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	for _, c := range changes {
		if err := c.validate(); err != nil {
			return nil, err
		}
	}
	// One writer at a time per contact, from reading its chain's head to moving it: two
	// writers sealing records on the same head would fork the chain in the ledger.
	unlock, err := l.lockContacts(ctx, changes)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Current heads and states, one round trip.
	pipe := l.rdb.Pipeline()
	heads := make([]*redis.StringCmd, len(changes))
	states := make([]*redis.StringCmd, len(changes))
	for i, c := range changes {
		id := strconv.FormatUint(uint64(c.ContactID), 10)
		heads[i] = pipe.HGet(ctx, l.headKey(), id)
		states[i] = pipe.HGet(ctx, l.stateKey(c.Channel, c.Purpose), id)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("read consent state: %w", err)
	}
	now := l.now()
	prev := map[uint32]string{}
	var records []events.ConsentRecord
	for i, c := range changes {
		// Only changes of state are recorded (a grant to a granted contact, or a revoke of
		// one who never granted, changes nothing), unless force asks for the record anyway.
		if !force && parseState(states[i].Val()).Granted == (c.Action == events.Grant) {
			continue
		}
		p, seen := prev[c.ContactID]
		if !seen {
			p = heads[i].Val()
		}
		at := c.Time
		if at.IsZero() {
			at = now
		}
		r := events.ConsentRecord{ID: newRecordID(), ContactID: c.ContactID, Channel: c.Channel, Purpose: c.Purpose,
			Action: c.Action, Source: c.Source, Wording: c.Wording, WordingVersion: c.WordingVersion, IP: c.IP,
			UserAgent: c.UserAgent, Actor: c.Actor, Proof: c.Proof, Time: at}
		r.Seal(p)
		prev[c.ContactID] = r.Hash
		records = append(records, r)
	}
	if len(records) == 0 {
		return nil, nil
	}
	msgs := make([]kafka.Message, len(records))
	for i, r := range records {
		b, err := r.Marshal()
		if err != nil {
			return nil, err
		}
		msgs[i] = kafka.Message{Key: kafkax.ContactKey(r.ContactID), Value: b}
	}
	pctx, cancel := context.WithTimeout(ctx, writerLockPublish)
	defer cancel()
	if err := l.pub.WriteMessages(pctx, msgs...); err != nil {
		return nil, fmt.Errorf("publish consent: %w", err)
	}
	if err := l.applyState(ctx, records); err != nil {
		return records, err
	}
	return records, nil
}

// applyState applies ledger records to the Redis state in order. Scripts run with EVAL
// inside pipelines: EVALSHA there has no NOSCRIPT fallback after a Redis restart.
//
// The records go in pipelines of applyChunk: go-redis sends a whole pipeline again after
// a read timeout, and one of 100k scripts outlasts the timeout; the script answers 1 for
// a record it had already applied, so a pipeline sent twice is harmless.
func (l *Ledger) applyState(ctx context.Context, records []events.ConsentRecord) error {
	for start := 0; start < len(records); start += applyChunk {
		chunk := records[start:min(start+applyChunk, len(records))]
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(chunk))
		for i, r := range chunk {
			id := strconv.FormatUint(uint64(r.ContactID), 10)
			state := string(r.Action[0]) + "|" + r.ID
			cmds[i] = applyScript.Eval(ctx, pipe, []string{l.headKey(), l.stateKey(r.Channel, r.Purpose), l.lenKey(), l.dirtyKey()},
				r.PrevHash, r.Hash, id, state)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("apply consent state: %w", err)
		}
		for i, c := range cmds {
			if n, _ := c.Int(); n != 1 {
				return fmt.Errorf("apply consent record %s: contact %d changed concurrently; run `herald consent rebuild`", chunk[i].ID, chunk[i].ContactID)
			}
		}
	}
	return nil
}

// applyChunk is how many ledger records one pipeline applies.
const applyChunk = 2000

// State is a contact's consent for one channel and purpose.
type State struct {
	Granted  bool
	RecordID string // the ledger record the state comes from ("" when never recorded)
}

// States returns the consent state of contacts for channel and purpose, one round trip.
func (l *Ledger) States(ctx context.Context, channel, purpose string, contacts []uint32) ([]State, error) {
	return readConsent(ctx, l.rdb, l.stateKey(channel, purpose), contacts)
}

func readConsent(ctx context.Context, rdb redis.Cmdable, key string, contacts []uint32) ([]State, error) {
	fields := make([]string, len(contacts))
	for i, c := range contacts {
		fields[i] = strconv.FormatUint(uint64(c), 10)
	}
	vals, err := rdb.HMGet(ctx, key, fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("read consent: %w", err)
	}
	out := make([]State, len(contacts))
	for i, v := range vals {
		s, _ := v.(string)
		out[i] = parseState(s)
	}
	return out, nil
}

func parseState(s string) State {
	if len(s) < 2 || s[1] != '|' {
		return State{}
	}
	return State{Granted: s[0] == 'g', RecordID: s[2:]}
}
