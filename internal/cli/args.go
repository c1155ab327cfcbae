package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a leaf command's flags in front of its positional arguments, so that
// `herald contacts import FILE --default-region TH` works as users expect (urfave/cli v2
// stops reading flags at the first positional argument). Everything after "--" is left
// as it is.
func interspersed(a *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	cmds, flags := a.Commands, a.Flags
	// Walk global flags and command names down to the leaf command.
	for len(rest) > 0 {
		arg := rest[0]
		if strings.HasPrefix(arg, "-") && arg != "-" && arg != "--" {
			n := flagArity(flags, arg)
			take := min(1+n, len(rest))
			out = append(out, rest[:take]...)
			rest = rest[take:]
			continue
		}
		c := findCommand(cmds, arg)
		if c == nil {
			break
		}
		out = append(out, arg)
		rest = rest[1:]
		cmds, flags = c.Subcommands, c.Flags
		if len(cmds) == 0 {
			break
		}
	}
	var global, fl, pos []string
	for i := 0; i < len(rest); i++ {
		arg := rest[i]
		if arg == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		if strings.HasPrefix(arg, "-") && arg != "-" {
			// A global flag given after the command (herald report funnel ... -o json)
			// goes back in front of the command, where urfave/cli reads it.
			dst, set := &fl, flags
			if !hasFlag(flags, arg) && hasFlag(a.Flags, arg) {
				dst, set = &global, a.Flags
			}
			take := min(i+1+flagArity(set, arg), len(rest))
			*dst = append(*dst, rest[i:take]...)
			i = take - 1
			continue
		}
		pos = append(pos, arg)
	}
	out = append(append([]string{out[0]}, global...), out[1:]...)
	out = append(out, fl...)
	return append(out, pos...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
		for _, a := range c.Aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// flagArity is how many following arguments a flag consumes: 0 for booleans, help and
// "--name=value", else 1. Unknown flags are assumed to take none (urfave reports them).
func flagArity(flags []cli.Flag, arg string) int {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return 0
	}
	if name == "help" || name == "h" {
		return 0
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if _, ok := f.(*cli.BoolFlag); ok {
					return 0
				}
				return 1
			}
		}
	}
	return 0
}

func hasFlag(flags []cli.Flag, arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
