// Command herald is Herald's single binary: every role (serve, worker, sink, scheduler,
// sandbox, dev, demo) and every marketer and operator command is a subcommand.
// Run `herald --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // IANA zones for recipients' local time, on machines without zoneinfo

	"github.com/herald-dev/herald/internal/cli"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}
