package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
)

func telegramCommand() *cli.Command {
	return &cli.Command{
		Name:  "telegram",
		Usage: "set up Telegram bots: webhooks and deep links",
		Subcommands: []*cli.Command{{
			Name:  "link",
			Usage: "print the t.me deep link that opts a contact in: opening it sends the bot /start <payload>, which links the chat to the contact and grants (telegram, marketing)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "sender", Required: true, Usage: "the telegram sender (bot) id"},
				&cli.UintFlag{Name: "contact", Required: true, Usage: "the contact's id"},
			},
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				res, err := app.TelegramLink(c.Context, d, c.String("sender"), uint32(c.Uint("contact")))
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, res)
				}
				fmt.Fprintln(c.App.Writer, res.URL)
				return nil
			},
		}, {
			Name:  "webhook",
			Usage: "point a bot's updates at serve's /webhooks/telegram (setWebhook with the bot's secret token)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "sender", Required: true, Usage: "the telegram sender (bot) id"},
				&cli.StringFlag{Name: "url", Usage: "serve's public origin as Telegram reaches it (default --public-url)"},
			},
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				url, err := app.TelegramSetWebhook(c.Context, d, c.String("sender"), c.String("url"))
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, map[string]string{"sender": c.String("sender"), "webhook_url": url})
				}
				fmt.Fprintf(c.App.Writer, "bot of sender %s posts its updates to %s\n", c.String("sender"), url)
				return nil
			},
		}},
	}
}
