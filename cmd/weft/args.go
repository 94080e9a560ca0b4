package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst returns args (os.Args) with the arguments of the subcommand
// they name reordered so that its flags come before its positional
// arguments: urfave/cli v2 stops reading flags at the first positional
// one, so `weft endpoint add w1 --iface wlw1` would otherwise take
// --iface as a second name. The order among flags and among positional
// arguments is kept; everything after "--" stays positional. Flags
// that take a value keep the value after them (a flag is known to take
// one unless it is a BoolFlag of that command).
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	var leaf *cli.Command
	i := 1
	// Walk the command path while the arguments name subcommands.
	for i < len(args) {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		out = append(out, args[i])
		leaf, cmds = c, c.Subcommands
		i++
		if len(cmds) == 0 {
			break
		}
	}
	if leaf == nil || i >= len(args) {
		return args
	}
	var flags, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(leaf, strings.TrimLeft(a, "-")) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(append(out, flags...), pos...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether c has a flag called name that takes a value.
func takesValue(c *cli.Command, name string) bool {
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
