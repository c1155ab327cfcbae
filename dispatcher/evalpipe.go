package dispatcher

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// evalEach runs script once per call i (its keys and args) in one pipeline. EVALSHA
// spares Redis the script text of every call. A server that does not know the script
// (restarted, flushed) answers every command of the pipeline NOSCRIPT — they all run the
// same script — so none ran, and the pipeline is sent again with the text.
func evalEach(ctx context.Context, rdb redis.Cmdable, script *redis.Script, n int, keys func(i int) []string, args func(i int) []any) ([]*redis.Cmd, error) {
	exec := func(sha bool) ([]*redis.Cmd, error) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			if sha {
				cmds[i] = script.EvalSha(ctx, pipe, keys(i), args(i)...)
			} else {
				cmds[i] = script.Eval(ctx, pipe, keys(i), args(i)...)
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := exec(true)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmds, err = exec(false)
	}
	return cmds, err
}
