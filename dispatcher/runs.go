package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// Runs of recurring campaigns (package recurring) are ordinary campaigns with ids the
// schedule chooses (<schedule>-<yyyymmddThhmm>) and audiences it computes (the segment
// less the contacts the schedule reached lately): CreateRun and StoreAudience let a
// crashed or concurrent firing of one run converge on one campaign and one snapshot.

// CreateRun stores cp as a draft under its own id (cp.ID, required) unless a campaign
// with that id exists, and returns the stored campaign either way: creating a run twice
// creates it once. The caller has validated cp (app.CreateCampaign's checks).
func (c *Campaigns) CreateRun(ctx context.Context, cp Campaign) (Campaign, error) {
	if cp.ID == "" {
		return cp, errors.New("campaign run: an id is required")
	}
	if cp.Channel == "" {
		cp.Channel = "whatsapp"
	}
	if cp.Purpose == "" {
		cp.Purpose = "marketing"
	}
	if cp.Name == "" {
		cp.Name = "campaign " + cp.ID
	}
	if cp.Created.IsZero() {
		cp.Created = c.now().UTC().Truncate(1e6)
	}
	spec, _ := json.Marshal(cp)
	ok, err := c.rdb.HSetNX(ctx, c.key(cp.ID), "spec", spec).Result()
	if err != nil {
		return cp, fmt.Errorf("create campaign run %s: %w", cp.ID, err)
	}
	if ok {
		pipe := c.rdb.TxPipeline()
		pipe.HSetNX(ctx, c.key(cp.ID), "state", string(Draft))
		pipe.ZAddNX(ctx, c.prefix+"campaigns", redis.Z{Score: float64(cp.Created.UnixMilli()), Member: cp.ID})
		if _, err := pipe.Exec(ctx); err != nil {
			return cp, fmt.Errorf("create campaign run %s: %w", cp.ID, err)
		}
		return cp, nil
	}
	// Created before (by this firing before a crash, or by another process): make sure
	// the rest of its creation happened, then use what is stored.
	pipe := c.rdb.TxPipeline()
	pipe.HSetNX(ctx, c.key(cp.ID), "state", string(Draft))
	pipe.ZAddNX(ctx, c.prefix+"campaigns", redis.Z{Score: float64(cp.Created.UnixMilli()), Member: cp.ID})
	if _, err := pipe.Exec(ctx); err != nil {
		return cp, fmt.Errorf("create campaign run %s: %w", cp.ID, err)
	}
	return c.Get(ctx, cp.ID)
}

// StoreAudience makes bm the audience snapshot of campaign id unless it has one, and
// returns the snapshot that holds (the stored one when another caller was first).
// Launch then fans out that snapshot instead of evaluating the segment.
func (c *Campaigns) StoreAudience(ctx context.Context, id string, bm *roaring.Bitmap) (*roaring.Bitmap, error) {
	if old, err := c.loadSnapshot(ctx, id); err != nil || old != nil {
		if err == nil {
			err = c.rdb.HSetNX(ctx, c.key(id), "audience", old.GetCardinality()).Err()
		}
		return old, err
	}
	bm = bm.Clone()
	bm.RunOptimize()
	var buf bytes.Buffer
	if _, err := bm.WriteTo(&buf); err != nil {
		return nil, err
	}
	ok, err := c.rdb.SetNX(ctx, c.key(id)+":audience", buf.Bytes(), 0).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %s: store audience: %w", id, err)
	}
	if !ok {
		return c.StoreAudience(ctx, id, bm)
	}
	if err := c.rdb.HSet(ctx, c.key(id), "audience", bm.GetCardinality()).Err(); err != nil {
		return nil, fmt.Errorf("campaign %s: %w", id, err)
	}
	return bm, nil
}

// Audience returns campaign id's audience snapshot, or nil when it has none yet.
func (c *Campaigns) Audience(ctx context.Context, id string) (*roaring.Bitmap, error) {
	return c.loadSnapshot(ctx, id)
}

// Undone returns the members of campaign id's audience that have no outcome yet (not
// sent, skipped or failed): the contacts a running campaign may still message.
func (c *Campaigns) Undone(ctx context.Context, id string) (*roaring.Bitmap, error) {
	aud, err := c.loadSnapshot(ctx, id)
	if err != nil || aud == nil {
		return roaring.New(), err
	}
	raw, err := c.rdb.Get(ctx, c.key(id)+":done").Bytes()
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("campaign %s: done: %w", id, err)
	}
	done := roaring.New()
	for i, b := range raw { // Redis bitmaps number bits from the most significant of each byte
		for j := 0; b != 0 && j < 8; j++ {
			if b&(0x80>>j) != 0 {
				done.Add(uint32(i*8 + j))
			}
		}
	}
	return roaring.AndNot(aud, done), nil
}
