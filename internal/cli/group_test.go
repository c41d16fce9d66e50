package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGroupCommands(t *testing.T) {
	s := newStack(t)

	got := s.object("group", "create", "-n", "rg1", "-l", "eastus", "--tags", "env=test", "owner=me")
	want := map[string]any{
		"id":         "/subscriptions/" + testSub + "/resourceGroups/rg1",
		"name":       "rg1",
		"type":       "Microsoft.Resources/resourceGroups",
		"location":   "eastus",
		"managedBy":  nil,
		"tags":       map[string]any{"env": "test", "owner": "me"},
		"properties": map[string]any{"provisioningState": "Succeeded"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("group create (-want +got):\n%s", diff)
	}
	// -g names the group as -n does, as in az.
	s.ok("group", "create", "-g", "rg2", "-l", "westus", "-o", "none")

	if got := s.ok("group", "show", "-n", "rg1", "--query", "location", "-o", "tsv"); got != "eastus\n" {
		t.Errorf("group show --query location -o tsv = %q, want %q", got, "eastus\n")
	}
	table := "Name    Location    Status\n" +
		"------  ----------  ---------\n" +
		"rg1     eastus      Succeeded\n" +
		"rg2     westus      Succeeded\n"
	if got := s.ok("group", "list", "-o", "table"); got != table {
		t.Errorf("group list -o table =\n%s\nwant\n%s", got, table)
	}
	if got := s.list("group", "list"); len(got) != 2 || got[0]["name"] != "rg1" || got[1]["name"] != "rg2" {
		t.Errorf("group list = %v, want rg1 and rg2", got)
	}

	s.fails(exitUsage, []string{"ERROR: Resource group 'rg2' and all its disks and snapshots will be deleted", "--yes"},
		"group", "delete", "-n", "rg2")
	if got := s.ok("group", "delete", "-n", "rg2", "--yes"); got != "" {
		t.Errorf("group delete printed %q, want nothing", got)
	}
	s.fails(exitNotFound, []string{
		"ERROR: (ResourceGroupNotFound) Resource group 'rg2' could not be found.\n",
		"Code: ResourceGroupNotFound\n",
		"Message: Resource group 'rg2' could not be found.\n",
	}, "group", "show", "-n", "rg2")
	s.fails(exitNotFound, []string{"(ResourceGroupNotFound)"}, "group", "delete", "-n", "rg2", "--yes")
	s.fails(exitUsage, []string{"the following arguments are required: --name/-n"}, "group", "show")
	s.fails(exitUsage, []string{"the following arguments are required: --location/-l"}, "group", "create", "-n", "rg3")
}
