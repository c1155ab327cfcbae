package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
)

func campaignsCommand() *cli.Command {
	idArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", usage("%s: give one campaign ID", c.Command.Name)
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "campaigns",
		Usage: "create, launch and follow campaigns",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "create a draft campaign",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "segment", Required: true, Usage: "who: a segment expression, e.g. 'vip and not churned'"},
				&cli.StringFlag{Name: "template", Required: true, Usage: "what: a template name"},
				&cli.StringFlag{Name: "fallback-template", Usage: "an approved WhatsApp template sent instead of a free-form --template to contacts outside the 24h window (by Herald's record or the provider's 131047); without it they are skipped outside_window"},
				&cli.StringSliceFlag{Name: "sender", Required: true, Usage: "from: sender id (repeatable: contacts are spread over them)"},
				&cli.StringFlag{Name: "name", Usage: "a name for people"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "consent purpose: marketing or utility"},
				&cli.StringFlag{Name: "channel", Usage: "whatsapp, email or sms (default: the senders' channel)"},
				&cli.BoolFlag{Name: "track-links", Usage: "turn URLs in the message into signed click-tracking links (needs HERALD_CLICK_KEY and HERALD_CLICK_BASE_URL)"},
				&cli.StringFlag{Name: "routing", Value: "round_robin", Usage: "how contacts spread over the senders: round_robin, or country (each sender's --country list)"},
				&cli.Float64Flag{Name: "holdout", Usage: "share of the audience kept out as a control group (0 to 0.5), skipped with reason holdout; see `herald report lift`"},
				&cli.StringFlag{Name: "quiet-hours", Usage: "no sends in this daily period of each recipient's local time, e.g. 21:00-08:00 (they wait, never dropped)"},
				&cli.StringFlag{Name: "allowed-days", Usage: "send only on these days of the recipient's week, e.g. mon-fri or mon-sat"},
				&cli.Float64Flag{Name: "max-error-rate", Usage: "pause the campaign when this share of its sends fail (0: the worker's default 0.25; -1: never)"},
			}, failoverFlags()...),
			Action: func(c *cli.Context) error {
				policy := dispatcher.Campaign{Channel: c.String("channel")}
				if err := failoverFields(c, &policy); err != nil {
					return err
				}
				if rc := remote(c); rc != nil {
					body := map[string]any{"name": c.String("name"), "segment": c.String("segment"),
						"template": c.String("template"), "fallback_template": c.String("fallback-template"), "channel": c.String("channel"),
						"senders": c.StringSlice("sender"), "purpose": c.String("purpose"), "track_links": c.Bool("track-links"),
						"max_error_rate": c.Float64("max-error-rate"), "routing": c.String("routing"), "quiet_hours": c.String("quiet-hours"),
						"holdout": c.Float64("holdout"), "allowed_days": c.String("allowed-days")}
					failoverBody(policy, body)
					cp, err := rc.CreateCampaign(c.Context, body)
					if err != nil {
						return remoteFlagErr(err, map[string]string{"senders": "sender"})
					}
					if jsonOut(c) {
						return printJSON(c.App.Writer, cp)
					}
					fmt.Fprintf(c.App.Writer, "campaign %s created (draft); launch it with: herald campaigns launch %s\n", cp.ID, cp.ID)
					return nil
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				cp, err := app.CreateCampaign(c.Context, d, comp, dispatcher.Campaign{Name: c.String("name"), Segment: c.String("segment"),
					Template: c.String("template"), FallbackTemplate: c.String("fallback-template"), Channel: policy.Channel, Senders: c.StringSlice("sender"), Purpose: c.String("purpose"), TrackLinks: c.Bool("track-links"),
					MaxErrorRate: c.Float64("max-error-rate"), Routing: c.String("routing"),
					QuietHours: c.String("quiet-hours"), Holdout: c.Float64("holdout"), AllowedDays: c.String("allowed-days"),
					Fallback: policy.Fallback, FallbackOn: policy.FallbackOn, NotDeliveredWithinMS: policy.NotDeliveredWithinMS})
				if err != nil {
					return flagError(err, map[string]string{"senders": "sender", "fallback": "channels"})
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, cp)
				}
				fmt.Fprintf(c.App.Writer, "campaign %s created (draft); launch it with: herald campaigns launch %s\n", cp.ID, cp.ID)
				return nil
			},
		}, {
			Name:      "dry-run",
			Usage:     "who would be sent, skipped and why, per sender, and the ETA from the senders' rates (changes nothing)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				var dr dispatcher.DryRun
				if rc := remote(c); rc != nil {
					if dr, err = rc.DryRun(c.Context, id); err != nil {
						return remoteErr(err)
					}
				} else {
					d, comp, err := components(c)
					if err != nil {
						return err
					}
					defer d.Close()
					if dr, err = app.DryRun(c.Context, comp, id); err != nil {
						return err
					}
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, dr)
				}
				w := c.App.Writer
				src := "evaluated now (not launched)"
				if dr.Snapshot {
					src = "the launch snapshot"
				}
				fmt.Fprintf(w, "campaign %s: audience %d (%s), would send %d, ETA %s\n", dr.Campaign, dr.Audience, src, dr.WouldSend, dr.ETA.Round(time.Second))
				if dr.FreeForm {
					fmt.Fprintln(w, "  free-form text: only contacts inside the 24h window get it")
				}
				reasons := make([]string, 0, len(dr.Skipped))
				for reason := range dr.Skipped {
					reasons = append(reasons, reason)
				}
				sort.Strings(reasons)
				for _, reason := range reasons {
					fmt.Fprintf(w, "  skipped %d: %s\n", dr.Skipped[reason], reason)
				}
				reasons = reasons[:0]
				for reason := range dr.Deferred {
					reasons = append(reasons, reason)
				}
				sort.Strings(reasons)
				for _, reason := range reasons {
					fmt.Fprintf(w, "  deferred %d: %s (sent later, when allowed)\n", dr.Deferred[reason], reason)
				}
				var rows [][]string
				for _, p := range dr.Senders {
					rows = append(rows, []string{p.ID, fmt.Sprint(p.Rate), fmt.Sprint(p.Contacts), p.ETA.Round(time.Second).String()})
				}
				table(w, []string{"SENDER", "RATE", "CONTACTS", "ETA"}, rows)
				return nil
			},
		}, {
			Name:      "pause",
			Usage:     "pause a running campaign (takes effect within ~2 s on every worker)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				return remoteTransition(c, idArg, "pause", (*dispatcher.Campaigns).Pause)
			},
		}, {
			Name:      "resume",
			Usage:     "resume a paused campaign where it stopped",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				return remoteTransition(c, idArg, "resume", (*dispatcher.Campaigns).Resume)
			},
		}, {
			Name:      "cancel",
			Usage:     "stop a campaign for good: remaining jobs are skipped (reason campaign_cancelled)",
			ArgsUsage: "ID",
			Action: func(c *cli.Context) error {
				return remoteTransition(c, idArg, "cancel", (*dispatcher.Campaigns).Cancel)
			},
		}, {
			Name:      "launch",
			Usage:     "snapshot the audience and queue one job per contact (launching twice is a no-op), now or --at a time",
			ArgsUsage: "ID",
			Flags: []cli.Flag{&cli.StringFlag{Name: "at", Usage: "schedule instead: an RFC 3339 time (2026-12-01T09:00:00+07:00) or a delay (+2h); " +
				"the scheduler (in every worker, or `herald scheduler`) launches it then"}},
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				var at time.Time
				if v := c.String("at"); v != "" {
					if d, ok := strings.CutPrefix(v, "+"); ok {
						dur, err := time.ParseDuration(d)
						if err != nil || dur < 0 {
							return usage("--at %q: want an RFC 3339 time or +DURATION, e.g. +2h", v)
						}
						at = time.Now().Add(dur)
					} else if at, err = time.Parse(time.RFC3339, v); err != nil {
						return usage("--at %q: want an RFC 3339 time or +DURATION, e.g. +2h", v)
					}
				}
				if rc := remote(c); rc != nil {
					st, err := rc.CampaignAction(c.Context, id, "launch", at)
					if err != nil {
						return remoteErr(err)
					}
					return printStatus(c, st)
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				if !at.IsZero() {
					st, err := comp.Campaigns.Schedule(c.Context, id, at)
					if err != nil {
						return err
					}
					return printStatus(c, st)
				}
				st, err := comp.Campaigns.Launch(c.Context, id, nil)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			},
		}, {
			Name:      "status",
			Usage:     "show a campaign's state and progress",
			ArgsUsage: "ID",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "follow with a live progress bar until it completes"}},
			Action: func(c *cli.Context) error {
				id, err := idArg(c)
				if err != nil {
					return err
				}
				if rc := remote(c); rc != nil && !c.Bool("watch") {
					st, err := rc.Campaign(c.Context, id)
					if err != nil {
						return remoteErr(err)
					}
					return printStatus(c, st)
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				if c.Bool("watch") {
					if err := app.WatchCampaign(c.Context, comp.Campaigns, id, c.App.ErrWriter); err != nil {
						return err
					}
				}
				st, err := comp.Campaigns.Status(c.Context, id)
				if err != nil {
					return err
				}
				return printStatus(c, st)
			},
		}, {
			Name:  "list",
			Usage: "list recent campaigns",
			Flags: []cli.Flag{&cli.Int64Flag{Name: "limit", Value: 50}},
			Action: func(c *cli.Context) error {
				var list []dispatcher.Status
				if rc := remote(c); rc != nil {
					var err error
					if list, err = rc.Campaigns(c.Context, int(c.Int64("limit"))); err != nil {
						return remoteErr(err)
					}
				} else {
					d, comp, err := components(c)
					if err != nil {
						return err
					}
					defer d.Close()
					if list, err = comp.Campaigns.List(c.Context, c.Int64("limit")); err != nil {
						return err
					}
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, list)
				}
				var rows [][]string
				for _, s := range list {
					rows = append(rows, []string{s.ID, s.Name, string(s.State), s.Template, fmt.Sprint(s.Audience), fmt.Sprint(s.Sent), fmt.Sprint(s.Skipped), fmt.Sprint(s.Failed)})
				}
				table(c.App.Writer, []string{"ID", "NAME", "STATE", "TEMPLATE", "AUDIENCE", "SENT", "SKIPPED", "FAILED"}, rows)
				return nil
			},
		}},
	}
}

func components(c *cli.Context) (*app.Deps, *app.Components, error) {
	return componentsFor(c, app.Needs{Kafka: c.Command.Name == "launch" || c.Command.Name == "resume" || c.Command.Name == "grant" || c.Command.Name == "revoke", Redis: true})
}

// componentsFor opens what the command needs and builds the domain objects on it.
func componentsFor(c *cli.Context, n app.Needs) (*app.Deps, *app.Components, error) {
	d, err := deps(c, n)
	if err != nil {
		return nil, nil, err
	}
	comp, err := d.Components()
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, comp, nil
}

func printStatus(c *cli.Context, st dispatcher.Status) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, st)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "campaign %s (%s): %s\n", st.ID, st.Name, st.State)
	if !st.ScheduledAt.IsZero() {
		fmt.Fprintf(w, "  launches  %s\n", st.ScheduledAt.Local().Format(time.RFC3339))
	}
	if st.PauseReason != "" {
		fmt.Fprintf(w, "  paused    %s\n", pauseReasonText(st.PauseReason))
	}
	fmt.Fprintf(w, "  segment   %s\n  template  %s\n  senders   %v\n", st.Segment, st.Template, st.Senders)
	fmt.Fprintf(w, "  audience %d  queued %d  sent %d  skipped %d  failed %d  done %d\n", st.Audience, st.Queued, st.Sent, st.Skipped, st.Failed, st.Done)
	return nil
}

func pauseReasonText(r string) string {
	switch {
	case r == "operator":
		return "by an operator"
	case r == "error_rate":
		return "automatically: too many sends failed (see `herald report funnel`); resume when fixed"
	case strings.HasPrefix(r, "provider:"):
		return "automatically: the provider refused with code " + strings.TrimPrefix(r, "provider:") + " (template or account problem); resume when fixed"
	}
	return r
}

// campaignTransition runs a lifecycle change (pause, resume, cancel) and prints the status.
func campaignTransition(c *cli.Context, idArg func(*cli.Context) (string, error), do func(*dispatcher.Campaigns, context.Context, string) (dispatcher.Status, error)) error {
	id, err := idArg(c)
	if err != nil {
		return err
	}
	d, comp, err := components(c)
	if err != nil {
		return err
	}
	defer d.Close()
	st, err := do(comp.Campaigns, c.Context, id)
	if err != nil {
		return err
	}
	return printStatus(c, st)
}

// flagError turns a use case's *app.FieldError into a usage error naming the flag
// (the field's name with dashes, or as renamed); other errors pass as they are.
func flagError(err error, rename map[string]string) error {
	var fe *app.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	name, _, _ := strings.Cut(fe.Field, "/")
	if r, ok := rename[name]; ok {
		name = r
	}
	return usage("--%s: %w", strings.ReplaceAll(name, "_", "-"), fe.Err)
}

// remoteTransition is pause, resume or cancel: through the API when remote, else do.
func remoteTransition(c *cli.Context, idArg func(*cli.Context) (string, error), action string, do func(*dispatcher.Campaigns, context.Context, string) (dispatcher.Status, error)) error {
	rc := remote(c)
	if rc == nil {
		return campaignTransition(c, idArg, do)
	}
	id, err := idArg(c)
	if err != nil {
		return err
	}
	st, err := rc.CampaignAction(c.Context, id, action, time.Time{})
	if err != nil {
		return remoteErr(err)
	}
	return printStatus(c, st)
}
