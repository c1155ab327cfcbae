package throttle

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// CheckpointStore keeps checkpoints where auditors read them (analytics.CheckpointStore:
// ClickHouse tables ledger_checkpoints and ledger_heads).
type CheckpointStore interface {
	// LastCheckpoint returns the stored checkpoint with the highest Seq; false when none.
	LastCheckpoint(ctx context.Context) (Checkpoint, bool, error)
	// SaveHeads stores heads of the checkpoint cp (ID and Seq set); called before
	// SaveCheckpoint, possibly several times.
	SaveHeads(ctx context.Context, cp Checkpoint, heads []CheckpointHead) error
	// SaveCheckpoint stores the signed checkpoint itself, once all its heads are stored.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
}

// CheckpointerConfig configures a Checkpointer.
type CheckpointerConfig struct {
	Redis  redis.UniversalClient
	Prefix string
	Store  CheckpointStore
	Key    ed25519.PrivateKey
	Every  time.Duration    // Tick takes a checkpoint when the last one is this old; default 1h
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
	// Chunk is how many heads are read from Redis at once (default 1000) and Batch how
	// many are stored at once (default 50000).
	Chunk, Batch int
}

// Checkpointer signs checkpoints of the consent ledger (see Checkpoint). The heads come
// from the Redis state the Ledger keeps: the ledger moves a contact's head there (with
// the chain's length, and a mark for the next checkpoint) only after the record is in
// herald.consent, and only from the head the record was sealed on, so each head is the
// end of a chain the writers sealed themselves. ClickHouse's consent_log is not read: it
// is the copy being audited, and it trails the topic by the sink's delay.
//
// A checkpoint lists the contacts marked since the one before (their heads as read
// now) and is stored heads first, signed header last; the marks are dropped only after
// that. One checkpoint is taken at a time (a Redis lock), so the scheduler's leader and
// `herald ledger checkpoint` never race. Redis keys (P is the prefix):
//
//	P consent:len          HASH contact id -> records in the chain up to its head
//	P consent:dirty        SET contacts whose head moved since the last checkpoint
//	P consent:dirty:taken  SET contacts the checkpoint in progress lists (merged back
//	                       into the next one if it fails)
//	P ledger:lock          STRING the checkpoint in progress (a token, with a TTL)
type Checkpointer struct {
	cfg CheckpointerConfig
	log *slog.Logger
	// lockTTL is how long the checkpoint lock lives without renewal.
	lockTTL time.Duration
}

// ErrCheckpointBusy: another process is taking a checkpoint.
var ErrCheckpointBusy = errors.New("another checkpoint is being taken")

// NewCheckpointer returns a checkpointer.
func NewCheckpointer(cfg CheckpointerConfig) *Checkpointer {
	if cfg.Every <= 0 {
		cfg.Every = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 1000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 50000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{cfg: cfg, log: log.With("component", "ledger-checkpoint"), lockTTL: 30 * time.Second}
}

// CheckpointReport is a checkpoint taken, with what it had to leave out.
type CheckpointReport struct {
	Checkpoint
	// Skipped counts chains that moved but whose length is unknown (kept from before
	// Herald counted them): `herald consent rebuild` counts them, and they are in the
	// checkpoint after it.
	Skipped int `json:"skipped"`
}

// Tick takes a checkpoint when the last stored one is at least Every old, or there is
// none; false when none was due (or another process is taking one).
func (c *Checkpointer) Tick(ctx context.Context) (CheckpointReport, bool, error) {
	last, ok, err := c.cfg.Store.LastCheckpoint(ctx)
	if err != nil {
		return CheckpointReport{}, false, fmt.Errorf("ledger checkpoint: %w", err)
	}
	if ok && c.cfg.Now().Sub(last.At) < c.cfg.Every {
		return CheckpointReport{}, false, nil
	}
	rep, err := c.Checkpoint(ctx)
	if errors.Is(err, ErrCheckpointBusy) {
		return rep, false, nil
	}
	return rep, err == nil, err
}

func (c *Checkpointer) key(name string) string { return consentKey(c.cfg.Prefix, c.cfg.Redis, name) }

// takeScript adds the contacts marked since the last checkpoint (KEYS[1]) to those the
// checkpoint lists (KEYS[2], left there by a checkpoint that failed) and returns how many.
var takeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
    redis.call('DEL', KEYS[1])
  else
    redis.call('RENAME', KEYS[1], KEYS[2])
  end
end
return redis.call('SCARD', KEYS[2])
`)

// lockScript renews (ARGV[2] ms) or, with ARGV[2] = 0, releases the lock KEYS[1] if
// ARGV[1] holds it; with KEYS[2], it also drops the contacts the checkpoint listed.
var lockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// Checkpoint takes a checkpoint now: it lists the heads of the contacts whose chain
// moved since the last stored checkpoint (all of them after `consent rebuild`), chains
// onto that checkpoint's digest, signs, and stores it. It returns ErrCheckpointBusy when
// another process is taking one.
func (c *Checkpointer) Checkpoint(ctx context.Context) (CheckpointReport, error) {
	var rep CheckpointReport
	if c.cfg.Key == nil {
		return rep, errors.New("ledger checkpoint: no signing key")
	}
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	lock := c.key("ledger:lock")
	ok, err := c.cfg.Redis.SetNX(ctx, lock, token, c.lockTTL).Result()
	if err != nil {
		return rep, fmt.Errorf("ledger checkpoint: lock: %w", err)
	}
	if !ok {
		return rep, ErrCheckpointBusy
	}
	// The lock is renewed while the checkpoint is taken; losing it stops the checkpoint.
	ctx, cancel := context.WithCancelCause(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(c.lockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := lockScript.Run(ctx, c.cfg.Redis, []string{lock}, token, c.lockTTL.Milliseconds()).Int()
				if err == nil && n == 0 {
					cancel(errors.New("ledger checkpoint: lost the checkpoint lock"))
					return
				}
			}
		}
	}()
	defer func() {
		cancel(nil)
		<-renewed
		rctx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer done()
		_ = lockScript.Run(rctx, c.cfg.Redis, []string{lock}, token, 0).Err()
	}()

	rep, err = c.take(ctx)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return rep, err
	}
	// Stored: drop the marks it listed, if the lock is still ours (else the next
	// checkpoint lists them again, which is harmless).
	taken := c.key("consent:dirty:taken")
	if n, err := lockScript.Run(ctx, c.cfg.Redis, []string{lock, taken}, token, c.lockTTL.Milliseconds()).Int(); err != nil || n == 0 {
		c.log.Warn("checkpoint stored, but its marks stay for the next one", "seq", rep.Seq, "err", err)
	}
	c.log.Info("ledger checkpoint", "seq", rep.Seq, "heads", rep.Heads, "digest", rep.Digest, "key_id", rep.KeyID, "skipped", rep.Skipped)
	if rep.Skipped > 0 {
		c.log.Warn("chains of unknown length left out of the checkpoint: run `herald consent rebuild` once to count them",
			"chains", rep.Skipped)
	}
	return rep, nil
}

// take builds, signs and stores one checkpoint under the lock.
func (c *Checkpointer) take(ctx context.Context) (CheckpointReport, error) {
	var rep CheckpointReport
	last, ok, err := c.cfg.Store.LastCheckpoint(ctx)
	if err != nil {
		return rep, fmt.Errorf("ledger checkpoint: %w", err)
	}
	cp := Checkpoint{ID: newCheckpointID(), Seq: 1, At: c.cfg.Now().UTC().Truncate(time.Millisecond)}
	if ok {
		cp.Seq, cp.PrevDigest = last.Seq+1, last.Digest
		if !cp.At.After(last.At) {
			cp.At = last.At.Add(time.Millisecond)
		}
	}
	dirty, taken := c.key("consent:dirty"), c.key("consent:dirty:taken")
	if err := takeScript.Run(ctx, c.cfg.Redis, []string{dirty, taken}).Err(); err != nil {
		return rep, fmt.Errorf("ledger checkpoint: take marks: %w", err)
	}
	var ids []uint32
	iter := c.cfg.Redis.SScan(ctx, taken, 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		id, err := strconv.ParseUint(iter.Val(), 10, 32)
		if err != nil || id == 0 {
			continue // only the ledger writes this set
		}
		ids = append(ids, uint32(id))
	}
	if err := iter.Err(); err != nil {
		return rep, fmt.Errorf("ledger checkpoint: read marks: %w", err)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	d := NewCheckpointDigest(cp.Seq, cp.At, cp.PrevDigest)
	batch := make([]CheckpointHead, 0, min(len(ids), c.cfg.Batch))
	head, length := c.key("consent:head"), c.key("consent:len")
	fields := make([]string, 0, c.cfg.Chunk)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), c.cfg.Chunk)]
		ids = ids[len(chunk):]
		fields = fields[:0]
		for _, id := range chunk {
			fields = append(fields, strconv.FormatUint(uint64(id), 10))
		}
		// A head and its length are read in one transaction: the ledger moves both at once.
		var hs, ns *redis.SliceCmd
		if _, err := c.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
			hs = p.HMGet(ctx, head, fields...)
			ns = p.HMGet(ctx, length, fields...)
			return nil
		}); err != nil {
			return rep, fmt.Errorf("ledger checkpoint: read heads: %w", err)
		}
		for i, id := range chunk {
			h, _ := hs.Val()[i].(string)
			l, _ := ns.Val()[i].(string)
			n, _ := strconv.ParseUint(l, 10, 64)
			if h == "" {
				continue
			}
			if n == 0 {
				rep.Skipped++
				continue
			}
			ch := CheckpointHead{ContactID: id, Head: h, Records: n}
			if err := d.Add(ch); err != nil {
				return rep, fmt.Errorf("ledger checkpoint: %w", err)
			}
			batch = append(batch, ch)
		}
		if len(batch) >= c.cfg.Batch || (len(ids) == 0 && len(batch) > 0) {
			if err := c.cfg.Store.SaveHeads(ctx, cp, batch); err != nil {
				return rep, fmt.Errorf("ledger checkpoint %d: store heads: %w", cp.Seq, err)
			}
			batch = batch[:0]
		}
	}
	if cp.Digest, cp.Heads, err = d.Sum(); err != nil {
		return rep, fmt.Errorf("ledger checkpoint: %w", err)
	}
	if err := cp.Sign(c.cfg.Key); err != nil {
		return rep, err
	}
	if err := c.cfg.Store.SaveCheckpoint(ctx, cp); err != nil {
		return rep, fmt.Errorf("ledger checkpoint %d: store: %w", cp.Seq, err)
	}
	rep.Checkpoint = cp
	return rep, nil
}

func newCheckpointID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "ck_" + hex.EncodeToString(b)
}
