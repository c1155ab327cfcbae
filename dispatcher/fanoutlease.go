package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// A fan-out runs in whichever process launched (or resumed) the campaign, under a
// lease: one process at a time queues a campaign's jobs, and a fan-out whose process
// died (the CLI that ran `campaigns launch` killed, the scheduler's leader lost) is
// finished by the scheduler's leader once the lease has run out (AdoptFanouts), from
// its last checkpoint. Campaigns whose fan-out started and has not finished are kept in
// P fanouts, so the leader finds them without reading every campaign.

// errFanoutTaken stops a fan-out whose lease another process took over.
var errFanoutTaken = errors.New("another process took the fan-out over (this one held its lease too long)")

func (c *Campaigns) fanoutsKey() string              { return c.prefix + "fanouts" }
func (c *Campaigns) fanoutLeaseKey(id string) string { return c.key(id) + ":fanout" }

// fanoutLease is a held fan-out lease.
type fanoutLease struct {
	c          *Campaigns
	key, token string
}

// takeFanout takes the fan-out lease of campaign id, or returns nil when another
// process holds it.
func (c *Campaigns) takeFanout(ctx context.Context, id string) (*fanoutLease, error) {
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	l := &fanoutLease{c: c, key: c.fanoutLeaseKey(id), token: hex.EncodeToString(tok)}
	ok, err := c.rdb.SetNX(ctx, l.key, l.token, c.fanoutLease).Result()
	if err != nil {
		return nil, fmt.Errorf("campaign %s: fan-out lease: %w", id, err)
	}
	if !ok {
		return nil, nil
	}
	return l, nil
}

// underLease runs fn holding campaign id's fan-out lease, then returns the campaign's
// status; while another process holds the lease, fn does not run.
func (c *Campaigns) underLease(ctx context.Context, id string, fn func(*fanoutLease) error) (Status, error) {
	lease, err := c.takeFanout(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if lease != nil {
		err := fn(lease)
		lease.release(ctx)
		if err != nil {
			return Status{}, err
		}
	}
	return c.Status(ctx, id)
}

// renew extends the lease; errFanoutTaken when another process holds it now.
func (l *fanoutLease) renew(ctx context.Context) error {
	if l == nil {
		return nil
	}
	ok, err := renewScript.Run(ctx, l.c.rdb, []string{l.key}, l.token, l.c.fanoutLease.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renew fan-out lease: %w", err)
	}
	if ok != 1 {
		return errFanoutTaken
	}
	return nil
}

// release gives the lease up if this process still holds it.
func (l *fanoutLease) release(ctx context.Context) {
	if l != nil {
		_ = dropLeaseScript.Run(context.WithoutCancel(ctx), l.c.rdb, []string{l.key}, l.token).Err()
	}
}

// dropLeaseScript deletes KEYS[1] if it holds ARGV[1].
var dropLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// AdoptFanouts finishes the fan-outs whose process died: running campaigns whose
// fan-out started and did not finish, and whose lease has run out. It resumes each
// from its checkpoint (jobs queued twice around a checkpoint are harmless: the claims
// send once) and returns the campaigns it adopted. Paused campaigns wait for their
// resume; cancelled and completed ones leave the list.
func (c *Campaigns) AdoptFanouts(ctx context.Context) ([]string, error) {
	ids, err := c.rdb.SMembers(ctx, c.fanoutsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("fan-outs in progress: %w", err)
	}
	var adopted []string
	for _, id := range ids {
		st, err := c.Status(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			st.State = Cancelled // gone: forget it
		case err != nil:
			return adopted, err
		}
		switch {
		case st.FanoutDone || st.State == Cancelled || st.State == Completed:
			if err := c.rdb.SRem(ctx, c.fanoutsKey(), id).Err(); err != nil {
				return adopted, fmt.Errorf("fan-outs in progress: %w", err)
			}
			continue
		case st.State != Running:
			continue
		}
		if held, err := c.rdb.Exists(ctx, c.fanoutLeaseKey(id)).Result(); err != nil || held > 0 {
			if err != nil {
				return adopted, fmt.Errorf("campaign %s: fan-out lease: %w", id, err)
			}
			continue // its process is alive, or its lease has not run out yet
		}
		if _, err := c.Launch(ctx, id, nil); err != nil {
			return adopted, err
		}
		adopted = append(adopted, id)
	}
	return adopted, nil
}
