package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/google/go-cmp/cmp"
)

// write puts n bytes of b at off on a disk, through a Write grant the CLI
// asks for, and revokes it.
func (s *stack) write(group, disk string, off, n int64, b byte) {
	s.t.Helper()
	sas := strings.TrimSpace(s.ok("disk", "grant-access", "-g", group, "-n", disk, "--access-level", "Write",
		"--duration-in-seconds", "600", "--query", "accessSas", "-o", "tsv", "--only-show-errors"))
	c, err := pageblob.NewClientWithNoCredential(sas, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: s.srv.Client()}})
	if err != nil {
		s.t.Fatal(err)
	}
	data := bytes.Repeat([]byte{b}, int(n))
	if _, err := c.UploadPages(s.t.Context(), streaming.NopCloser(bytes.NewReader(data)), blob.HTTPRange{Offset: off, Count: n}, nil); err != nil {
		s.t.Fatalf("writing to %s: %v", disk, err)
	}
	s.ok("disk", "revoke-access", "-g", group, "-n", disk)
}

func TestSnapshotCommands(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg1", "-l", "eastus", "-o", "none")
	disk := s.object("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "1")

	s.write("rg1", "d1", 0, 64<<10, 1)
	s1 := s.object("snapshot", "create", "-g", "rg1", "-n", "s1", "--source", "d1", "--incremental")
	cd, _ := s1["creationData"].(map[string]any)
	for k, want := range map[string]any{
		"name": "s1", "type": "Microsoft.Compute/snapshots", "location": "eastus", "resourceGroup": "rg1",
		"incremental": true, "diskSizeGb": 1.0, "provisioningState": "Succeeded",
	} {
		if s1[k] != want {
			t.Errorf("snapshot create: %s = %v, want %v", k, s1[k], want)
		}
	}
	if cd["createOption"] != "Copy" || cd["sourceResourceId"] != disk["id"] || cd["sourceUniqueId"] != disk["uniqueId"] {
		t.Errorf("snapshot create: creationData = %v, want Copy of %v (uniqueId %v)", cd, disk["id"], disk["uniqueId"])
	}
	if sku, _ := s1["sku"].(map[string]any); sku["name"] != "Standard_ZRS" {
		t.Errorf("snapshot create: sku = %v, want Standard_ZRS (the server's default for incremental snapshots in a region with zones)", s1["sku"])
	}
	if f, _ := s1["incrementalSnapshotFamilyId"].(string); f == "" {
		t.Errorf("snapshot create: no incrementalSnapshotFamilyId")
	}

	// By full id, after a change; and a full copy of s1 (by name).
	s.write("rg1", "d1", 1<<20, 128<<10, 2)
	s.ok("snapshot", "create", "-g", "rg1", "-n", "s2", "--source", diskID("rg1", "d1"), "--incremental", "-o", "none")
	// A list is one item per line in tsv, as in az (a bare bool lower-case).
	if got := s.ok("snapshot", "create", "-g", "rg1", "-n", "full1", "--source", "s1", "--query", "[incremental, creationData.sourceResourceId]", "-o", "tsv"); got != "false\n"+s1["id"].(string)+"\n" {
		t.Errorf("snapshot create --source s1 (full) = %q", got)
	}
	if got := s.ok("snapshot", "show", "-g", "rg1", "-n", "s1", "--query", "incremental", "-o", "tsv"); got != "true\n" {
		t.Errorf("snapshot show --query incremental -o tsv = %q, want az's bare lower-case bool", got)
	}

	if got := s.ok("snapshot", "list", "-g", "rg1", "--source-disk", "d1", "--query", "[].name", "-o", "tsv"); got != "s1\ns2\n" {
		t.Errorf("snapshot list --source-disk d1 = %q, want s1 and s2", got)
	}
	table := s.ok("snapshot", "list", "-g", "rg1", "-o", "table")
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "Name    ResourceGroup    Location    Sku           SizeGb    Incremental    TimeCreated") ||
		!strings.HasPrefix(lines[2], "full1   rg1              eastus      Standard_LRS  1         False          20") ||
		!strings.HasPrefix(lines[3], "s1      rg1              eastus      Standard_ZRS  1         True           20") {
		t.Errorf("snapshot list -o table =\n%s", table)
	}

	// What each snapshot changed and would free.
	usage := s.list("snapshot", "usage", "-g", "rg1", "--source-disk", "d1")
	if len(usage) != 2 || usage[0]["name"] != "s1" || usage[1]["name"] != "s2" {
		t.Fatalf("snapshot usage = %v, want s1 and s2", usage)
	}
	if usage[0]["changedBytes"] != float64(64<<10) || usage[1]["changedBytes"] != float64(128<<10) || usage[0]["sizeBytes"] != float64(1<<30) {
		t.Errorf("snapshot usage = %v, want 64 KiB then 128 KiB changed", usage)
	}
	for _, u := range usage {
		for _, k := range []string{"id", "resourceGroup", "timeCreated", "allocatedBytes", "exclusiveBytes", "exclusiveStoredBytes"} {
			if _, ok := u[k]; !ok {
				t.Errorf("snapshot usage of %v lacks %s", u["name"], k)
			}
		}
	}
	if got := s.ok("snapshot", "usage", "-g", "rg1", "--source-disk", "d1", "-o", "table"); !strings.HasPrefix(got, "Name    TimeCreated") {
		t.Errorf("snapshot usage -o table =\n%s", got)
	}

	// A disk deleted and created again under its name is a new family:
	// the old snapshots stay, and are not the new disk's.
	s.ok("disk", "delete", "-g", "rg1", "-n", "d1", "--yes")
	s.ok("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "1", "-o", "none")
	s.ok("snapshot", "create", "-g", "rg1", "-n", "s3", "--source", "d1", "--incremental", "-o", "none")
	if got := s.ok("snapshot", "list", "-g", "rg1", "--source-disk", "d1", "--query", "[].name", "-o", "tsv"); got != "s3\n" {
		t.Errorf("snapshot list --source-disk of the new d1 = %q, want s3", got)
	}
	if got := s.ok("snapshot", "list", "--source-disk", diskID("rg1", "d1"), "--query", "[].name", "-o", "tsv"); got != "s3\n" {
		t.Errorf("snapshot list --source-disk ID (whole subscription) = %q, want s3", got)
	}
	names := func(l []map[string]any) []string {
		var n []string
		for _, m := range l {
			n = append(n, m["name"].(string))
		}
		return n
	}
	if got := names(s.list("snapshot", "list", "-g", "rg1")); !cmp.Equal(got, []string{"full1", "s1", "s2", "s3"}) {
		t.Errorf("snapshot list = %v", got)
	}

	// Restore s2 to a new disk: the whole image.
	restored := s.object("disk", "create", "-g", "rg1", "-n", "restored", "--source", "s2")
	if cd, _ := restored["creationData"].(map[string]any); cd["createOption"] != "Copy" || cd["sourceResourceId"] != strings.Replace(s1["id"].(string), "/s1", "/s2", 1) {
		t.Errorf("disk create --source s2: creationData = %v", cd)
	}

	if got := s.ok("snapshot", "grant-access", "-g", "rg1", "-n", "s2", "--duration-in-seconds", "60", "--query", "accessSas", "-o", "tsv"); !strings.HasPrefix(got, "https://") {
		t.Errorf("snapshot grant-access = %q", got)
	}
	if got := s.ok("snapshot", "show", "-g", "rg1", "-n", "s2", "--query", "diskState", "-o", "tsv"); got != "ActiveSAS\n" {
		t.Errorf("snapshot diskState with a grant = %q", got)
	}
	if got := s.ok("snapshot", "revoke-access", "-g", "rg1", "-n", "s2"); got != "" {
		t.Errorf("snapshot revoke-access printed %q", got)
	}

	if got := s.ok("snapshot", "delete", "-g", "rg1", "-n", "full1"); got != "" {
		t.Errorf("snapshot delete printed %q", got)
	}
	s.fails(exitNotFound, []string{"ERROR: (ResourceNotFound)", "Code: ResourceNotFound"}, "snapshot", "show", "-g", "rg1", "-n", "full1")
	s.ok("snapshot", "delete", "-g", "rg1", "-n", "full1")

	s.fails(exitNotFound, []string{"(ResourceNotFound) --source 'nope'"}, "snapshot", "create", "-g", "rg1", "-n", "x", "--source", "nope")
	s.fails(exitUsage, []string{"the following arguments are required: --source"}, "snapshot", "create", "-g", "rg1", "-n", "x")
	s.fails(exitError, []string{"(InvalidParameter)", "Standard_LRS or Standard_ZRS"}, "snapshot", "create", "-g", "rg1", "-n", "x", "--source", "d1", "--incremental", "--sku", "Premium_LRS")
	s.fails(exitNotFound, []string{"(ResourceNotFound)"}, "snapshot", "list", "-g", "rg1", "--source-disk", "gone")
	s.fails(exitUsage, []string{"needs --resource-group/-g"}, "snapshot", "usage", "--source-disk", "d1")
}
