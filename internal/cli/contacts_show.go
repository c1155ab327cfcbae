package cli

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

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
			d, comp, err := componentsFor(c, app.Needs{Redis: true})
			if err != nil {
				return err
			}
			defer d.Close()
			arg := strings.TrimSpace(c.Args().First())
			var id uint32
			if rest, ok := strings.CutPrefix(arg, "#"); ok {
				n, err := strconv.ParseUint(rest, 10, 32)
				if err != nil || n == 0 {
					return usage("contacts show: %q: a contact id is # and a positive integer", arg)
				}
				id = uint32(n)
			} else if id, err = comp.Contacts.Lookup(c.Context, arg); err != nil {
				if errors.Is(err, segments.ErrNotFound) {
					return usage("%w", err)
				}
				return err
			}
			ct, err := app.GetContact(c.Context, comp, id)
			if errors.Is(err, segments.ErrNotFound) {
				return usage("%w", err)
			}
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
