package cli

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newGroupCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Manage resource groups",
		Long: `Manage resource groups, as az group does.

A resource group holds disks and snapshots; deleting it deletes them.`,
		Example: `  deltadisk group create -n rg1 -l eastus
  deltadisk group list -o table`,
		Args:              cobra.NoArgs, // an unknown subcommand is an error, not help
		RunE:              showHelp,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.client.prepare(cmd) },
	}
	g.client.addFlags(cmd.PersistentFlags())
	cmd.AddCommand(newGroupCreateCommand(g), newGroupShowCommand(g), newGroupListCommand(g), newGroupDeleteCommand(g))
	return cmd
}

// groupTable is az's table of resource groups.
func groupTable(item map[string]any) []cell {
	props, _ := item["properties"].(map[string]any)
	return []cell{{"Name", item["name"]}, {"Location", item["location"]}, {"Status", props["provisioningState"]}}
}

func groupShape(rg armresources.ResourceGroup) (map[string]any, error) {
	return plainShape(rg, groupKeys)
}

// addGroupNameFlags adds the group's name as az's group commands take
// it: --name/-n, or --resource-group/-g, which means the same.
func addGroupNameFlags(fs *pflag.FlagSet, p *string) {
	addNameFlag(fs, p, "resource group")
	addGroupFlag(fs, p)
}

func groupName(name string) error {
	if name == "" {
		return usagef("the following arguments are required: --name/-n")
	}
	return nil
}

type groupCreateOptions struct {
	name, location string
	tags           []string
}

func (o *groupCreateOptions) addFlags(fs *pflag.FlagSet) {
	addGroupNameFlags(fs, &o.name)
	fs.StringVarP(&o.location, "location", "l", "", "location of the group, such as eastus")
	addTagsFlag(fs, &o.tags)
}

func newGroupCreateCommand(g *globals) *cobra.Command {
	var opts groupCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a resource group, or update its tags",
		Long:  "Create a resource group. Creating a group that exists replaces its tags.",
		Example: `  deltadisk group create -n rg1 -l eastus
  deltadisk group create -n rg1 -l eastus --tags env=test owner=me`,
		Args: tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroupCreate(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "location")
	return cmd
}

func runGroupCreate(ctx context.Context, g *globals, cmd *cobra.Command, opts groupCreateOptions, args []string) error {
	if err := groupName(opts.name); err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	rg := armresources.ResourceGroup{Location: &opts.location, Tags: parseTags(opts.tags, args)}
	res, err := c.groups.CreateOrUpdate(ctx, opts.name, rg, nil)
	if err != nil {
		return err
	}
	out, err := groupShape(res.ResourceGroup)
	if err != nil {
		return err
	}
	return g.output(cmd, out, groupTable)
}

type groupShowOptions struct{ name string }

func (o *groupShowOptions) addFlags(fs *pflag.FlagSet) { addGroupNameFlags(fs, &o.name) }

func newGroupShowCommand(g *globals) *cobra.Command {
	var opts groupShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a resource group",
		Long:  "Show a resource group. A group that does not exist exits with code 3.",
		Example: `  deltadisk group show -n rg1
  deltadisk group show -n rg1 --query location -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroupShow(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runGroupShow(ctx context.Context, g *globals, cmd *cobra.Command, opts groupShowOptions, _ []string) error {
	if err := groupName(opts.name); err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	res, err := c.groups.Get(ctx, opts.name, nil)
	if err != nil {
		return err
	}
	out, err := groupShape(res.ResourceGroup)
	if err != nil {
		return err
	}
	return g.output(cmd, out, groupTable)
}

type groupListOptions struct{}

func (o *groupListOptions) addFlags(*pflag.FlagSet) {}

func newGroupListCommand(g *globals) *cobra.Command {
	var opts groupListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the subscription's resource groups",
		Example: `  deltadisk group list -o table
  deltadisk group list --query "[?location=='eastus'].name" -o tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroupList(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runGroupList(ctx context.Context, g *globals, cmd *cobra.Command, _ groupListOptions, _ []string) error {
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	out := []any{}
	for p := c.groups.NewListPager(nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, rg := range page.Value {
			m, err := groupShape(*rg)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
	}
	return g.output(cmd, out, groupTable)
}

type groupDeleteOptions struct {
	name        string
	yes, noWait bool
}

func (o *groupDeleteOptions) addFlags(fs *pflag.FlagSet) {
	addGroupNameFlags(fs, &o.name)
	addYesFlag(fs, &o.yes)
	addNoWaitFlag(fs, &o.noWait)
}

func newGroupDeleteCommand(g *globals) *cobra.Command {
	var opts groupDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a resource group with its disks and snapshots",
		Long: `Delete a resource group and every disk and snapshot in it.

It asks for confirmation on a terminal; scripts pass --yes.`,
		Example: `  deltadisk group delete -n rg1 --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroupDelete(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runGroupDelete(ctx context.Context, g *globals, _ *cobra.Command, opts groupDeleteOptions, _ []string) error {
	if err := groupName(opts.name); err != nil {
		return err
	}
	if err := g.confirm(opts.yes, "Resource group '"+opts.name+"' and all its disks and snapshots will be deleted"); err != nil {
		return err
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	poller, err := c.groups.BeginDelete(ctx, opts.name, nil)
	if err != nil || opts.noWait {
		return err
	}
	_, err = poller.PollUntilDone(ctx, nil)
	return err
}
