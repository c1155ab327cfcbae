package cli

import (
	"fmt"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/internal/app"
)

func lineSandboxCommand() *cli.Command {
	return &cli.Command{
		Name:  "line",
		Usage: "run the LINE Messaging API sandbox alone",
		Description: "Serves POST /v2/bot/message/push and /multicast like the Messaging API (bearer channel access\n" +
			"token, JSON and error shapes, X-Line-Retry-Key 409s, 2,000 and 200 req/s limits, the monthly quota,\n" +
			"2 MB bodies) and the quota endpoints. POST /_sandbox/follow, /unfollow and /message with\n" +
			"{\"user_id\",\"text\"} post signed events to --webhook-url. GET /_sandbox/records and /_sandbox/stats\n" +
			"show what it accepted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9082", Usage: "listen address", EnvVars: []string{"HERALD_LINE_SANDBOX_LISTEN"}},
			&cli.StringFlag{Name: "token", Value: app.DevLINEToken, Usage: "accepted channel access token", EnvVars: []string{"HERALD_LINE_SANDBOX_TOKEN"}},
			&cli.StringFlag{Name: "channel-secret", Value: app.DevLINESecret, Usage: "signs the webhooks (the sender's channel_secret setting)", EnvVars: []string{"HERALD_LINE_SANDBOX_SECRET"}},
			&cli.StringFlag{Name: "webhook-url", Usage: "where events are posted (Herald's " + line.WebhookPath + ")", EnvVars: []string{"HERALD_LINE_SANDBOX_WEBHOOK_URL"}},
			&cli.Int64Flag{Name: "monthly-quota", Usage: "messages a month (0: unlimited)"},
			&cli.Float64Flag{Name: "blocked", Usage: "share of users who blocked the account (answered 200, not delivered)"},
		},
		Action: func(c *cli.Context) error {
			if c.Float64("blocked") < 0 || c.Float64("blocked") > 1 || c.Int64("monthly-quota") < 0 {
				return usage("--blocked must be between 0 and 1 and --monthly-quota not negative")
			}
			l, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			sb := linesandbox.New(linesandbox.Config{Token: c.String("token"), ChannelSecret: c.String("channel-secret"),
				WebhookURL: c.String("webhook-url"), MonthlyQuota: c.Int64("monthly-quota"), BlockedRate: c.Float64("blocked")})
			fmt.Fprintf(c.App.Writer, "LINE sandbox on http://%s (token %q)\n", l.Addr(), c.String("token"))
			return app.ServeHTTP(c.Context, l, sb.Handler())
		},
	}
}
