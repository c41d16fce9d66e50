package cli

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var snapshotSkus = []string{"Premium_LRS", "Standard_LRS", "Standard_ZRS"}

func newSnapshotCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Manage snapshots",
		Long: `Manage snapshots, as az snapshot does, plus deltadisk's family listing and usage.

An incremental snapshot holds only what changed on its disk since the
previous one, yet reads, downloads and restores as the whole image. One
disk's incremental snapshots form its family: list it with
"snapshot list --source-disk", and see what each one costs with
"snapshot usage".`,
		Example: `  deltadisk snapshot create -g rg1 -n snap1 --source disk1 --incremental
  deltadisk snapshot list -g rg1 --source-disk disk1 -o table`,
		Args:              cobra.NoArgs, // an unknown subcommand is an error, not help
		RunE:              showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.client.prepare(cmd) },
	}
	g.client.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newSnapshotCreateCommand(g), newSnapshotShowCommand(g), newSnapshotListCommand(g), newSnapshotDeleteCommand(g),
		newSnapshotGrantAccessCommand(g), newSnapshotRevokeAccessCommand(g), newSnapshotUsageCommand(g),
		newSnapshotDownloadCommand(g), newSnapshotDiffCommand(g), newSnapshotCopyCommand(g),
	)
	return cmd
}

// snapshotTable is the table of snapshots. az has none (it prints every
// scalar field); these are the columns that tell snapshots apart.
func snapshotTable(item map[string]any) []cell {
	sku, _ := item["sku"].(map[string]any)
	return []cell{
		{"Name", item["name"]}, {"ResourceGroup", item["resourceGroup"]}, {"Location", item["location"]},
		{"Sku", sku["name"]}, {"SizeGb", item["diskSizeGb"]}, {"Incremental", item["incremental"]},
		{"TimeCreated", item["timeCreated"]}, {"ProvisioningState", item["provisioningState"]},
	}
}

func snapshotShape(s armcompute.Snapshot) (map[string]any, error) {
	return computeShape(s, snapshotKeys)
}

// snapshotRef is a snapshot named by -g and -n.
type snapshotRef struct{ group, name string }

func (r *snapshotRef) addFlags(fs *pflag.FlagSet) {
	addGroupFlag(fs, &r.group)
	addNameFlag(fs, &r.name, "snapshot")
}

type snapshotCreateOptions struct {
	snapshotRef
	location, sku, source string
	incremental, noWait   bool
	tags                  []string
}

func (o *snapshotCreateOptions) addFlags(fs *pflag.FlagSet) {
	o.snapshotRef.addFlags(fs)
	addLocationFlag(fs, &o.location)
	fs.StringVar(&o.source, "source", "", "disk or snapshot to snapshot: its name in the resource group, or its full id")
	fs.BoolVar(&o.incremental, "incremental", false, "take an incremental snapshot: only what changed since the disk's previous one is stored")
	fs.StringVar(&o.sku, "sku", "", "storage SKU: "+strings.Join(snapshotSkus, ", ")+
		" (default: the server's, Standard_ZRS for an incremental snapshot where the region has zones, else Standard_LRS)")
	addTagsFlag(fs, &o.tags)
	addNoWaitFlag(fs, &o.noWait)
}

func newSnapshotCreateCommand(g *globals) *cobra.Command {
	var opts snapshotCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Take a snapshot of a disk, or copy a snapshot",
		Long: `Take a full or incremental snapshot of a disk, or a full copy of a snapshot.

An incremental snapshot is taken of a disk, in the disk's location, and
stores only what changed since the disk's previous incremental snapshot.
The location defaults to the resource group's.`,
		Example: `  deltadisk snapshot create -g rg1 -n snap1 --source disk1 --incremental
  deltadisk snapshot create -g rg1 -n full1 --source snap1
  deltadisk snapshot create -g rg1 -n snap2 --incremental \
      --source /subscriptions/SUB/resourceGroups/rg1/providers/Microsoft.Compute/disks/disk1`,
		Args: tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotCreate(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name", "source")
	return cmd
}

func runSnapshotCreate(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotCreateOptions, args []string) error {
	// Without --sku none is sent, so the server's default applies (az
	// sends Standard_LRS, which opts out of zone redundancy unasked).
	var sku *armcompute.SnapshotSKU
	if opts.sku != "" {
		name, err := oneOf("--sku", opts.sku, snapshotSkus...)
		if err != nil {
			return err
		}
		sku = &armcompute.SnapshotSKU{Name: new(armcompute.SnapshotStorageAccountTypes(name))}
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	location := opts.location
	if location == "" {
		if location, err = c.groupLocation(ctx, opts.group); err != nil {
			return err
		}
	}
	source, err := c.resolveSource(ctx, opts.group, opts.source)
	if err != nil {
		return err
	}
	snap := armcompute.Snapshot{
		Location: &location,
		Tags:     parseTags(opts.tags, args),
		SKU:      sku,
		Properties: &armcompute.SnapshotProperties{
			CreationData: &armcompute.CreationData{CreateOption: new(armcompute.DiskCreateOptionCopy), SourceResourceID: &source},
			Incremental:  &opts.incremental,
		},
	}
	poller, err := c.snapshots.BeginCreateOrUpdate(ctx, opts.group, opts.name, snap, nil)
	if err != nil || opts.noWait {
		return err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		return err
	}
	out, err := snapshotShape(res.Snapshot)
	if err != nil {
		return err
	}
	return g.output(cmd, out, snapshotTable)
}

type snapshotShowOptions struct{ snapshotRef }

func newSnapshotShowCommand(g *globals) *cobra.Command {
	var opts snapshotShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a snapshot",
		Long:  "Show a snapshot. A snapshot that does not exist exits with code 3.",
		Example: `  deltadisk snapshot show -g rg1 -n snap1
  deltadisk snapshot show -g rg1 -n snap1 --query creationData.sourceUniqueId -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotShow(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runSnapshotShow(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotShowOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	res, err := c.snapshots.Get(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	out, err := snapshotShape(res.Snapshot)
	if err != nil {
		return err
	}
	return g.output(cmd, out, snapshotTable)
}

// familyOptions select a disk's family of incremental snapshots.
type familyOptions struct {
	group, sourceDisk string
}

func (o *familyOptions) addFlags(fs *pflag.FlagSet) {
	addGroupFlag(fs, &o.group)
	fs.StringVar(&o.sourceDisk, "source-disk", "", "only the incremental snapshots of this disk (its name in the resource group, or its full id)")
}

type snapshotListOptions struct{ familyOptions }

func newSnapshotListCommand(g *globals) *cobra.Command {
	var opts snapshotListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List snapshots, or one disk's incremental snapshots",
		Long: `List the snapshots of a resource group, or of the subscription.

With --source-disk, list only that disk's family: its incremental snapshots,
oldest first. A family is selected as az users do with jq (incremental,
creationData.sourceResourceId is the disk's id, creationData.sourceUniqueId
is the disk's current uniqueId), so the snapshots of an earlier disk of the
same name are left out.`,
		Example: `  deltadisk snapshot list -g rg1 -o table
  deltadisk snapshot list -g rg1 --source-disk disk1 --query "[].name" -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotList(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runSnapshotList(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotListOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	var snaps []armcompute.Snapshot
	if opts.sourceDisk != "" {
		snaps, err = c.family(ctx, opts.familyOptions)
	} else {
		snaps, err = c.listSnapshots(ctx, opts.group)
	}
	if err != nil {
		return err
	}
	out := []any{}
	for _, s := range snaps {
		m, err := snapshotShape(s)
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	return g.output(cmd, out, snapshotTable)
}

// listSnapshots lists a group's snapshots, or the subscription's for no
// group.
func (c *client) listSnapshots(ctx context.Context, group string) ([]armcompute.Snapshot, error) {
	if group != "" {
		return drain(ctx, c.snapshots.NewListByResourceGroupPager(group, nil),
			func(p armcompute.SnapshotsClientListByResourceGroupResponse) []*armcompute.Snapshot { return p.Value })
	}
	return drain(ctx, c.snapshots.NewListPager(nil),
		func(p armcompute.SnapshotsClientListResponse) []*armcompute.Snapshot { return p.Value })
}

// family lists a disk's incremental snapshots (in the group, or the
// subscription), oldest first.
func (c *client) family(ctx context.Context, o familyOptions) ([]armcompute.Snapshot, error) {
	disk, err := c.resolveDisk(ctx, o.group, o.sourceDisk)
	if err != nil {
		return nil, err
	}
	all, err := c.listSnapshots(ctx, o.group)
	if err != nil {
		return nil, err
	}
	snaps := slices.DeleteFunc(all, func(s armcompute.Snapshot) bool { return !inFamily(s, disk) })
	slices.SortStableFunc(snaps, func(a, b armcompute.Snapshot) int {
		return cmp.Compare(timeCreated(a).UnixNano(), timeCreated(b).UnixNano())
	})
	return snaps, nil
}

// inFamily reports whether s is an incremental snapshot of disk as it is
// now: a disk deleted and created again under its name has a new uniqueId
// and a new family.
func inFamily(s armcompute.Snapshot, disk armcompute.Disk) bool {
	p, dp := s.Properties, disk.Properties
	if p == nil || p.Incremental == nil || !*p.Incremental || p.CreationData == nil || dp == nil {
		return false
	}
	cd := p.CreationData
	return cd.SourceResourceID != nil && disk.ID != nil && strings.EqualFold(*cd.SourceResourceID, *disk.ID) &&
		cd.SourceUniqueID != nil && dp.UniqueID != nil && strings.EqualFold(*cd.SourceUniqueID, *dp.UniqueID)
}

func timeCreated(s armcompute.Snapshot) time.Time {
	if s.Properties == nil || s.Properties.TimeCreated == nil {
		return time.Time{}
	}
	return *s.Properties.TimeCreated
}

type snapshotDeleteOptions struct{ snapshotRef }

func newSnapshotDeleteCommand(g *globals) *cobra.Command {
	var opts snapshotDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a snapshot",
		Long: `Delete a snapshot. Deleting an incremental snapshot keeps the later ones
of its family whole: what they still need moves to them. Deleting a snapshot
that does not exist succeeds, as in az.`,
		Example: `  deltadisk snapshot delete -g rg1 -n snap1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotDelete(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runSnapshotDelete(ctx context.Context, g *globals, _ *cobra.Command, opts snapshotDeleteOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.snapshots.BeginDelete(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(ctx, nil)
	return err
}

type snapshotGrantAccessOptions struct {
	snapshotRef
	grantOptions
}

func newSnapshotGrantAccessCommand(g *globals) *cobra.Command {
	var opts snapshotGrantAccessOptions
	cmd := &cobra.Command{
		Use:   "grant-access",
		Short: "Grant a SAS URL to read a snapshot",
		Long: `Grant a SAS URL to read (download) a snapshot as a fixed VHD, printed as
accessSas. A family has at most a few snapshots with access granted at a
time (the server's policy).`,
		Example: `  deltadisk snapshot grant-access -g rg1 -n snap1 --duration-in-seconds 3600 --query accessSas -o tsv`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotGrantAccess(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.snapshotRef.addFlags(cmd.Flags())
	opts.grantOptions.addFlags(cmd.Flags(), "Read")
	require(cmd, "resource-group", "name", "duration-in-seconds")
	return cmd
}

func runSnapshotGrantAccess(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotGrantAccessOptions, _ []string) error {
	level, err := oneOf("--access-level", opts.accessLevel, accessLevels...)
	if err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	data := armcompute.GrantAccessData{Access: new(armcompute.AccessLevel(level)), DurationInSeconds: &opts.duration}
	poller, err := c.snapshots.BeginGrantAccess(ctx, opts.group, opts.name, data, nil)
	if err != nil {
		return err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		return err
	}
	out, err := plainShape(res.AccessURI, accessKeys)
	if err != nil {
		return err
	}
	return g.output(cmd, out, nil)
}

type snapshotRevokeAccessOptions struct{ snapshotRef }

func newSnapshotRevokeAccessCommand(g *globals) *cobra.Command {
	var opts snapshotRevokeAccessOptions
	cmd := &cobra.Command{
		Use:     "revoke-access",
		Short:   "Revoke a snapshot's SAS URL",
		Long:    "Revoke the SAS URL granted on a snapshot; downloads through it stop.",
		Example: `  deltadisk snapshot revoke-access -g rg1 -n snap1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotRevokeAccess(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runSnapshotRevokeAccess(ctx context.Context, g *globals, _ *cobra.Command, opts snapshotRevokeAccessOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.snapshots.BeginRevokeAccess(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(ctx, nil)
	return err
}

type snapshotUsageOptions struct{ familyOptions }

func newSnapshotUsageCommand(g *globals) *cobra.Command {
	var opts snapshotUsageOptions
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show what each incremental snapshot of a disk stores and what deleting it would free",
		Long: `Show, for each incremental snapshot of a disk (oldest first), its size, the
bytes it changed since the previous snapshot (changedBytes), and what
deleting it would free: the bytes no other snapshot or the disk reads
(exclusiveBytes) and the stored, compressed bytes behind them
(exclusiveStoredBytes).

This is deltadisk's extension of the snapshot resource
(GET {snapshotId}/usage?api-version=` + extensionAPIVersion + `).`,
		Example: `  deltadisk snapshot usage -g rg1 --source-disk disk1 -o table
  deltadisk snapshot usage -g rg1 --source-disk disk1 --query "max_by(@, &exclusiveStoredBytes).name" -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotUsage(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "source-disk")
	return cmd
}

// usageTable is the table of snapshot usage.
func usageTable(item map[string]any) []cell {
	return []cell{
		{"Name", item["name"]}, {"TimeCreated", item["timeCreated"]}, {"SizeBytes", item["sizeBytes"]},
		{"ChangedBytes", item["changedBytes"]}, {"ExclusiveBytes", item["exclusiveBytes"]},
		{"ExclusiveStoredBytes", item["exclusiveStoredBytes"]},
	}
}

func runSnapshotUsage(ctx context.Context, g *globals, cmd *cobra.Command, opts snapshotUsageOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	snaps, err := c.family(ctx, opts.familyOptions)
	if err != nil {
		return err
	}
	out := []any{}
	for _, s := range snaps {
		shape, err := snapshotShape(s)
		if err != nil {
			return err
		}
		usage := map[string]any{}
		if err := c.do(ctx, http.MethodGet, *s.ID+"/usage", &usage); err != nil {
			return err
		}
		for _, k := range []string{"id", "name", "resourceGroup", "timeCreated"} {
			usage[k] = shape[k]
		}
		out = append(out, usage)
	}
	return g.output(cmd, out, usageTable)
}
