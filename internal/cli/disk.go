package cli

import (
	"context"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The choices az offers for disk flags.
var (
	diskSkus = []string{"Premium_LRS", "PremiumV2_LRS", "Premium_ZRS", "StandardSSD_LRS", "StandardSSD_ZRS", "Standard_LRS", "UltraSSD_LRS"}
	// defaultDiskSku is az's default for disk create.
	defaultDiskSku = "Premium_LRS"
	accessLevels   = []string{"Read", "Write"}
)

func newDiskCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Manage disks",
		Long: `Manage managed disks, as az disk does, plus deltadisk's attach and detach.

A disk is created empty (--size-gb), from a disk or snapshot (--source), or
awaiting an upload (--upload-type Upload). The data commands put an image on
it and read it back.`,
		Example: `  deltadisk disk create -g rg1 -n disk1 --size-gb 4
  deltadisk disk list -g rg1 -o table`,
		Args:              cobra.NoArgs, // an unknown subcommand is an error, not help
		RunE:              showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.client.prepare(cmd) },
	}
	g.client.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newDiskCreateCommand(g), newDiskShowCommand(g), newDiskListCommand(g), newDiskUpdateCommand(g),
		newDiskDeleteCommand(g), newDiskGrantAccessCommand(g), newDiskRevokeAccessCommand(g),
		newDiskAttachCommand(g), newDiskDetachCommand(g), newDiskUploadCommand(g), newDiskDownloadCommand(g),
	)
	return cmd
}

// diskTable is az's table of disks.
func diskTable(item map[string]any) []cell {
	var zones []string
	if zs, ok := item["zones"].([]any); ok {
		for _, z := range zs {
			if s, ok := z.(string); ok {
				zones = append(zones, s)
			}
		}
	}
	sku, _ := item["sku"].(map[string]any)
	return []cell{
		{"Name", item["name"]}, {"ResourceGroup", item["resourceGroup"]}, {"Location", item["location"]},
		{"Zones", strings.Join(zones, ",")}, {"Sku", sku["name"]}, {"OsType", item["osType"]},
		{"SizeGb", item["diskSizeGb"]}, {"ProvisioningState", item["provisioningState"]},
	}
}

func diskShape(d armcompute.Disk) (map[string]any, error) { return computeShape(d, diskKeys) }

// diskRef is a disk named by -g and -n.
type diskRef struct{ group, name string }

func (r *diskRef) addFlags(fs *pflag.FlagSet) {
	addGroupFlag(fs, &r.group)
	addNameFlag(fs, &r.name, "disk")
}

type diskCreateOptions struct {
	diskRef
	location, sku, source, uploadType, osType, hyperVGeneration string
	sizeGB                                                      int32
	uploadSizeBytes                                             int64
	tags                                                        []string
	noWait                                                      bool
}

func (o *diskCreateOptions) addFlags(fs *pflag.FlagSet) {
	o.diskRef.addFlags(fs)
	addLocationFlag(fs, &o.location)
	fs.Int32VarP(&o.sizeGB, "size-gb", "z", 0, "size in GiB; required for an empty disk, optional with --source to grow the copy")
	fs.StringVar(&o.sku, "sku", "", "storage SKU: "+strings.Join(diskSkus, ", ")+" (default "+defaultDiskSku+", as az)")
	fs.StringVar(&o.source, "source", "", "disk or snapshot to copy: its name in the resource group, or its full id")
	fs.StringVar(&o.uploadType, "upload-type", "", "create the disk awaiting an upload: Upload")
	fs.Int64Var(&o.uploadSizeBytes, "upload-size-bytes", 0, "size of the VHD to upload, footer included (with --upload-type Upload)")
	fs.StringVar(&o.osType, "os-type", "", "operating system on the disk: Linux or Windows")
	fs.StringVar(&o.hyperVGeneration, "hyper-v-generation", "", "hypervisor generation of a boot disk: V1 or V2")
	addTagsFlag(fs, &o.tags)
	addNoWaitFlag(fs, &o.noWait)
}

func newDiskCreateCommand(g *globals) *cobra.Command {
	var opts diskCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a disk: empty, copied from a disk or snapshot, or awaiting an upload",
		Long: `Create a managed disk.

With --size-gb alone the disk is empty. With --source it is a copy of a disk
or snapshot (an incremental snapshot restores as the whole image). With
--upload-type Upload it awaits an image: grant Write access and upload a fixed
VHD of --upload-size-bytes. The location defaults to the resource group's.`,
		Example: `  deltadisk disk create -g rg1 -n disk1 --size-gb 4
  deltadisk disk create -g rg1 -n restored --source snap1
  deltadisk disk create -g rg1 -n imported --upload-type Upload --upload-size-bytes 1073742336
  deltadisk disk create -g rg1 -n disk2 --size-gb 8 --sku Standard_LRS --tags env=test`,
		Args: tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskCreate(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskCreate(ctx context.Context, g *globals, cmd *cobra.Command, opts diskCreateOptions, args []string) error {
	f := cmd.Flags()
	props := &armcompute.DiskProperties{CreationData: &armcompute.CreationData{}}
	switch {
	case opts.uploadType != "":
		if _, err := oneOf("--upload-type", opts.uploadType, "Upload"); err != nil {
			return err
		}
		if opts.source != "" {
			return usagef("--upload-type and --source exclude each other: a disk is either uploaded or copied")
		}
		if !f.Changed("upload-size-bytes") {
			return usagef("--upload-type Upload needs --upload-size-bytes, the size of the VHD to upload")
		}
		props.CreationData.CreateOption = new(armcompute.DiskCreateOptionUpload)
		props.CreationData.UploadSizeBytes = &opts.uploadSizeBytes
	case f.Changed("upload-size-bytes"):
		return usagef("--upload-size-bytes goes with --upload-type Upload")
	case opts.source != "":
		props.CreationData.CreateOption = new(armcompute.DiskCreateOptionCopy)
	case !f.Changed("size-gb"):
		return usagef("--size-gb is required to create an empty disk (or give --source or --upload-type)")
	default:
		props.CreationData.CreateOption = new(armcompute.DiskCreateOptionEmpty)
	}
	if f.Changed("size-gb") {
		props.DiskSizeGB = &opts.sizeGB
	}
	sku := defaultDiskSku
	if opts.sku != "" {
		var err error
		if sku, err = oneOf("--sku", opts.sku, diskSkus...); err != nil {
			return err
		}
	}
	if opts.osType != "" {
		ot, err := oneOf("--os-type", opts.osType, "Linux", "Windows")
		if err != nil {
			return err
		}
		props.OSType = new(armcompute.OperatingSystemTypes(ot))
	}
	if opts.hyperVGeneration != "" {
		gen, err := oneOf("--hyper-v-generation", opts.hyperVGeneration, "V1", "V2")
		if err != nil {
			return err
		}
		props.HyperVGeneration = new(armcompute.HyperVGeneration(gen))
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
	if opts.source != "" {
		id, err := c.resolveSource(ctx, opts.group, opts.source)
		if err != nil {
			return err
		}
		props.CreationData.SourceResourceID = &id
	}
	disk := armcompute.Disk{
		Location:   &location,
		Tags:       parseTags(opts.tags, args),
		SKU:        &armcompute.DiskSKU{Name: new(armcompute.DiskStorageAccountTypes(sku))},
		Properties: props,
	}
	poller, err := c.disks.BeginCreateOrUpdate(ctx, opts.group, opts.name, disk, nil)
	if err != nil || opts.noWait {
		return err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		return err
	}
	out, err := diskShape(res.Disk)
	if err != nil {
		return err
	}
	return g.output(cmd, out, diskTable)
}

type diskShowOptions struct{ diskRef }

func newDiskShowCommand(g *globals) *cobra.Command {
	var opts diskShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a disk",
		Long:  "Show a disk. A disk that does not exist exits with code 3.",
		Example: `  deltadisk disk show -g rg1 -n disk1
  deltadisk disk show -g rg1 -n disk1 --query uniqueId -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskShow(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskShow(ctx context.Context, g *globals, cmd *cobra.Command, opts diskShowOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	res, err := c.disks.Get(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	out, err := diskShape(res.Disk)
	if err != nil {
		return err
	}
	return g.output(cmd, out, diskTable)
}

type diskListOptions struct{ group string }

func (o *diskListOptions) addFlags(fs *pflag.FlagSet) { addGroupFlag(fs, &o.group) }

func newDiskListCommand(g *globals) *cobra.Command {
	var opts diskListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the disks of a resource group, or of the subscription",
		Example: `  deltadisk disk list -g rg1 -o table
  deltadisk disk list --query "[].{name:name, size:diskSizeGb, state:diskState}" -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskList(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runDiskList(ctx context.Context, g *globals, cmd *cobra.Command, opts diskListOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	disks, err := c.listDisks(ctx, opts.group)
	if err != nil {
		return err
	}
	out := []any{}
	for _, d := range disks {
		m, err := diskShape(d)
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	return g.output(cmd, out, diskTable)
}

// listDisks lists a group's disks, or the subscription's for no group.
func (c *client) listDisks(ctx context.Context, group string) ([]armcompute.Disk, error) {
	if group != "" {
		return drain(ctx, c.disks.NewListByResourceGroupPager(group, nil),
			func(p armcompute.DisksClientListByResourceGroupResponse) []*armcompute.Disk { return p.Value })
	}
	return drain(ctx, c.disks.NewListPager(nil),
		func(p armcompute.DisksClientListResponse) []*armcompute.Disk { return p.Value })
}

type diskUpdateOptions struct {
	diskRef
	sizeGB int32
	sku    string
	noWait bool
}

func (o *diskUpdateOptions) addFlags(fs *pflag.FlagSet) {
	o.diskRef.addFlags(fs)
	fs.Int32VarP(&o.sizeGB, "size-gb", "z", 0, "new size in GiB (a disk only grows)")
	fs.StringVar(&o.sku, "sku", "", "new storage SKU: "+strings.Join(diskSkus, ", "))
	addNoWaitFlag(fs, &o.noWait)
}

func newDiskUpdateCommand(g *globals) *cobra.Command {
	var opts diskUpdateOptions
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Grow a disk or change its SKU",
		Long: `Grow a disk or change its SKU.

A disk grows only while unattached and without access granted; after a
resize it takes no more incremental snapshots (as in Azure, unless the
server's policy allows it).`,
		Example: `  deltadisk disk update -g rg1 -n disk1 --size-gb 8
  deltadisk disk update -g rg1 -n disk1 --sku StandardSSD_LRS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskUpdate(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskUpdate(ctx context.Context, g *globals, cmd *cobra.Command, opts diskUpdateOptions, _ []string) error {
	var upd armcompute.DiskUpdate
	if cmd.Flags().Changed("size-gb") {
		upd.Properties = &armcompute.DiskUpdateProperties{DiskSizeGB: &opts.sizeGB}
	}
	if opts.sku != "" {
		sku, err := oneOf("--sku", opts.sku, diskSkus...)
		if err != nil {
			return err
		}
		upd.SKU = &armcompute.DiskSKU{Name: new(armcompute.DiskStorageAccountTypes(sku))}
	}
	if upd.Properties == nil && upd.SKU == nil {
		return usagef("nothing to update: give --size-gb or --sku")
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.disks.BeginUpdate(ctx, opts.group, opts.name, upd, nil)
	if err != nil || opts.noWait {
		return err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	if err != nil {
		return err
	}
	out, err := diskShape(res.Disk)
	if err != nil {
		return err
	}
	return g.output(cmd, out, diskTable)
}

type diskDeleteOptions struct {
	diskRef
	yes, noWait bool
}

func (o *diskDeleteOptions) addFlags(fs *pflag.FlagSet) {
	o.diskRef.addFlags(fs)
	addYesFlag(fs, &o.yes)
	addNoWaitFlag(fs, &o.noWait)
}

func newDiskDeleteCommand(g *globals) *cobra.Command {
	var opts diskDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a disk",
		Long: `Delete a disk. Its snapshots stay (incremental ones too).

It asks for confirmation on a terminal; scripts pass --yes. Deleting a disk
that does not exist succeeds, as in az.`,
		Example: `  deltadisk disk delete -g rg1 -n disk1 --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskDelete(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskDelete(ctx context.Context, g *globals, _ *cobra.Command, opts diskDeleteOptions, _ []string) error {
	if err := g.confirm(opts.yes, "Disk '"+opts.name+"' will be deleted"); err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.disks.BeginDelete(ctx, opts.group, opts.name, nil)
	if err != nil || opts.noWait {
		return err
	}
	_, err = poller.PollUntilDone(ctx, nil)
	return err
}

// grantOptions are grant-access's flags, for disks and snapshots.
type grantOptions struct {
	accessLevel string
	duration    int32
}

func (o *grantOptions) addFlags(fs *pflag.FlagSet, levels string) {
	fs.StringVar(&o.accessLevel, "access-level", "Read", "access to grant: "+levels)
	fs.Int32Var(&o.duration, "duration-in-seconds", 0, "how long the SAS URL is valid, in seconds")
}

type diskGrantAccessOptions struct {
	diskRef
	grantOptions
}

func newDiskGrantAccessCommand(g *globals) *cobra.Command {
	var opts diskGrantAccessOptions
	cmd := &cobra.Command{
		Use:   "grant-access",
		Short: "Grant a SAS URL to read or write a disk",
		Long: `Grant a SAS URL to read (download) or write (upload) a disk, printed as accessSas.

Write access is granted on a disk awaiting an upload, and, as deltadisk's
extension, on any unattached disk; the disk takes no snapshot until access is
revoked.`,
		Example: `  deltadisk disk grant-access -g rg1 -n disk1 --duration-in-seconds 3600 --query accessSas -o tsv
  deltadisk disk grant-access -g rg1 -n imported --access-level Write --duration-in-seconds 86400`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskGrantAccess(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.diskRef.addFlags(cmd.Flags())
	opts.grantOptions.addFlags(cmd.Flags(), strings.Join(accessLevels, " or "))
	require(cmd, "resource-group", "name", "duration-in-seconds")
	return cmd
}

func runDiskGrantAccess(ctx context.Context, g *globals, cmd *cobra.Command, opts diskGrantAccessOptions, _ []string) error {
	level, err := oneOf("--access-level", opts.accessLevel, accessLevels...)
	if err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	if level == "Write" {
		// As az does, look at the disk first.
		d, err := c.disks.Get(ctx, opts.group, opts.name, nil)
		if err != nil {
			return err
		}
		if p := d.Properties; p == nil || p.DiskState == nil || *p.DiskState != armcompute.DiskStateReadyToUpload {
			g.warn("Write access to a disk that is not awaiting an upload is deltadisk's extension (Azure refuses it): "+
				"disk '%s' takes no snapshot until its access is revoked.", opts.name)
		}
	}
	data := armcompute.GrantAccessData{Access: new(armcompute.AccessLevel(level)), DurationInSeconds: &opts.duration}
	poller, err := c.disks.BeginGrantAccess(ctx, opts.group, opts.name, data, nil)
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

type diskRevokeAccessOptions struct{ diskRef }

func newDiskRevokeAccessCommand(g *globals) *cobra.Command {
	var opts diskRevokeAccessOptions
	cmd := &cobra.Command{
		Use:   "revoke-access",
		Short: "Revoke a disk's SAS URL",
		Long: `Revoke the SAS URL granted on a disk. After an upload this makes the disk
usable; after a write it lets the disk take snapshots again.`,
		Example: `  deltadisk disk revoke-access -g rg1 -n disk1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskRevokeAccess(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskRevokeAccess(ctx context.Context, g *globals, _ *cobra.Command, opts diskRevokeAccessOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.disks.BeginRevokeAccess(ctx, opts.group, opts.name, nil)
	if err != nil {
		return err
	}
	_, err = poller.PollUntilDone(ctx, nil)
	return err
}

type diskAttachOptions struct{ diskRef }

func newDiskAttachCommand(g *globals) *cobra.Command {
	var opts diskAttachOptions
	cmd := &cobra.Command{
		Use:   "attach",
		Short: "Attach a disk as an NBD export and print its URI",
		Long: `Attach a disk as a block device: the server exports it over NBD (on loopback
TCP and a unix socket) and the disk is Attached until detached. nbdUri is the
export's URI, for qemu-img, qemu-io, nbdcopy, nbdinfo or nbd-client.

This is deltadisk's extension of the disk resource
(POST {diskId}/attach?api-version=` + extensionAPIVersion + `).`,
		Example: `  deltadisk disk attach -g rg1 -n disk1 --query nbdUri -o tsv
  qemu-io -f raw -c 'write -P 0xab 0 1M' "$(deltadisk disk attach -g rg1 -n disk1 --query nbdUri -o tsv)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskAttach(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskAttach(ctx context.Context, g *globals, cmd *cobra.Command, opts diskAttachOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	var out map[string]any
	if err := c.do(ctx, http.MethodPost, c.resourceID("disks", opts.group, opts.name)+"/attach", &out); err != nil {
		return err
	}
	return g.output(cmd, out, nil)
}

type diskDetachOptions struct{ diskRef }

func newDiskDetachCommand(g *globals) *cobra.Command {
	var opts diskDetachOptions
	cmd := &cobra.Command{
		Use:   "detach",
		Short: "Detach an attached disk",
		Long: `End a disk's NBD export and make it Unattached again. Clients still
connected are disconnected.

This is deltadisk's extension of the disk resource
(POST {diskId}/detach?api-version=` + extensionAPIVersion + `).`,
		Example: `  deltadisk disk detach -g rg1 -n disk1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskDetach(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name")
	return cmd
}

func runDiskDetach(ctx context.Context, g *globals, _ *cobra.Command, opts diskDetachOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	return c.do(ctx, http.MethodPost, c.resourceID("disks", opts.group, opts.name)+"/detach", nil)
}
