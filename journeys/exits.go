package journeys

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/dispatcher"
)

// A contact who leaves a journey on an exit condition (replied, converted, opted out,
// left the segment, the journey archived) may have a send of that entry still in
// herald.outbound. Exit notes the entry in P{jrn:ID}:x:B (a hash per 128 contacts, like
// the instances: contact → its last exited entries, newest first), and the worker asks
// Exits right before the send: a job of an exited entry is skipped (journey_exited). An
// entry that ends by running to its end (completed, an exit step, a holdout) is not
// noted: the sends on its way were meant.

func exitsKey(prefix, id string, c uint32) string {
	return prefix + "{jrn:" + id + "}:x:" + strconv.FormatUint(uint64(c>>7), 10)
}

// Exits answers, for the worker, which journey send jobs belong to an entry that has
// exited (dispatcher.JourneyExits).
type Exits struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ dispatcher.JourneyExits = (*Exits)(nil)

// NewExits returns the exits of the journeys under prefix.
func NewExits(rdb redis.UniversalClient, prefix string) *Exits {
	return &Exits{rdb: rdb, prefix: prefix}
}

// Exited reports, per job, whether its campaign is a journey step's whose entry exited
// (one pipelined round trip for the lot; jobs of other campaigns answer false).
func (x *Exits) Exited(ctx context.Context, jobs []dispatcher.Key) ([]bool, error) {
	out := make([]bool, len(jobs))
	cmds := make([]*redis.StringCmd, len(jobs))
	entries := make([]string, len(jobs))
	pipe := x.rdb.Pipeline()
	n := 0
	for i, j := range jobs {
		id, _, _, entry, ok := ParseCampaignID(j.Campaign)
		if !ok {
			continue
		}
		entries[i] = strconv.Itoa(entry)
		cmds[i] = pipe.HGet(ctx, exitsKey(x.prefix, id, j.Contact), strconv.FormatUint(uint64(j.Contact), 10))
		n++
	}
	if n == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("journey exits: %w", err)
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		for _, e := range strings.Split(cmd.Val(), ",") {
			if e == entries[i] {
				out[i] = true
				break
			}
		}
	}
	return out, nil
}
