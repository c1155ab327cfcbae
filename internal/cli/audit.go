package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/jsonx"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "compliance proof from ClickHouse: consent at send time, the 24h window, per-contact history",
		Subcommands: []*cli.Command{{
			Name: "campaign",
			Usage: "prove every sent message of a campaign had consent for its channel and purpose at send time " +
				"and no free-form message left the 24h window; exit 1 if any message did not",
			ArgsUsage: "ID",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "purpose", Usage: "consent purpose the campaign was sent under (default: the campaign's, read from Redis when HERALD_REDIS_URL is set, else marketing)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("audit campaign: give one campaign ID")
				}
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, conn, err := clickhouseFor(c, app.Needs{ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				purpose, err := campaignPurpose(c, d)
				if err != nil {
					return err
				}
				rep, err := analytics.AuditCampaign(c.Context, conn, c.Args().First(), purpose)
				if err != nil {
					return err
				}
				if err := printAudit(c.App.Writer, format, rep); err != nil {
					return err
				}
				if n := len(rep.Violations); n > 0 {
					return fmt.Errorf("campaign %s: %d violations", rep.Campaign, n)
				}
				return nil
			},
		}, {
			Name: "contact",
			Usage: "a contact's consent history with its hash chain verified and checked against the ledger's signed checkpoints, every message sent to it, " +
				"and why each campaign did or did not send (skipped, deferred until when, failed); exit 1 if the chain is broken or does not match a checkpoint",
			ArgsUsage: "PHONE",
			Flags:     []cli.Flag{publicKeyFlag()},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usage("audit contact: give one phone number (E.164, e.g. +66812345678)")
				}
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				if format == "csv" {
					return usage("audit contact: --output csv is not supported here; use table or json")
				}
				d, err := deps(c, app.Needs{Redis: true, ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				rdb, err := d.Redis()
				if err != nil {
					return err
				}
				id, err := segments.NewStore(rdb, d.Cfg.Prefix).LookupPhone(c.Context, c.Args().First())
				if errors.Is(err, segments.ErrNotFound) {
					return usage("%w", err)
				}
				if err != nil {
					return err
				}
				conn, err := d.ClickHouse(c.Context)
				if err != nil {
					return err
				}
				keys, err := trustedKeys(c, d.Cfg)
				if err != nil {
					return err
				}
				a, err := analytics.AuditContact(c.Context, conn, id, keys...)
				if err != nil {
					return err
				}
				if err := addSuppressions(c.Context, d, id, &a); err != nil {
					return err
				}
				if format == "json" {
					if err := printJSON(c.App.Writer, a); err != nil {
						return err
					}
				} else {
					printContactAudit(c.App.Writer, c.Args().First(), a)
				}
				if !a.ChainOK() {
					return fmt.Errorf("contact %d: consent hash chain broken at record %d (%s)", id, a.ChainBroken, a.Consent[a.ChainBroken].ID)
				}
				if a.Ledger.Failed() {
					return fmt.Errorf("contact %d: consent chain %s against the ledger checkpoints: %s", id, a.Ledger.Status, a.Ledger.Detail)
				}
				return nil
			},
		}, {
			Name: "ledger",
			Usage: "verify every signed checkpoint of the consent ledger with the public key, then every contact's chain in consent_log against them " +
				"(intact, and holding each checkpointed head at its position); names each contact whose chain was rewritten or truncated; exit 1 if anything fails",
			Flags: []cli.Flag{publicKeyFlag(),
				&cli.DurationFlag{Name: "max-age", Usage: "fail when the latest checkpoint that verifies is older than this (e.g. 2h with hourly checkpoints); 0: not checked"}},
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, conn, err := clickhouseFor(c, app.Needs{ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				keys, err := trustedKeys(c, d.Cfg)
				if err != nil {
					return err
				}
				if len(keys) == 0 {
					return usage("audit ledger: give the checkpoints' public key with --public-key or HERALD_LEDGER_PUBLIC_KEY")
				}
				rep, err := analytics.AuditLedger(c.Context, conn, analytics.LedgerAuditOptions{Keys: keys, MaxAge: c.Duration("max-age")})
				if err != nil {
					return err
				}
				if err := printLedgerAudit(c.App.Writer, format, rep); err != nil {
					return err
				}
				if !rep.OK() {
					return ledgerAuditError(rep)
				}
				return nil
			},
		}, {
			Name:  "export",
			Usage: "every message sent in a time range with the consent record it relied on (CSV, or JSON lines with --output json)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "from", Required: true, Usage: "start, inclusive: RFC 3339 or YYYY-MM-DD (UTC)"},
				&cli.StringFlag{Name: "to", Required: true, Usage: "end, exclusive: RFC 3339 or YYYY-MM-DD (UTC)"},
			},
			Action: func(c *cli.Context) error {
				from, err := parseWhen("--from", c.String("from"))
				if err != nil {
					return err
				}
				to, err := parseWhen("--to", c.String("to"))
				if err != nil {
					return err
				}
				if !from.Before(to) {
					return usage("--from %s is not before --to %s", c.String("from"), c.String("to"))
				}
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				d, conn, err := clickhouseFor(c, app.Needs{ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				if format == "json" {
					enc := json.NewEncoder(c.App.Writer)
					return analytics.ExportSent(c.Context, conn, from, to, func(r analytics.SentRecord) error { return enc.Encode(jsonx.Output(r)) })
				}
				w := csv.NewWriter(c.App.Writer)
				if err := w.Write(sentRecordHeader); err != nil {
					return err
				}
				err = analytics.ExportSent(c.Context, conn, from, to, func(r analytics.SentRecord) error {
					return w.Write(sentRecordRow(r))
				})
				w.Flush()
				if err != nil {
					return err
				}
				return w.Error()
			},
		}},
	}
}

// campaignPurpose is --purpose, else the campaign's own purpose when Redis is
// configured, else marketing (the campaigns default).
func campaignPurpose(c *cli.Context, d *app.Deps) (string, error) {
	if p := c.String("purpose"); p != "" {
		return p, nil
	}
	if d.Cfg.RedisURL == "" {
		return "marketing", nil
	}
	rdb, err := d.Redis()
	if err != nil {
		return "", err
	}
	cp, err := dispatcher.NewCampaigns(dispatcher.CampaignsConfig{Redis: rdb, Prefix: d.Cfg.Prefix}).Get(c.Context, c.Args().First())
	if errors.Is(err, dispatcher.ErrNotFound) {
		return "", usage("%w: give its consent purpose with --purpose", err)
	}
	if err != nil {
		return "", fmt.Errorf("purpose of campaign %s (or give --purpose): %w", c.Args().First(), err)
	}
	if cp.Purpose == "" {
		return "marketing", nil
	}
	return cp.Purpose, nil
}

// outputFormat returns --output: table, json or csv. The global flag's validation
// (config) knows only table and json, so csv is read here and the flag reset to table.
func outputFormat(c *cli.Context) (string, error) {
	switch f := c.String("output"); f {
	case "table", "json":
		return f, nil
	case "csv":
		if err := c.Set("output", "table"); err != nil {
			return "", err
		}
		return f, nil
	default:
		return "", usage("--output %q: want table, json or csv", f)
	}
}

// parseWhen reads an RFC 3339 time or a YYYY-MM-DD date (UTC midnight).
func parseWhen(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, usage("%s %q: want RFC 3339 (2025-03-10T09:00:00Z) or a date (2025-03-10)", flag, s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

var sentRecordHeader = []string{"event_id", "campaign_id", "contact_id", "sender_id", "channel", "template", "variant",
	"provider_msg_id", "free_form", "sent_at", "consent_ref", "consent_action", "consent_purpose", "consent_source",
	"consent_proof", "consent_at", "consent_hash"}

func sentRecordRow(r analytics.SentRecord) []string {
	return []string{r.EventID, r.CampaignID, strconv.FormatUint(uint64(r.ContactID), 10), r.SenderID, r.Channel, r.Template,
		r.Variant, r.ProviderMsgID, strconv.FormatBool(r.FreeForm), fmtTime(r.SentAt), r.ConsentRef, r.ConsentAction,
		r.ConsentPurpose, r.ConsentSource, r.ConsentProof, fmtTime(r.ConsentAt), r.ConsentHash}
}

func printAudit(w io.Writer, format string, rep analytics.AuditReport) error {
	switch format {
	case "json":
		return printJSON(w, rep)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"rule", "event_id", "contact_id", "sender_id", "channel", "sent_at", "consent_ref", "detail"})
		for _, v := range rep.Violations {
			cw.Write([]string{v.Rule, v.EventID, strconv.FormatUint(uint64(v.ContactID), 10), v.SenderID, v.Channel,
				fmtTime(v.SentAt), v.ConsentRef, v.Detail})
		}
		cw.Flush()
		return cw.Error()
	}
	fmt.Fprintf(w, "campaign %s, purpose %s: %d sent messages checked (%d free-form), %d violations\n",
		rep.Campaign, rep.Purpose, rep.Sent, rep.FreeForm, len(rep.Violations))
	if len(rep.Violations) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(rep.Violations))
	for _, v := range rep.Violations {
		rows = append(rows, []string{v.Rule, strconv.FormatUint(uint64(v.ContactID), 10), v.SenderID, fmtTime(v.SentAt), v.ConsentRef, v.Detail})
	}
	table(w, []string{"RULE", "CONTACT", "SENDER", "SENT AT", "CONSENT REF", "DETAIL"}, rows)
	return nil
}

// addSuppressions fills the contact's suppressions in force on every channel.
func addSuppressions(ctx context.Context, d *app.Deps, id uint32, a *analytics.ContactAudit) error {
	comp, err := d.Components()
	if err != nil {
		return err
	}
	a.Suppressions = map[string]throttle.Suppression{}
	for _, ch := range app.Channels {
		sups, err := comp.Policy.Suppressions(ctx, ch, []uint32{id})
		if err != nil {
			return err
		}
		if sups[0].Active(time.Now()) {
			a.Suppressions[ch] = sups[0]
		}
	}
	return nil
}

func printContactAudit(w io.Writer, phone string, a analytics.ContactAudit) {
	chain := "verified"
	if !a.ChainOK() {
		chain = fmt.Sprintf("BROKEN at record %d (%s)", a.ChainBroken, a.Consent[a.ChainBroken].ID)
	}
	fmt.Fprintf(w, "contact %d (%s): %d consent records, hash chain %s\n", a.ContactID, phone, len(a.Consent), chain)
	fmt.Fprintf(w, "ledger checkpoint: %s\n", contactLedgerLine(a.Ledger))
	if len(a.Consent) > 0 {
		rows := make([][]string, 0, len(a.Consent))
		for i, r := range a.Consent {
			mark := "ok"
			if !a.ChainOK() && i >= a.ChainBroken {
				mark = "UNVERIFIED"
			}
			rows = append(rows, []string{fmtTime(r.Time), r.Channel, r.Purpose, string(r.Action), r.Source, r.Proof, r.ID, shortHash(r.Hash), mark})
		}
		table(w, []string{"TIME", "CHANNEL", "PURPOSE", "ACTION", "SOURCE", "PROOF", "RECORD", "HASH", "CHAIN"}, rows)
	}
	for ch, sup := range a.Suppressions {
		fmt.Fprintf(w, "\nsuppressed on %s as %s until %s (since %s: %s)\n", ch, sup.Reason, fmtTime(sup.Until), fmtTime(sup.At), sup.Proof)
	}
	fmt.Fprintf(w, "\n%d messages sent\n", len(a.Messages))
	if len(a.Messages) > 0 {
		rows := make([][]string, 0, len(a.Messages))
		for _, m := range a.Messages {
			kind := "template"
			if m.FreeForm {
				kind = "free-form"
			}
			rows = append(rows, []string{fmtTime(m.SentAt), m.CampaignID, m.SenderID, m.Channel, m.Template, kind, m.ConsentRef, m.ConsentAction, fmtTime(m.ConsentAt)})
		}
		table(w, []string{"SENT AT", "CAMPAIGN", "SENDER", "CHANNEL", "TEMPLATE", "TYPE", "CONSENT REF", "CONSENT", "CONSENT AT"}, rows)
	}
	fmt.Fprintf(w, "\n%d campaigns: why each did or did not send\n", len(a.Campaigns))
	if len(a.Campaigns) > 0 {
		rows := make([][]string, 0, len(a.Campaigns))
		for _, o := range a.Campaigns {
			why := o.Reason
			if o.ErrorCode != 0 {
				why = "error " + strconv.Itoa(int(o.ErrorCode))
			}
			last := ""
			if d := o.LastDeferral; d != nil && o.Outcome != analytics.OutcomeDeferred {
				last = fmt.Sprintf("%s until %s", d.Reason, fmtTime(d.Until))
			}
			rows = append(rows, []string{o.CampaignID, o.Outcome, why, fmtTime(o.At), fmtTime(o.Until), strconv.Itoa(o.Deferrals), last})
		}
		table(w, []string{"CAMPAIGN", "OUTCOME", "WHY", "AT", "DUE AGAIN", "DEFERRALS", "EARLIER DEFERRAL"}, rows)
	}
	var decisions [][]string
	for _, e := range a.History {
		switch e.Kind {
		case "skipped", "deferred", "failed":
			why := e.Reason
			if e.Kind == "failed" {
				why = "error " + strconv.Itoa(int(e.ErrorCode))
				if e.Retryable {
					why += " (retryable)"
				}
			}
			decisions = append(decisions, []string{fmtTime(e.At), e.CampaignID, e.Kind, why, fmtTime(e.Until), e.SenderID})
		}
	}
	if len(decisions) > 0 {
		fmt.Fprintf(w, "\n%d skips, deferrals and failures\n", len(decisions))
		table(w, []string{"AT", "CAMPAIGN", "KIND", "WHY", "DUE AGAIN", "SENDER"}, decisions)
	}
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// contactLedgerLine says how a contact's chain stands against the ledger checkpoints.
func contactLedgerLine(l analytics.ContactLedger) string {
	sig := "signature and digest verified"
	if !l.SignaturesChecked {
		sig = "signature not checked: give --public-key"
	}
	cp := l.Checkpoint
	switch {
	case l.Status == analytics.LedgerNotCheckpointed:
		return "no checkpoint lists this chain yet (it began after the latest checkpoint)"
	case l.Status == analytics.LedgerOK && cp != nil:
		return fmt.Sprintf("matches the latest checkpoint listing it, %d of %s (%d records ending in %s; %s)",
			cp.Seq, fmtTime(cp.At), cp.Records, shortHash(cp.Head), sig)
	case l.Status == analytics.LedgerChainBroken:
		return "not compared: the chain itself is broken (" + l.Detail + ")"
	}
	return fmt.Sprintf("%s: %s (%s)", strings.ToUpper(strings.ReplaceAll(l.Status, "_", " ")), l.Detail, sig)
}

func printLedgerAudit(w io.Writer, format string, rep analytics.LedgerAudit) error {
	switch format {
	case "json":
		return printJSON(w, rep)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"kind", "contact_id", "checkpoint_id", "seq", "status", "detail"})
		for _, f := range rep.CheckpointFailures {
			cw.Write([]string{"checkpoint", "", f.CheckpointID, seqText(f.Seq), f.Problem, f.Detail})
		}
		for _, f := range rep.ChainFailures {
			cw.Write([]string{"chain", strconv.FormatUint(uint64(f.ContactID), 10), "", seqText(f.CheckpointSeq), f.Status, f.Detail})
		}
		cw.Flush()
		return cw.Error()
	}
	latest := "none verifies"
	if l := rep.Latest; l != nil {
		latest = fmt.Sprintf("latest %d at %s, key %s", l.Seq, fmtTime(l.At), l.KeyID)
	}
	fmt.Fprintf(w, "ledger: %d checkpoints, %d verified (%s); %d chains checked, %d ok (%d not in a checkpoint yet), %d failed\n",
		rep.Checkpoints, rep.CheckpointsVerified, latest, rep.ChainsChecked, rep.ChainsOK, rep.ChainsNotCheckpointed, len(rep.ChainFailures))
	if len(rep.CheckpointFailures) > 0 {
		rows := make([][]string, 0, len(rep.CheckpointFailures))
		for _, f := range rep.CheckpointFailures {
			rows = append(rows, []string{seqText(f.Seq), f.CheckpointID, fmtTime(f.At), f.KeyID, f.Problem, f.Detail})
		}
		fmt.Fprintln(w)
		table(w, []string{"CHECKPOINT", "ID", "AT", "KEY", "PROBLEM", "DETAIL"}, rows)
	}
	if len(rep.ChainFailures) > 0 {
		rows := make([][]string, 0, len(rep.ChainFailures))
		for _, f := range rep.ChainFailures {
			rows = append(rows, []string{strconv.FormatUint(uint64(f.ContactID), 10), f.Status, strconv.Itoa(f.Records), seqText(f.CheckpointSeq), f.Detail})
		}
		fmt.Fprintln(w)
		table(w, []string{"CONTACT", "STATUS", "RECORDS", "CHECKPOINT", "DETAIL"}, rows)
	}
	return nil
}

func seqText(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return strconv.FormatUint(seq, 10)
}

// ledgerAuditError names what failed: the checkpoints and the first contacts.
func ledgerAuditError(rep analytics.LedgerAudit) error {
	var contacts []string
	for i, f := range rep.ChainFailures {
		if i == 20 {
			contacts = append(contacts, fmt.Sprintf("and %d more", len(rep.ChainFailures)-i))
			break
		}
		contacts = append(contacts, strconv.FormatUint(uint64(f.ContactID), 10))
	}
	msg := fmt.Sprintf("ledger audit failed: %d checkpoint problems, %d chains failed", len(rep.CheckpointFailures), len(rep.ChainFailures))
	if len(contacts) > 0 {
		msg += " (contacts " + strings.Join(contacts, ", ") + ")"
	}
	return errors.New(msg)
}
