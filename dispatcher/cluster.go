package dispatcher

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// txPipeline is a MULTI/EXEC pipeline on one Redis. On a Redis Cluster, where one
// transaction cannot span the slots of keys such as P sender:ID and P senders, it runs
// the queued commands one after the other, in order: callers queue the record before
// the index that lists it, so a process that dies half-way leaves a record nobody
// lists (written again by the next Put or Create), never an index entry without its
// record.
func txPipeline(rdb redis.UniversalClient) redis.Pipeliner {
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return &orderedPipeline{Pipeliner: rdb.Pipeline(), rdb: rdb}
	}
	return rdb.TxPipeline()
}

// orderedPipeline queues like a pipeline and runs its commands one by one, in order.
type orderedPipeline struct {
	redis.Pipeliner
	rdb redis.UniversalClient
}

func (p *orderedPipeline) Exec(ctx context.Context) ([]redis.Cmder, error) {
	cmds := p.Cmds()
	p.Discard()
	for _, c := range cmds {
		if err := p.rdb.Process(ctx, c); err != nil && err != redis.Nil {
			return cmds, err
		}
	}
	return cmds, nil
}
