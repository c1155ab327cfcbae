package cli

import (
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/apiclient"
	"github.com/herald-dev/herald/internal/app"
)

// reportChannelsCommand is herald report channels: a campaign's funnel per channel
// with its fallbacks (issue 20).
func reportChannelsCommand() *cli.Command {
	return &cli.Command{
		Name: "channels",
		Usage: "a campaign's funnel per channel with its fallbacks: contacts queued, sent, delivered, read, clicked, replied and failed " +
			"on each channel, how many got there by a fallback, fallbacks by reason and from→to, who was reached only through a " +
			"fallback, and the time to reach (first queued → first delivered)",
		Flags: []cli.Flag{&cli.StringFlag{Name: "campaign", Required: true, Usage: "campaign ID"}},
		Action: reportAction(func(c *cli.Context, conn driver.Conn) (any, string, []string, [][]string, error) {
			r, err := app.ChannelsReport(c.Context, conn, app.ReportParams{Campaign: c.String("campaign")})
			if err != nil {
				return nil, "", nil, nil, err
			}
			header, rows := channelsTable(r)
			return r, channelsNote(r), header, rows, nil
		}),
	}
}

// channelsTable is one row per channel.
func channelsTable(r analytics.ChannelsReport) ([]string, [][]string) {
	header := []string{"channel"}
	for _, s := range []string{"queued", "sent", "delivered", "read", "clicked", "replied"} {
		header = append(header, s)
	}
	header = append(header, "failed", "fallback_in", "fallback_sent", "fallback_delivered", "fallback_out")
	var rows [][]string
	for _, ch := range r.Channels {
		row := []string{ch.Channel}
		for _, s := range ch.Steps {
			row = append(row, u64(s.Contacts))
		}
		row = append(row, u64(ch.Failed), u64(ch.FallbackIn), u64(ch.FallbackSent), u64(ch.FallbackDelivered), u64(ch.FallbackOut))
		rows = append(rows, row)
	}
	return header, rows
}

// channelsNote is what the table does not show: reach, fallbacks, times, invariant 9.
func channelsNote(r analytics.ChannelsReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "campaign %s: %d contacts queued, %d reached on some channel\n", r.Campaign, r.Contacts, r.Reached)
	fmt.Fprintf(&b, "fallbacks: %s\n", app.FallbackSummary(r))
	for _, f := range r.Fallbacks {
		fmt.Fprintf(&b, "  %s → %s  %-22s %d\n", f.From, f.To, f.Reason, f.Contacts)
	}
	fmt.Fprintf(&b, "time to reach: %s\n", app.ReachTimeText(r.TimeToReach))
	fmt.Fprintf(&b, "time to reach through a fallback: %s", app.ReachTimeText(r.TimeToReachByFallback))
	if r.SentTwiceWithoutFallback > 0 || r.SentOnMoreThanTwoChannels > 0 {
		fmt.Fprintf(&b, "\nWARNING: %d contacts sent on two channels without a fallback, %d on more than two (both must be 0)",
			r.SentTwiceWithoutFallback, r.SentOnMoreThanTwoChannels)
	}
	return b.String()
}

// printChannelLines adds to the funnel's table its per-channel breakdown when the
// campaign used more than one channel (app.PrintChannelLines), locally or over the API.
func printChannelLines(c *cli.Context, rc *apiclient.Client, conn driver.Conn, campaign string) error {
	var (
		r   analytics.ChannelsReport
		err error
	)
	if rc != nil {
		r, err = rc.Channels(c.Context, campaign)
		err = remoteErr(err)
	} else {
		r, err = analytics.ChannelsFunnel(c.Context, conn, campaign)
	}
	if err != nil {
		return err
	}
	app.PrintChannelLines(c.App.Writer, r)
	return nil
}
