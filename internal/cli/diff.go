package cli

import (
	"bytes"
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// diffGrantSeconds is how long the Read grants of a diff last; they are
// revoked as soon as the page list is read.
const diffGrantSeconds = 3600

type snapshotDiffOptions struct {
	group, from, to string
}

func (o *snapshotDiffOptions) addFlags(fs *pflag.FlagSet) {
	addGroupFlag(fs, &o.group)
	fs.StringVar(&o.from, "from", "", "the earlier incremental snapshot: its name in the resource group, or its full id")
	fs.StringVar(&o.to, "to", "", "the later incremental snapshot of the same disk, or the disk itself: a name in the resource group (a snapshot first, then a disk), or a full id")
}

func newSnapshotDiffCommand(g *globals) *cobra.Command {
	var opts snapshotDiffOptions
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "List the ranges that changed between two incremental snapshots of a disk",
		Long: `List the ranges that changed between two incremental snapshots of one disk
(or between a snapshot and the disk as it is now), in time proportional to
what changed: ranges written since --from (kind changed) and ranges that
became zero (kind cleared), with their totals.

It grants Read access to both, asks for the page ranges of --to with --from
as the previous snapshot (x-ms-previous-snapshot-url), and revokes both.
Ranges are inclusive byte offsets, as the blob service reports them, at the
server's 64 KiB granularity.`,
		Example: `  deltadisk snapshot diff -g rg1 --from snap1 --to snap2
  deltadisk snapshot diff -g rg1 --from snap1 --to snap2 -o table
  deltadisk snapshot diff -g rg1 --from snap1 --to disk1 --query "{changed: changedBytes, cleared: clearedBytes}" -o tsv
  deltadisk snapshot diff -g rg1 --from snap1 --to snap2 --query "ranges[?kind=='changed'].[start, end]" -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotDiff(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "from", "to")
	return cmd
}

// diffRange is one range of a diff.
type diffRange struct {
	Start  int64  `json:"start"`
	End    int64  `json:"end"` // inclusive
	Length int64  `json:"length"`
	Kind   string `json:"kind"` // changed or cleared
}

// diffResult is what snapshot diff prints.
type diffResult struct {
	From         string      `json:"from"`
	To           string      `json:"to"`
	ChangedBytes int64       `json:"changedBytes"`
	ClearedBytes int64       `json:"clearedBytes"`
	RangeCount   int         `json:"rangeCount"`
	Ranges       []diffRange `json:"ranges"`
}

func runSnapshotDiff(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotDiffOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	from, err := c.getTarget(ctx, kindSnapshot, opts.group, opts.from)
	if err != nil {
		return err
	}
	to, err := c.diffTo(ctx, opts.group, opts.to)
	if err != nil {
		return err
	}
	res := diffResult{From: from.id, To: to.id, Ranges: []diffRange{}}
	if strings.EqualFold(from.id, to.id) {
		// Nothing changed; and one resource takes one grant at a time.
		return printDiff(g, cmd, res)
	}
	for _, t := range []target{from, to} {
		if strings.HasPrefix(t.state, "Active") {
			return activeGrantError(t)
		}
	}
	fromSAS, err := c.grant(ctx, from, armcompute.AccessLevelRead, diffGrantSeconds)
	if err != nil {
		return err
	}
	defer c.revokeOrWarn(ctx, g, from)
	toSAS, err := c.grant(ctx, to, armcompute.AccessLevelRead, diffGrantSeconds)
	if err != nil {
		return err
	}
	defer c.revokeOrWarn(ctx, g, to)
	pb, err := c.pageBlob(toSAS)
	if err != nil {
		return err
	}
	runs, err := diffRanges(ctx, pb, fromSAS)
	if err != nil {
		return err
	}
	for _, r := range runs {
		dr := diffRange{Start: r.start, End: r.end - 1, Length: r.end - r.start, Kind: "changed"}
		if r.cleared {
			dr.Kind = "cleared"
			res.ClearedBytes += dr.Length
		} else {
			res.ChangedBytes += dr.Length
		}
		res.Ranges = append(res.Ranges, dr)
	}
	res.RangeCount = len(res.Ranges)
	return printDiff(g, cmd, res)
}

// printDiff prints a diff; as a table (without --query), its ranges and
// then its totals.
func printDiff(g *globals, cmd *cobra.Command, res diffResult) error {
	if g.client.output == "table" && g.client.jp == nil {
		return writeDiffTable(cmd, res)
	}
	return g.output(cmd, res, nil)
}

// diffTo resolves --to: a snapshot or a disk, by name (a snapshot first,
// as --source) or by id.
func (c *client) diffTo(ctx context.Context, group, to string) (target, error) {
	if group == "" && !strings.HasPrefix(to, "/") {
		return target{}, usagef("--to named by its name needs --resource-group/-g; or give its full id")
	}
	id, err := c.resolveSource(ctx, group, to)
	if err != nil {
		return target{}, err
	}
	kind := kindSnapshot
	if _, _, err := splitID(id, kindDisk); err == nil {
		kind = kindDisk
	}
	return c.getTarget(ctx, kind, "", id)
}

// revokeOrWarn revokes access to t, warning when it cannot.
func (c *client) revokeOrWarn(ctx context.Context, g *globals, t target) {
	if err := c.revoke(ctx, t); err != nil {
		g.warn("could not revoke the access to %s '%s': %s; revoke it with 'deltadisk %s revoke-access -g %s -n %s'",
			t.kind.noun(), t.name, firstLine(connError(err).Error()), t.kind.noun(), t.group, t.name)
	}
}

// writeDiffTable prints a diff as two tables: its ranges, then its
// totals.
func writeDiffTable(cmd *cobra.Command, res diffResult) error {
	var buf bytes.Buffer
	if len(res.Ranges) > 0 {
		rows := make([][]cell, 0, len(res.Ranges))
		for _, r := range res.Ranges {
			rows = append(rows, []cell{{"Start", float64(r.Start)}, {"End", float64(r.End)}, {"Length", float64(r.Length)}, {"Kind", r.Kind}})
		}
		if err := writeTable(&buf, rows); err != nil {
			return err
		}
		buf.WriteByte('\n')
	}
	totals := [][]cell{{{"Ranges", float64(res.RangeCount)}, {"ChangedBytes", float64(res.ChangedBytes)}, {"ClearedBytes", float64(res.ClearedBytes)}}}
	if err := writeTable(&buf, totals); err != nil {
		return err
	}
	_, err := cmd.OutOrStdout().Write(buf.Bytes())
	return err
}
