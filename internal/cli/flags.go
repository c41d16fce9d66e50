package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// The flags below mean the same in every command that has them, with the
// same names and shorthands as az's.

func addGroupFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "resource-group", "g", "", "name of the resource group")
}

func addNameFlag(fs *pflag.FlagSet, p *string, what string) {
	fs.StringVarP(p, "name", "n", "", "name of the "+what)
}

func addLocationFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "location", "l", "", "location, such as eastus (default: the resource group's location)")
}

func addTagsFlag(fs *pflag.FlagSet, p *[]string) {
	fs.StringArrayVar(p, "tags", nil, `space-separated tags: key[=value] ... ("" clears them)`)
}

func addYesFlag(fs *pflag.FlagSet, p *bool) {
	fs.BoolVarP(p, "yes", "y", false, "do not prompt for confirmation")
}

func addNoWaitFlag(fs *pflag.FlagSet, p *bool) {
	fs.BoolVar(p, "no-wait", false, "do not wait for the operation to finish, and print nothing")
}

// require marks flags required. clientOptions.prepare reports the missing
// ones as az does.
func require(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err) // a flag that does not exist: a bug in the command
		}
	}
}

// showHelp is the RunE of a command group run without a subcommand.
func showHelp(cmd *cobra.Command, _ []string) error { return cmd.Help() }

// tagArgs is the Args check of commands with --tags: az takes
// "--tags a=b c=d", so the words after the flag's first value arrive as
// arguments, and are tags as long as they are key=value.
func tagArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if !cmd.Flags().Changed("tags") || slices.ContainsFunc(args, func(a string) bool { return !strings.Contains(a, "=") }) {
		return fmt.Errorf("unrecognized arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// parseTags turns --tags values (and the key=value arguments that
// follow them) into tags; nil when none were given, an empty map for
// --tags "".
func parseTags(values, args []string) map[string]*string {
	if values == nil && len(args) == 0 {
		return nil
	}
	tags := make(map[string]*string)
	for _, v := range append(slices.Clone(values), args...) {
		if v == "" {
			continue
		}
		k, val, _ := strings.Cut(v, "=")
		tags[k] = &val
	}
	return tags
}

// confirm asks on the terminal before a destructive command, unless --yes
// was given; without a terminal to ask on, it refuses, as az does.
func (g *globals) confirm(yes bool, question string) error {
	if yes {
		return nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return usagef("%s, and there is no terminal to confirm on: pass --yes", question)
	}
	fmt.Fprintf(g.stderr, "%s. Are you sure you want to perform this operation? (y/n): ", question)
	line, err := bufio.NewReader(io.LimitReader(f, 1024)).ReadString('\n')
	if err != nil && line == "" {
		return err
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return fmt.Errorf("operation cancelled")
	}
	return nil
}

// oneOf canonicalises a flag's value against its choices, case-insensitively.
func oneOf(flag, value string, choices ...string) (string, error) {
	for _, c := range choices {
		if strings.EqualFold(value, c) {
			return c, nil
		}
	}
	return "", usagef("argument %s: invalid choice: '%s' (choose from %s)", flag, value, strings.Join(choices, ", "))
}
