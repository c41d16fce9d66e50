// Package cli holds deltadisk's command tree: the server command and the
// az-shaped client commands. It is a library so that tests can run any
// command in-process; main only wires signals and the exit code.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Main runs the command line args and returns the process exit code.
//
// The exit codes are az's, so that scripts can trust them: 0 on success,
// 2 for a mistake in the command line, 3 when the resource does not
// exist, 1 for any other failure (130 when interrupted).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, stdin: os.Stdin, getenv: os.Getenv, homeDir: os.UserHomeDir}
	return g.run(ctx, args)
}

// run runs one command line and returns its exit code.
func (g *globals) run(ctx context.Context, args []string) int {
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return report(ctx, g.stderr, cmd, err, !g.running)
}

// markRunning makes every command record in g that it began to run, so
// that an error from before (cobra's parsing of the command line) is
// told apart as a usage error.
func markRunning(c *cobra.Command, g *globals) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			g.running = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRunning(sub, g)
	}
}

// globals holds what every command shares. The process's environment is
// reached through it, so that tests can run commands in-process with
// their own.
type globals struct {
	stdout, stderr io.Writer
	stdin          io.Reader // confirmation prompts, on a terminal only
	getenv         func(string) string
	homeDir        func() (string, error)

	// client holds the client commands' shared flags.
	client clientOptions
	// running is set once a command's RunE starts.
	running bool
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "deltadisk",
		Short:         "Managed block disks with incremental snapshots",
		Long:          "deltadisk serves managed disks and incremental snapshots over Azure's wire protocol.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newServeCommand(g), newAzSetupCommand(g), newAdminCommand(g),
		newGroupCommand(g), newDiskCommand(g), newSnapshotCommand(g))
	markRunning(root, g)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "deltadisk", version())
			return err
		},
	}
}

// version reports the module version stamped by the go command, and the VCS
// revision when the binary was built from a checkout.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
