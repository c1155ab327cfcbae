package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/apiclient"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/throttle"
)

func consentCommand() *cli.Command {
	change := func(action events.ConsentAction) *cli.Command {
		return &cli.Command{
			Name:      string(action),
			Usage:     string(action) + " a contact's consent (written to the ledger topic first, then applied)",
			ArgsUsage: "PHONE",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "channel", Value: "whatsapp", Usage: "channel"},
				&cli.StringFlag{Name: "purpose", Value: "marketing", Usage: "purpose: marketing, utility, ..."},
				&cli.StringFlag{Name: "source", Value: "api", Usage: "where it was collected: web_form, keyword, import, api, paper, ..."},
				&cli.StringFlag{Name: "wording", Usage: "the text the person agreed to"},
				&cli.StringFlag{Name: "wording-version", Usage: "version of that text"},
				&cli.StringFlag{Name: "ip", Usage: "IP address the consent came from"},
				&cli.StringFlag{Name: "user-agent", Usage: "user agent the consent came from"},
				&cli.StringFlag{Name: "actor", Value: "herald consent", Usage: "who records it"},
				&cli.StringFlag{Name: "proof", Usage: "a reference to the evidence (form submission id, document, ...)"},
				&cli.TimestampFlag{Name: "at", Layout: time.RFC3339, Usage: "when it was given (RFC 3339; default now)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("consent %s: give one PHONE", action)
				}
				if rc := remote(c); rc != nil {
					ch := apiclient.ConsentChange{Phone: c.Args().First(), Action: string(action), Channel: c.String("channel"), Purpose: c.String("purpose"),
						Source: c.String("source"), Wording: c.String("wording"), WordingVersion: c.String("wording-version"), IP: c.String("ip"),
						UserAgent: c.String("user-agent"), Proof: c.String("proof"), At: c.Timestamp("at")}
					recs, err := rc.Consent(c.Context, ch)
					if err != nil {
						var p *apiclient.Problem
						if errors.As(err, &p) && p.Refused() && len(p.Errors) > 0 && p.Errors[0].Pointer == "/phone" {
							return usage("%s: %s", c.Args().First(), p.Errors[0].Detail)
						}
						return remoteFlagErr(err, nil)
					}
					return printConsentChange(c, action, ch.Channel, ch.Purpose, recs)
				}
				d, comp, err := components(c)
				if err != nil {
					return err
				}
				defer d.Close()
				if comp.Ledger == nil {
					return usage("consent %s: the ledger is a Kafka topic: set --kafka-brokers or HERALD_KAFKA_BROKERS", action)
				}
				ch := throttle.Change{Channel: c.String("channel"), Purpose: c.String("purpose"), Action: action,
					Source: c.String("source"), Wording: c.String("wording"), WordingVersion: c.String("wording-version"),
					IP: c.String("ip"), UserAgent: c.String("user-agent"), Actor: c.String("actor"), Proof: c.String("proof")}
				if t := c.Timestamp("at"); t != nil {
					ch.Time = *t
				}
				recs, err := app.ChangeConsent(c.Context, comp, app.ContactRef{Phone: c.Args().First()}, ch)
				var fe *app.FieldError
				if errors.As(err, &fe) && fe.Field == "phone" {
					return usage("%s: %w", c.Args().First(), fe.Err)
				}
				if err != nil {
					return flagError(err, nil)
				}
				return printConsentChange(c, action, ch.Channel, ch.Purpose, recs)
			},
		}
	}
	return &cli.Command{
		Name:  "consent",
		Usage: "the consent ledger: grant, revoke, show, rebuild",
		Subcommands: []*cli.Command{change(events.Grant), change(events.Revoke), {
			Name:      "show",
			Usage:     "a contact's current consent per channel and purpose",
			ArgsUsage: "PHONE",
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "purpose", Value: cli.NewStringSlice("marketing", "utility"), Usage: "purposes to show"},
				&cli.StringFlag{Name: "channel", Value: "whatsapp"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("consent show: give one PHONE")
				}
				var rows []app.ConsentRow
				if rc := remote(c); rc != nil {
					id, err := rc.FindContact(c.Context, c.Args().First())
					if err == nil {
						rows, err = rc.ContactConsent(c.Context, id, []string{c.String("channel")}, c.StringSlice("purpose"))
					}
					if err := remoteContactErr(err); err != nil {
						return err
					}
				} else {
					d, comp, err := components(c)
					if err != nil {
						return err
					}
					defer d.Close()
					id, err := comp.Contacts.LookupPhone(c.Context, c.Args().First())
					if err != nil {
						return usage("%s: %w", c.Args().First(), err)
					}
					if rows, err = app.ContactConsent(c.Context, comp, id, []string{c.String("channel")}, c.StringSlice("purpose")); err != nil {
						return flagError(err, nil)
					}
				}
				var sup *throttle.Suppression
				if len(rows) > 0 {
					sup = rows[0].Suppression
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, rows)
				}
				var out [][]string
				for _, r := range rows {
					state := "no consent"
					switch {
					case r.Granted:
						state = "granted"
					case r.RecordID != "":
						state = "revoked"
					}
					out = append(out, []string{fmt.Sprint(r.ContactID), r.Channel, r.Purpose, state, r.RecordID})
				}
				table(c.App.Writer, []string{"CONTACT", "CHANNEL", "PURPOSE", "STATE", "LEDGER RECORD"}, out)
				if sup != nil {
					fmt.Fprintf(c.App.Writer, "\nsuppressed on %s as %s until %s (since %s: %s): skipped whatever its consent\n",
						c.String("channel"), sup.Reason, sup.Until.UTC().Format(time.RFC3339), sup.At.UTC().Format(time.RFC3339), sup.Proof)
				}
				return nil
			},
		}, {
			Name:  "rebuild",
			Usage: "rebuild the Redis consent state from the ledger topic (run while nothing sends)",
			Action: func(c *cli.Context) error {
				d, comp, err := componentsFor(c, app.Needs{Kafka: true, Redis: true})
				if err != nil {
					return err
				}
				defer d.Close()
				rep, err := comp.Ledger.Rebuild(c.Context, d.Cfg.KafkaBrokers, d.Topics.Consent)
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, rep)
				}
				fmt.Fprintf(c.App.Writer, "rebuilt consent of %d contacts from %d ledger records (%d unreadable, skipped)\n", rep.Contacts, rep.Records, rep.Undecoded)
				return nil
			},
		}},
	}
}

// printConsentChange prints what consent grant or revoke recorded.
func printConsentChange(c *cli.Context, action events.ConsentAction, channel, purpose string, recs []events.ConsentRecord) error {
	if jsonOut(c) {
		return printJSON(c.App.Writer, recs)
	}
	if len(recs) == 0 {
		fmt.Fprintf(c.App.Writer, "no change: %s already has that consent state for %s/%s\n", c.Args().First(), channel, purpose)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "recorded %s for contact %d (%s/%s): record %s, hash %s\n", action, recs[0].ContactID, channel, purpose, recs[0].ID, recs[0].Hash[:16])
	return nil
}
