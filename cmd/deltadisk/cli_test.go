package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// cliResult is what one run of a client command printed, and its exit
// code.
type cliResult struct {
	stdout, stderr string
	code           int
}

// deltadiskCLI runs the binary as a user would, finding the server through
// its data dir.
func (s *server) deltadiskCLI(args ...string) cliResult {
	s.t.Helper()
	cmd := exec.Command(binary, append(args, "--data-dir", s.dir)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		s.t.Fatalf("deltadisk %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{out.String(), errOut.String(), code}
}

// cliOK runs a client command that must succeed and returns its stdout.
func (s *server) cliOK(args ...string) string {
	s.t.Helper()
	r := s.deltadiskCLI(args...)
	if r.code != 0 || r.stderr != "" {
		s.t.Fatalf("deltadisk %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// TestCLISession drives the az-shaped commands of the real binary against
// the real `deltadisk serve`: a group, a disk, two incremental snapshots,
// the family, the output formats, and a failure's message and exit code.
func TestCLISession(t *testing.T) {
	s := startServer(t, t.TempDir(), "")

	var rg map[string]any
	if err := json.Unmarshal([]byte(s.cliOK("group", "create", "-n", "rg1", "-l", "eastus")), &rg); err != nil || rg["name"] != "rg1" || rg["location"] != "eastus" {
		t.Fatalf("group create: %v, %v", rg, err)
	}
	var disk map[string]any
	if err := json.Unmarshal([]byte(s.cliOK("disk", "create", "-g", "rg1", "-n", "disk1", "--size-gb", "1", "--sku", "Standard_LRS")), &disk); err != nil {
		t.Fatal(err)
	}
	if disk["diskSizeGb"] != 1.0 || disk["location"] != "eastus" || disk["diskState"] != "Unattached" || disk["resourceGroup"] != "rg1" {
		t.Errorf("disk create = %v", disk)
	}

	var snaps []map[string]any
	for _, name := range []string{"snap1", "snap2"} {
		var snap map[string]any
		if err := json.Unmarshal([]byte(s.cliOK("snapshot", "create", "-g", "rg1", "-n", name, "--source", "disk1", "--incremental")), &snap); err != nil {
			t.Fatal(err)
		}
		cd, _ := snap["creationData"].(map[string]any)
		if snap["incremental"] != true || cd["sourceResourceId"] != disk["id"] || cd["sourceUniqueId"] != disk["uniqueId"] {
			t.Errorf("snapshot create %s = %v", name, snap)
		}
		snaps = append(snaps, snap)
	}
	if snaps[0]["incrementalSnapshotFamilyId"] == nil || snaps[0]["incrementalSnapshotFamilyId"] != snaps[1]["incrementalSnapshotFamilyId"] {
		t.Errorf("the snapshots' incrementalSnapshotFamilyId differ: %v, %v", snaps[0]["incrementalSnapshotFamilyId"], snaps[1]["incrementalSnapshotFamilyId"])
	}
	// A full snapshot is not of the family.
	s.cliOK("snapshot", "create", "-g", "rg1", "-n", "full", "--source", "snap1", "-o", "none")

	var family []map[string]any
	if err := json.Unmarshal([]byte(s.cliOK("snapshot", "list", "-g", "rg1", "--source-disk", disk["id"].(string))), &family); err != nil {
		t.Fatal(err)
	}
	if len(family) != 2 || family[0]["name"] != "snap1" || family[1]["name"] != "snap2" {
		t.Errorf("snapshot list --source-disk = %v, want snap1 and snap2", family)
	}

	table := s.cliOK("snapshot", "list", "-g", "rg1", "-o", "table")
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "Name    ResourceGroup    Location    Sku") || !strings.HasPrefix(lines[1], "------  ") ||
		!strings.HasPrefix(lines[3], "snap1   rg1              eastus      Standard_ZRS  1         True") {
		t.Errorf("snapshot list -o table =\n%s", table)
	}
	if got := s.cliOK("snapshot", "list", "-g", "rg1", "--query", "[].name", "-o", "tsv"); got != "full\nsnap1\nsnap2\n" {
		t.Errorf("snapshot list --query [].name -o tsv = %q", got)
	}
	if got := s.cliOK("disk", "show", "-g", "rg1", "-n", "disk1", "--query", "{size: diskSizeGb, state: diskState}", "-o", "tsv"); got != "1\tUnattached\n" {
		t.Errorf("disk show --query {size, state} -o tsv = %q", got)
	}

	r := s.deltadiskCLI("disk", "show", "-g", "rg1", "-n", "missing")
	want := "ERROR: (ResourceNotFound) The Resource 'Microsoft.Compute/disks/missing' under resource group 'rg1' was not found.\n" +
		"Code: ResourceNotFound\n" +
		"Message: The Resource 'Microsoft.Compute/disks/missing' under resource group 'rg1' was not found.\n"
	if r.code != 3 || r.stderr != want || r.stdout != "" {
		t.Errorf("disk show of a missing disk: exit %d, stdout %q, stderr:\n%s\nwant exit 3 and\n%s", r.code, r.stdout, r.stderr, want)
	}
	if r := s.deltadiskCLI("disk", "show", "-g", "rg1", "-n", "disk1", "--no-such-flag"); r.code != 2 || !strings.Contains(r.stderr, "unknown flag: --no-such-flag") {
		t.Errorf("unknown flag: exit %d, stderr %q; want 2", r.code, r.stderr)
	}
	if r := s.deltadiskCLI("disk", "create", "-g", "rg1", "-n", "huge", "--size-gb", "40000"); r.code != 1 || !strings.HasPrefix(r.stderr, "ERROR: (InvalidParameter)") {
		t.Errorf("disk create --size-gb 40000: exit %d, stderr %q; want 1 and InvalidParameter", r.code, r.stderr)
	}
}
