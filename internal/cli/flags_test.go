package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestClientCommandTree walks the whole command tree: every command has
// help and examples, flag names are kebab-case, and a shorthand means the
// same flag everywhere (-g is always --resource-group, -n always --name).
func TestClientCommandTree(t *testing.T) {
	kebab := regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	// The shorthands az gives these flags; no other flag may take them.
	fixed := map[string]string{
		"g": "resource-group", "n": "name", "l": "location", "o": "output", "y": "yes", "z": "size-gb", "h": "help",
	}
	byShort := map[string]string{}
	clientGroups := map[string]bool{"group": true, "disk": true, "snapshot": true}
	var walk func(c *cobra.Command, client bool)
	walk = func(c *cobra.Command, client bool) {
		path := c.CommandPath()
		if c.Short == "" {
			t.Errorf("%s has no Short help", path)
		}
		if client {
			if c.Long == "" && c.Example == "" {
				t.Errorf("%s has neither Long help nor examples", path)
			}
			if c.Runnable() && !strings.Contains(c.Example, path) {
				t.Errorf("%s has no example of itself: %q", path, c.Example)
			}
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !kebab.MatchString(f.Name) {
				t.Errorf("%s: flag --%s is not kebab-case", path, f.Name)
			}
			if f.Usage == "" {
				t.Errorf("%s: flag --%s has no usage", path, f.Name)
			}
			if want, ok := fixed[f.Shorthand]; ok && f.Name != want {
				t.Errorf("%s: -%s is --%s, but it means --%s everywhere else", path, f.Shorthand, f.Name, want)
			}
			if f.Shorthand != "" {
				if prev, ok := byShort[f.Shorthand]; ok && prev != f.Name {
					t.Errorf("%s: -%s is --%s here and --%s elsewhere", path, f.Shorthand, f.Name, prev)
				}
				byShort[f.Shorthand] = f.Name
			}
			for short, name := range fixed {
				if f.Name == name && f.Shorthand != short && c.Name() != "serve" {
					t.Errorf("%s: --%s has shorthand %q, want -%s as everywhere else", path, f.Name, f.Shorthand, short)
				}
			}
		})
		if client && c.Runnable() {
			for _, global := range []string{"output", "query", "subscription", "only-show-errors", "data-dir", "credentials"} {
				if c.LocalFlags().Lookup(global) == nil && c.InheritedFlags().Lookup(global) == nil {
					t.Errorf("%s lacks the global flag --%s", path, global)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub, client || clientGroups[sub.Name()])
		}
	}
	walk(newRootCommand(&globals{}), false)
}

// TestClientCommandsExist pins the command set: az's, plus deltadisk's
// own (attach, detach, usage) and the data commands (upload, download,
// diff).
func TestClientCommandsExist(t *testing.T) {
	root := newRootCommand(&globals{})
	want := map[string][]string{
		"group":    {"create", "delete", "list", "show"},
		"disk":     {"attach", "create", "delete", "detach", "download", "grant-access", "list", "revoke-access", "show", "update", "upload"},
		"snapshot": {"copy", "create", "delete", "diff", "download", "grant-access", "list", "revoke-access", "show", "usage"},
	}
	for group, subs := range want {
		c, _, err := root.Find([]string{group})
		if err != nil || c.Name() != group {
			t.Errorf("no %s command: %v", group, err)
			continue
		}
		var got []string
		for _, s := range c.Commands() {
			got = append(got, s.Name())
		}
		if diff := cmp.Diff(subs, got); diff != "" {
			t.Errorf("%s subcommands (-want +got):\n%s", group, diff)
		}
	}
}

func TestHelp(t *testing.T) {
	s := newStack(t)
	for _, args := range [][]string{{"disk", "create", "--help"}, {"snapshot", "--help"}, {"disk"}} {
		r := s.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Examples:") || r.stderr != "" {
			t.Errorf("deltadisk %v: exit %d, stdout:\n%s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
	}
	s.fails(exitUsage, []string{`unknown command "frobnicate" for "deltadisk disk"`}, "disk", "frobnicate")
}
