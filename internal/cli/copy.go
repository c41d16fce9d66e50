package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type snapshotCopyOptions struct {
	snapshotRef
	region, targetGroup, targetName string
	noWait                          bool
}

func (o *snapshotCopyOptions) addFlags(fs *pflag.FlagSet) {
	o.snapshotRef.addFlags(fs)
	fs.StringVar(&o.region, "to-region", "", "region to copy the incremental snapshot into")
	fs.StringVar(&o.targetGroup, "target-resource-group", "", "resource group of the copy (default: the snapshot's)")
	fs.StringVar(&o.targetName, "target-name", "", "name of the copy (default: the snapshot's name, a dash and the region)")
	addNoWaitFlag(fs, &o.noWait)
}

func newSnapshotCopyCommand(g *globals) *cobra.Command {
	var opts snapshotCopyOptions
	cmd := &cobra.Command{
		Use:   "copy",
		Short: "Copy an incremental snapshot to another region, shipping only the changes",
		Long: `Copy an incremental snapshot to another region (createOption CopyStart).

The copy of a disk's first snapshot carries what it holds; each later one
carries only what changed since the snapshot copied before it, and the
copies form the target region's family of the disk. Copies of one disk run
one at a time, in creation order. The command follows the copy's
completionPercent (a progress bar on a terminal) and prints the copy.`,
		Example: `  deltadisk snapshot copy -g rg1 -n snap1 --to-region westus
  deltadisk snapshot copy -g rg1 -n snap2 --to-region westus --target-resource-group dr --no-wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotCopy(cmd.Context(), g, cmd, opts)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name", "to-region")
	return cmd
}

// copyPoll is how often the command reads the copy's progress.
const copyPoll = 250 * time.Millisecond

func runSnapshotCopy(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotCopyOptions) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	src, err := c.snapshots.Get(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	group, name := opts.targetGroup, opts.targetName
	if group == "" {
		group = opts.group
	}
	if name == "" {
		name = opts.name + "-" + strings.ToLower(strings.ReplaceAll(opts.region, " ", ""))
	}
	snap := armcompute.Snapshot{
		Location: &opts.region,
		Properties: &armcompute.SnapshotProperties{
			CreationData: &armcompute.CreationData{CreateOption: new(armcompute.DiskCreateOptionCopyStart), SourceResourceID: src.ID},
			Incremental:  new(true),
		},
	}
	poller, err := c.snapshots.BeginCreateOrUpdate(ctx, group, name, snap, nil)
	if err != nil {
		return err
	}
	if _, err := poller.PollUntilDone(ctx, nil); err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if !opts.noWait && !g.client.onlyShowErrors && isTerminal(g.stderr) {
		bar = progressbar.NewOptions(100, progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetDescription("copying"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(30), progressbar.OptionSetRenderBlankState(true))
	}
	for {
		res, err := c.snapshots.Get(ctx, group, name, nil)
		if err != nil {
			return err
		}
		p := res.Properties
		if e := p.CopyCompletionError; e != nil {
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(g.stderr)
			}
			code := ""
			if e.ErrorCode != nil {
				code = string(*e.ErrorCode)
			}
			return fmt.Errorf("the copy of %s into %s failed: (%s) %s", opts.name, opts.region, code, deref(e.ErrorMessage))
		}
		pct := 0.0
		if p.CompletionPercent != nil {
			pct = float64(*p.CompletionPercent)
		}
		if bar != nil {
			_ = bar.Set(int(pct))
		}
		if pct >= 100 || opts.noWait {
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(g.stderr)
			}
			out, err := snapshotShape(res.Snapshot)
			if err != nil {
				return err
			}
			return g.output(cmd, out, snapshotTable)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(copyPoll):
		}
	}
}
