// Command herald is Herald's single binary: every role (serve, worker, sink, scheduler,
// sandbox, dev, demo) and every marketer and operator command is a subcommand.
// Run `herald --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	_ "time/tzdata" // IANA zones for recipients' local time, on machines without zoneinfo

	"github.com/herald-dev/herald/internal/cli"
)

func main() { os.Exit(run()) }

// gcPercent is the garbage collector's target when GOGC is not set: Herald's roles keep
// small live heaps and allocate per message, so collecting at 3× the live heap instead
// of 2× spends about a tenth less CPU per message for some tens of MB more (measured with
// `herald bench e2e`; README). GOGC and GOMEMLIMIT in the environment still rule.
const gcPercent = 200

func run() int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}
