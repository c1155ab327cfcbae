package cli

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/apiclient"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

// contactsShowCommand is `herald contacts show`: one contact, found by any identity.
func contactsShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a contact: its identities (phone, email, Telegram chat id, LINE user id), profile and tags",
		ArgsUsage: "PHONE, EMAIL, telegram:CHAT_ID, line:USER_ID or #CONTACT_ID",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("contacts show: give one PHONE, EMAIL, telegram:CHAT_ID, line:USER_ID or #CONTACT_ID")
			}
			ct, err := showContact(c, strings.TrimSpace(c.Args().First()))
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c.App.Writer, ct)
			}
			rows := [][]string{{"id", strconv.FormatUint(uint64(ct.ID), 10)}}
			for _, f := range [][2]string{{"phone", ct.Phone}, {"email", ct.Email}, {"telegram_chat_id", ct.TelegramChatID},
				{"line_user_id", ct.LineUserID}, {"name", ct.Name}, {"country", ct.Country}, {"locale", ct.Locale}, {"timezone", ct.TimeZone}} {
				if f[1] != "" {
					rows = append(rows, []string{f[0], f[1]})
				}
			}
			rows = append(rows, []string{"tags", strings.Join(ct.Tags, ",")})
			keys := make([]string, 0, len(ct.Attrs))
			for k := range ct.Attrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				rows = append(rows, []string{"attributes." + k, ct.Attrs[k]})
			}
			table(c.App.Writer, []string{"FIELD", "VALUE"}, rows)
			return nil
		},
	}
}

// showContact finds a contact by identity or #id, through the API when the CLI is
// remote: an unknown one is a usage error either way.
func showContact(c *cli.Context, arg string) (segments.Contact, error) {
	if rc := remote(c); rc != nil {
		id, err := rc.FindContact(c.Context, arg)
		if err != nil {
			return segments.Contact{}, remoteContactErr(err)
		}
		ct, err := rc.Contact(c.Context, id)
		return ct, remoteContactErr(err)
	}
	d, comp, err := componentsFor(c, app.Needs{Redis: true})
	if err != nil {
		return segments.Contact{}, err
	}
	defer d.Close()
	id, err := contactRef(c, comp, arg)
	if err != nil {
		return segments.Contact{}, err
	}
	ct, err := app.GetContact(c.Context, comp, id)
	if errors.Is(err, segments.ErrNotFound) {
		return ct, usage("%w", err)
	}
	return ct, err
}

// contactRef is the id of the contact an argument names: #ID, or an identity (phone,
// email, telegram:CHAT_ID, line:USER_ID). An unknown one is a usage error.
func contactRef(c *cli.Context, comp *app.Components, arg string) (uint32, error) {
	if rest, ok := strings.CutPrefix(arg, "#"); ok {
		n, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || n == 0 {
			return 0, usage("%q: a contact id is # and a positive integer", arg)
		}
		return uint32(n), nil
	}
	id, err := app.FindContact(c.Context, comp, arg)
	if errors.Is(err, segments.ErrNotFound) {
		return 0, usage("%w", err)
	}
	return id, err
}

// remoteContactErr maps the API's answer about a contact as the CLI reports it
// locally: an unknown contact (404) or a refused identity is a usage error (exit 2).
func remoteContactErr(err error) error {
	var p *apiclient.Problem
	if errors.As(err, &p) && p.Status == 404 {
		return usage("%s", p.Error())
	}
	if err != nil {
		return remoteErr(err)
	}
	return nil
}
