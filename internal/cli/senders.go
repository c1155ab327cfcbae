package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/throttle"
)

func sendersCommand() *cli.Command {
	return &cli.Command{
		Name:  "senders",
		Usage: "manage sender accounts (WhatsApp phone numbers)",
		Subcommands: []*cli.Command{{
			Name:  "add",
			Usage: "add or update a sender: a WhatsApp number, an SMTP account or an SMS number",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "channel", Value: "whatsapp", Usage: "whatsapp, email or sms"},
				&cli.StringFlag{Name: "phone-number-id", Usage: "WhatsApp: the Cloud API phone-number id (required)"},
				&cli.StringFlag{Name: "id", Usage: "Herald's id for the sender (default: the phone-number id)"},
				&cli.StringFlag{Name: "token", Usage: "the secret: Cloud API access token, SMTP password or SMS auth token", EnvVars: []string{"HERALD_WHATSAPP_TOKEN"}},
				&cli.StringSliceFlag{Name: "setting", Usage: "a channel setting KEY=VALUE (repeatable): email smtp_addr, from, from_name, username, tls; sms account_sid, from or messaging_service_sid, sender_type"},
				&cli.Float64Flag{Name: "rate", Value: 80, Usage: "messages per second (Cloud API default 80)"},
				&cli.StringFlag{Name: "name", Usage: "display name"},
				&cli.IntFlag{Name: "per-minute", Usage: "at most this many sends in any 60 s (0: only --rate)"},
				&cli.IntFlag{Name: "per-hour", Usage: "at most this many sends in any hour, e.g. an email provider's hourly quota (0: none; not with --per-minute)"},
				&cli.IntFlag{Name: "tier", Usage: "Meta messaging tier: unique recipients per rolling 24 h (250, 2000, 10000, 100000; 0: unlimited)"},
				&cli.StringFlag{Name: "warm-up", Usage: "pace a new number in bursts: BURST/PAUSE, e.g. 50/30s (pauses vary by ±25%)"},
				&cli.StringSliceFlag{Name: "country", Usage: "a country this sender serves when a campaign routes by country (ISO code, repeatable or comma-separated)"},
			},
			Action: func(c *cli.Context) error {
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				s := dispatcher.Sender{ID: c.String("id"), Channel: c.String("channel"), PhoneNumberID: c.String("phone-number-id"), Token: c.String("token"), Rate: c.Float64("rate"), Name: c.String("name"),
					Settings: map[string]string{}}
				for _, kv := range c.StringSlice("setting") {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || strings.TrimSpace(k) == "" {
						return usage("--setting %q: want KEY=VALUE", kv)
					}
					s.Settings[strings.TrimSpace(k)] = v
				}
				s.PerMinute, s.PerHour, s.Tier = c.Int("per-minute"), c.Int("per-hour"), c.Int("tier")
				if v := c.String("warm-up"); v != "" {
					b, p, ok := strings.Cut(v, "/")
					burst, err1 := strconv.Atoi(b)
					pause, err2 := time.ParseDuration(p)
					if !ok || err1 != nil || err2 != nil || burst <= 0 || pause <= 0 {
						return usage("--warm-up %q: want BURST/PAUSE, e.g. 50/30s", v)
					}
					s.WarmUpBurst, s.WarmUpPause = burst, pause
				}
				for _, v := range c.StringSlice("country") {
					for _, cc := range strings.Split(v, ",") {
						if cc = strings.ToUpper(strings.TrimSpace(cc)); cc != "" {
							s.Countries = append(s.Countries, cc)
						}
					}
				}
				s, err = app.SaveSender(c.Context, comp, s)
				var fe *app.FieldError
				if errors.As(err, &fe) {
					if fe.Field == "id" && s.ID == "" {
						return usage("senders add: give --id (or, for WhatsApp, --phone-number-id)")
					}
					return usage("%w", fe.Err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, s)
				}
				if s.Channel == "whatsapp" {
					fmt.Fprintf(c.App.Writer, "sender %s saved (phone-number id %s, %v msg/s)\n", s.ID, s.PhoneNumberID, s.Rate)
				} else {
					fmt.Fprintf(c.App.Writer, "sender %s saved (%s, %v msg/s)\n", s.ID, s.Channel, s.Rate)
				}
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list senders",
			Action: func(c *cli.Context) error {
				d, comp, err := componentsFor(c, app.Needs{Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				list, err := comp.Senders.List(c.Context)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.Channel, s.PhoneNumberID, strconv.FormatFloat(s.Rate, 'f', -1, 64), strings.Join(s.Countries, ","), s.Name})
				}
				table(c.App.Writer, []string{"ID", "CHANNEL", "PHONE-NUMBER-ID", "RATE", "COUNTRIES", "NAME"}, rows)
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "a sender's limits and its governor's live state (slowed by 130429, held by 131048, next free slot)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				return senderGovernor(c, func(*app.Components, context.Context, string) error { return nil })
			},
		}, {
			Name:      "hold",
			Usage:     "stop a sender's sends until a time (its jobs wait in the delayed set, nothing is dropped)",
			ArgsUsage: "ID",
			Flags:     []cli.Flag{&cli.DurationFlag{Name: "for", Value: time.Hour, Usage: "how long"}},
			Action: func(c *cli.Context) error {
				if c.Duration("for") <= 0 {
					return usage("--for must be positive")
				}
				return senderGovernor(c, func(comp *app.Components, ctx context.Context, id string) error {
					return comp.Governor.Hold(ctx, id, time.Now().Add(c.Duration("for")))
				})
			},
		}, {
			Name:      "resume",
			Usage:     "lift a hold (set by `senders hold` or by a 131048 quality refusal)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				return senderGovernor(c, func(comp *app.Components, ctx context.Context, id string) error {
					return comp.Governor.Resume(ctx, id)
				})
			},
		}},
	}
}

// senderGovernor runs do on a sender's governor, then prints the sender and its state.
func senderGovernor(c *cli.Context, do func(*app.Components, context.Context, string) error) error {
	id := c.Args().First()
	if id == "" || c.NArg() > 1 {
		return usage("want one sender id")
	}
	d, comp, err := componentsFor(c, app.Needs{Redis: true})
	if err != nil {
		return err
	}
	defer d.Close()
	ss, err := app.SenderGovernor(c.Context, comp, id, func(ctx context.Context, _ *throttle.Governor) error { return do(comp, ctx, id) })
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c.App.Writer, ss)
	}
	s, st := ss.Sender, ss.Governor
	w := c.App.Writer
	fmt.Fprintf(w, "sender %s (phone-number id %s): %v msg/s", s.ID, s.PhoneNumberID, s.Rate)
	if s.PerMinute > 0 {
		fmt.Fprintf(w, ", at most %d a minute", s.PerMinute)
	}
	if s.PerHour > 0 {
		fmt.Fprintf(w, ", at most %d an hour", s.PerHour)
	}
	if s.Tier > 0 {
		fmt.Fprintf(w, ", tier %d recipients a day", s.Tier)
	}
	if s.WarmUpBurst > 0 {
		fmt.Fprintf(w, ", warm-up %d/%s", s.WarmUpBurst, s.WarmUpPause)
	}
	fmt.Fprintf(w, "\n  governor  %s\n", st)
	return nil
}
