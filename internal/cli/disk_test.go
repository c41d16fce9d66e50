package cli

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// pythonTimeRe is how az prints times.
var pythonTimeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$`)

func TestDiskCommands(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg1", "-l", "eastus", "-o", "none")

	// An empty disk: the location is the group's, the sku az's default.
	d := s.object("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "4")
	for k, want := range map[string]any{
		"id": diskID("rg1", "d1"), "name": "d1", "type": "Microsoft.Compute/disks", "location": "eastus",
		"resourceGroup": "rg1", "diskSizeGb": 4.0, "diskSizeBytes": float64(4 << 30), "diskState": "Unattached",
		"provisioningState": "Succeeded", "managedBy": nil, "zones": nil,
	} {
		if d[k] != want {
			t.Errorf("disk create: %s = %v, want %v", k, d[k], want)
		}
	}
	if sku, _ := d["sku"].(map[string]any); sku["name"] != "Premium_LRS" || sku["tier"] != "Premium" {
		t.Errorf("disk create: sku = %v, want Premium_LRS (az's default)", d["sku"])
	}
	if cd, _ := d["creationData"].(map[string]any); cd["createOption"] != "Empty" || cd["sourceResourceId"] != nil {
		t.Errorf("disk create: creationData = %v, want createOption Empty and a null sourceResourceId", d["creationData"])
	}
	if ts, _ := d["timeCreated"].(string); !pythonTimeRe.MatchString(ts) {
		t.Errorf("disk create: timeCreated = %q, want az's (Python's) form", ts)
	}
	if _, ok := d["properties"]; ok {
		t.Errorf("disk create: properties not hoisted: %v", d)
	}

	d2 := s.object("disk", "create", "-g", "rg1", "-n", "d2", "-z", "1", "-l", "eastus", "--sku", "standard_lrs", "--tags", "a=b", "--tags", "c")
	if sku, _ := d2["sku"].(map[string]any); sku["name"] != "Standard_LRS" {
		t.Errorf("disk create --sku standard_lrs: sku = %v", d2["sku"])
	}
	if tags, _ := d2["tags"].(map[string]any); len(tags) != 2 || tags["a"] != "b" || tags["c"] != "" {
		t.Errorf("disk create --tags a=b --tags c: tags = %v", d2["tags"])
	}

	if got := s.ok("disk", "show", "-g", "rg1", "-n", "d1", "--query", "[id]", "-o", "tsv"); got != diskID("rg1", "d1")+"\n" {
		t.Errorf("disk show --query [id] -o tsv = %q", got)
	}
	if got := s.ok("disk", "list", "-g", "rg1", "--query", "[].name", "-o", "tsv"); got != "d1\nd2\n" {
		t.Errorf("disk list --query [].name -o tsv = %q", got)
	}
	table := "Name    ResourceGroup    Location    Zones    Sku           OsType    SizeGb    ProvisioningState\n" +
		"------  ---------------  ----------  -------  ------------  --------  --------  -------------------\n" +
		"d1      rg1              eastus               Premium_LRS             4         Succeeded\n" +
		"d2      rg1              eastus               Standard_LRS            1         Succeeded\n"
	if got := s.ok("disk", "list", "-o", "table"); got != table {
		t.Errorf("disk list -o table =\n%s\nwant\n%s", got, table)
	}

	if got := s.object("disk", "update", "-g", "rg1", "-n", "d2", "--size-gb", "2"); got["diskSizeGb"] != 2.0 {
		t.Errorf("disk update --size-gb 2: diskSizeGb = %v", got["diskSizeGb"])
	}
	if got := s.ok("disk", "update", "-g", "rg1", "-n", "d2", "--sku", "Premium_LRS", "--query", "sku.name", "-o", "tsv"); got != "Premium_LRS\n" {
		t.Errorf("disk update --sku = %q", got)
	}
	s.fails(exitUsage, []string{"nothing to update"}, "disk", "update", "-g", "rg1", "-n", "d2")

	// An upload: Write access moves it to ActiveUpload; revoking prints nothing.
	up := s.object("disk", "create", "-g", "rg1", "-n", "up", "--upload-type", "Upload", "--upload-size-bytes", strconv.Itoa(20<<20+512))
	if cd, _ := up["creationData"].(map[string]any); up["diskState"] != "ReadyToUpload" || cd["createOption"] != "Upload" || cd["uploadSizeBytes"] != float64(20<<20+512) {
		t.Errorf("disk create --upload-type Upload: diskState %v, creationData %v", up["diskState"], up["creationData"])
	}
	sas := s.object("disk", "grant-access", "-g", "rg1", "-n", "up", "--access-level", "Write", "--duration-in-seconds", "600")
	if u, _ := sas["accessSas"].(string); !strings.HasPrefix(u, s.creds.ResourceManagerURL+"md-") || !strings.Contains(u, "sp=rw") {
		t.Errorf("disk grant-access: accessSas = %v", sas["accessSas"])
	}
	if v, ok := sas["securityDataAccessSas"]; !ok || v != nil {
		t.Errorf("disk grant-access: securityDataAccessSas = %v (present %v), want null as az prints", v, ok)
	}
	if got := s.ok("disk", "show", "-g", "rg1", "-n", "up", "--query", "diskState", "-o", "tsv"); got != "ActiveUpload\n" {
		t.Errorf("diskState after grant-access Write = %q", got)
	}
	// Nothing was uploaded: the server refuses to end the upload.
	s.fails(exitError, []string{"(BadRequest)", "VHD footer"}, "disk", "revoke-access", "-g", "rg1", "-n", "up")
	if got := s.ok("disk", "grant-access", "-g", "rg1", "-n", "d1", "--duration-in-seconds", "60", "--query", "accessSas", "-o", "tsv"); !strings.Contains(got, "sp=r&") {
		t.Errorf("disk grant-access (Read) = %q", got)
	}
	if got := s.ok("disk", "revoke-access", "-g", "rg1", "-n", "d1"); got != "" {
		t.Errorf("disk revoke-access printed %q", got)
	}
	// Write access to a disk not awaiting an upload warns, unless
	// --only-show-errors.
	r := s.run("disk", "grant-access", "-g", "rg1", "-n", "d1", "--access-level", "Write", "--duration-in-seconds", "60", "-o", "none")
	if r.code != 0 || !strings.HasPrefix(r.stderr, "WARNING: Write access to a disk that is not awaiting an upload") {
		t.Errorf("disk grant-access Write on an unattached disk: exit %d, stderr %q; want a warning", r.code, r.stderr)
	}
	s.ok("disk", "revoke-access", "-g", "rg1", "-n", "d1")
	s.ok("disk", "grant-access", "-g", "rg1", "-n", "d1", "--access-level", "write", "--duration-in-seconds", "60", "-o", "none", "--only-show-errors")
	s.ok("disk", "revoke-access", "-g", "rg1", "-n", "d1")

	// Attach and detach (deltadisk's extension).
	if got := s.ok("disk", "attach", "-g", "rg1", "-n", "d1", "--query", "nbdUri", "-o", "tsv"); got != "nbd://127.0.0.1:10809/export\n" {
		t.Errorf("disk attach --query nbdUri -o tsv = %q", got)
	}
	if got := s.object("disk", "show", "-g", "rg1", "-n", "d1"); got["diskState"] != "Attached" || got["managedBy"] != testClient {
		t.Errorf("disk show after attach: diskState %v, managedBy %v", got["diskState"], got["managedBy"])
	}
	s.fails(exitError, []string{"(OperationNotAllowed)"}, "disk", "attach", "-g", "rg1", "-n", "d1")
	if got := s.ok("disk", "detach", "-g", "rg1", "-n", "d1"); got != "" {
		t.Errorf("disk detach printed %q", got)
	}
	if got := s.ok("disk", "show", "-g", "rg1", "-n", "d1", "--query", "diskState", "-o", "tsv"); got != "Unattached\n" {
		t.Errorf("diskState after detach = %q", got)
	}

	// --no-wait prints nothing and the disk exists.
	if got := s.ok("disk", "create", "-g", "rg1", "-n", "quiet", "--size-gb", "1", "--no-wait"); got != "" {
		t.Errorf("disk create --no-wait printed %q", got)
	}
	s.ok("disk", "show", "-g", "rg1", "-n", "quiet", "-o", "none")

	// Delete: confirmation, then gone (exit 3); deleting again succeeds.
	s.fails(exitUsage, []string{"--yes"}, "disk", "delete", "-g", "rg1", "-n", "d2")
	if got := s.ok("disk", "delete", "-g", "rg1", "-n", "d2", "--yes"); got != "" {
		t.Errorf("disk delete printed %q", got)
	}
	s.fails(exitNotFound, []string{
		"ERROR: (ResourceNotFound) The Resource 'Microsoft.Compute/disks/d2' under resource group 'rg1' was not found.\n",
		"Code: ResourceNotFound\n",
		"Message: The Resource 'Microsoft.Compute/disks/d2' under resource group 'rg1' was not found.\n",
	}, "disk", "show", "-g", "rg1", "-n", "d2")
	s.ok("disk", "delete", "-g", "rg1", "-n", "d2", "-y")
}

func TestDiskCreateErrors(t *testing.T) {
	s := newStack(t)
	s.ok("group", "create", "-n", "rg1", "-l", "eastus", "-o", "none")
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"size zero", []string{"--size-gb", "0"}, exitError, []string{
			"ERROR: (InvalidParameter) diskSizeGB must be", "Code: InvalidParameter\n", "Message: diskSizeGB must be", "Target: properties.diskSizeGB\n"}},
		{"size too big", []string{"--size-gb", "99999"}, exitError, []string{"(InvalidParameter)"}},
		{"size not a number", []string{"--size-gb", "four"}, exitUsage, []string{"invalid argument \"four\" for \"-z, --size-gb\""}},
		{"no size", nil, exitUsage, []string{"--size-gb is required"}},
		{"bad sku", []string{"--size-gb", "1", "--sku", "Gold_LRS"}, exitUsage, []string{"argument --sku: invalid choice: 'Gold_LRS'"}},
		{"upload without size", []string{"--upload-type", "Upload"}, exitUsage, []string{"--upload-size-bytes"}},
		{"upload size alone", []string{"--upload-size-bytes", "1024"}, exitUsage, []string{"--upload-type Upload"}},
		{"bad upload size", []string{"--upload-type", "Upload", "--upload-size-bytes", "1024"}, exitError, []string{"(InvalidParameter) uploadSizeBytes"}},
		{"missing source", []string{"--source", "nope"}, exitNotFound, []string{"(ResourceNotFound) --source 'nope'"}},
		{"stray argument", []string{"--size-gb", "1", "extra"}, exitUsage, []string{"unrecognized arguments: extra"}},
		{"unknown flag", []string{"--size-gb", "1", "--color", "blue"}, exitUsage, []string{"unknown flag: --color", "deltadisk disk create --help"}},
		{"missing group", []string{"--size-gb", "1", "-g", "nope"}, exitNotFound, []string{"(ResourceGroupNotFound)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"disk", "create", "-g", "rg1", "-n", "bad"}, tc.args...)
			s.t = t
			s.fails(tc.code, tc.want, args...)
		})
	}
	s.t = t
	s.fails(exitUsage, []string{"the following arguments are required: --name/-n, --resource-group/-g"}, "disk", "create", "--size-gb", "1")
	if got := s.ok("disk", "list", "-g", "rg1"); got != "[]\n" {
		t.Errorf("disks after failed creates: %s", got)
	}
}
