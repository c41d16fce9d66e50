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
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, getenv: os.Getenv, homeDir: os.UserHomeDir}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "ERROR:", err)
		return 1
	}
	return 0
}

// globals holds what every command shares. The process's environment is
// reached through it, so that tests can run commands in-process with
// their own.
type globals struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	homeDir        func() (string, error)
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "deltadisk",
		Short:         "Managed block disks with incremental snapshots",
		Long:          "deltadisk serves managed disks and incremental snapshots over Azure's wire protocol.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newServeCommand(g))
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
