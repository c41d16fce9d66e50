package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/tooltest"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// TestAzSession drives `deltadisk serve` with the real az CLI (Debian's
// azure-cli 2.45), set up in a config dir of its own by
// `deltadisk az-setup --apply`, through the session a user of incremental
// snapshots types: disks, data written between incremental snapshots, the
// jq filter that selects one disk's family, a download with curl, copies,
// errors and a template deployment. Each step's output is checked.
//
// Without az (or jq, curl) the test is skipped, unless DELTADISK_CI is set,
// where it fails.
func TestAzSession(t *testing.T) {
	if testing.Short() {
		t.Skip("the az session takes a minute or two")
	}
	tooltest.Path(t, "az", "azure-cli")
	tooltest.Path(t, "jq", "jq")
	tooltest.Path(t, "curl", "curl")
	began := time.Now()
	srv := startServer(t, t.TempDir(), "")
	az := azSetup(t, srv, filepath.Join(t.TempDir(), "az config"))
	defer func() {
		t.Logf("az session: %d az calls and az-setup runs took %v; the test %v",
			az.calls, az.spent.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}()

	var acct struct {
		EnvironmentName, ID, TenantID string
		User                          struct{ Name, Type string }
	}
	az.json(&acct, "account", "show")
	if acct.EnvironmentName != "deltadisk" || acct.ID != srv.creds.SubscriptionID || acct.TenantID != srv.creds.TenantID ||
		acct.User.Name != srv.creds.ClientID || acct.User.Type != "servicePrincipal" {
		t.Fatalf("az account show = %+v, want cloud deltadisk, subscription %s, tenant %s, service principal %s",
			acct, srv.creds.SubscriptionID, srv.creds.TenantID, srv.creds.ClientID)
	}

	var group struct {
		ID, Name, Location string
		Properties         struct{ ProvisioningState string }
	}
	az.json(&group, "group", "create", "-n", "rg", "-l", "eastus")
	if group.Name != "rg" || group.Location != "eastus" || group.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("az group create = %+v", group)
	}

	// Disk d1 and three incremental snapshots with writes between them.
	d1 := az.createDisk("d1", "--size-gb", "1", "-l", "eastus", "--sku", "Standard_LRS")
	if d1.DiskSizeGB != 1 || d1.DiskSizeBytes != oneGiB || d1.Sku.Name != "Standard_LRS" || d1.CreationData.CreateOption != "Empty" ||
		d1.DiskState != "Unattached" || d1.Location != "eastus" || d1.UniqueID == "" || d1.TimeCreated == "" {
		t.Fatalf("az disk create d1 = %+v", d1)
	}
	img := &azImage{size: oneGiB}
	writes := [][]azWrite{
		{{0, blobData(1<<20, 1)}, {300 << 20, blobData(64<<10, 2)}},
		{{512 << 10, blobData(256<<10, 3)}, {700<<20 + 512, blobData(4<<10, 4)}},
		{{oneGiB - 64<<10, blobData(64<<10, 5)}},
	}
	var snaps []azResource
	for i, w := range writes {
		az.write("d1", img, w...)
		s := az.createSnapshot(fmt.Sprintf("s%d", i+1), "--source", d1.ID, "--incremental", "-l", "eastus")
		s.checkCopyOf(t, d1, true)
		snaps = append(snaps, s)
	}

	// Disk d2 is deleted and re-created under its name (with --no-wait,
	// which prints nothing); each incarnation gets a snapshot.
	d2old := az.createDisk("d2", "--size-gb", "1", "--sku", "Standard_LRS")
	az.createSnapshot("d2-old-snap", "--source", d2old.ID, "--incremental", "-l", "eastus").checkCopyOf(t, d2old, true)
	if out := az.ok("disk", "delete", "-g", "rg", "-n", "d2", "--yes"); out != "" {
		t.Errorf("az disk delete printed %q, want nothing", out)
	}
	if out := az.ok("disk", "create", "-g", "rg", "-n", "d2", "--size-gb", "1", "--sku", "Standard_LRS", "--no-wait"); out != "" {
		t.Errorf("az disk create --no-wait printed %q, want nothing", out)
	}
	var d2 azResource
	az.json(&d2, "disk", "show", "-g", "rg", "-n", "d2")
	if d2.ID != d2old.ID || d2.UniqueID == d2old.UniqueID || d2.ProvisioningState != "Succeeded" {
		t.Fatalf("re-created d2 = %+v, want the old id %s with a new uniqueId (old %s)", d2, d2old.ID, d2old.UniqueID)
	}
	az.createSnapshot("d2-new-snap", "--source", d2.ID, "--incremental", "-l", "eastus").checkCopyOf(t, d2, true)

	t.Run("family filter", func(t *testing.T) {
		list := az.ok("snapshot", "list", "-g", "rg", "-o", "json")
		for _, tc := range []struct {
			disk azResource
			want []string
		}{
			{d1, []string{"s1", "s2", "s3"}},
			{d2, []string{"d2-new-snap"}},
			{d2old, []string{"d2-old-snap"}},
		} {
			if got := azFamily(t, list, tc.disk); !slices.Equal(got, tc.want) {
				t.Errorf("the jq family filter for %s (uniqueId %s) selects %q, want %q", tc.disk.Name, tc.disk.UniqueID, got, tc.want)
			}
		}
	})

	t.Run("download", func(t *testing.T) {
		// The last snapshot whole, with curl: every write, then a footer.
		sas := az.grant("snapshot", "s3", "Read")
		path := filepath.Join(t.TempDir(), "s3.vhd")
		az.curl(sas, "-o", path)
		azCheckVHD(t, path, img)
		// The first one in ranges: only the first writes.
		sas = az.grant("snapshot", "s1", "Read")
		for _, r := range []struct {
			off, n int64
			want   []byte
		}{
			{0, 1 << 20, writes[0][0].data},
			{300 << 20, 64 << 10, writes[0][1].data},
			{700<<20 + 512, 4 << 10, make([]byte, 4<<10)},
			{oneGiB - 64<<10, 64 << 10, make([]byte, 64<<10)},
		} {
			got := az.curl(sas, "-r", fmt.Sprintf("%d-%d", r.off, r.off+r.n-1))
			if !bytes.Equal(got, r.want) {
				t.Errorf("s1 at %d+%d: %d bytes that differ from what was written before it", r.off, r.n, len(got))
			}
		}
	})

	t.Run("copies", func(t *testing.T) {
		// A disk from an incremental snapshot (az's default SKU, Premium).
		d3 := az.createDisk("d3", "--source", snaps[0].ID)
		d3.checkCopyOf(t, snaps[0], false)
		if d3.DiskSizeGB != 1 || d3.Sku.Name != "Premium_LRS" {
			t.Errorf("az disk create --source s1 = %+v, want 1 GiB, Premium_LRS", d3)
		}
		// A full snapshot from an incremental one.
		full := az.createSnapshot("s2-full", "--source", snaps[1].ID)
		full.checkCopyOf(t, snaps[1], false)
		// A disk awaiting an upload.
		up := az.createDisk("up", "--upload-type", "Upload", "--upload-size-bytes", strconv.Itoa(32<<20+512), "--sku", "Standard_LRS")
		if up.DiskState != "ReadyToUpload" || up.CreationData.CreateOption != "Upload" {
			t.Errorf("az disk create --upload-type Upload = %+v, want diskState ReadyToUpload", up)
		}
		// show --query -o tsv, update, delete, list -o table.
		tsv := az.ok("disk", "show", "-g", "rg", "-n", "d1", "--query", "[uniqueId, diskState, diskSizeGb]", "-o", "tsv")
		if want := d1.UniqueID + "\nUnattached\n1\n"; tsv != want {
			t.Errorf("az disk show --query -o tsv = %q, want %q", tsv, want)
		}
		var d3big azResource
		az.json(&d3big, "disk", "update", "-g", "rg", "-n", "d3", "--size-gb", "2")
		if d3big.DiskSizeGB != 2 || d3big.DiskSizeBytes != 2*oneGiB || d3big.UniqueID != d3.UniqueID {
			t.Errorf("az disk update --size-gb 2 = %+v", d3big)
		}
		if out := az.ok("disk", "delete", "-g", "rg", "-n", "up", "--yes"); out != "" {
			t.Errorf("az disk delete printed %q, want nothing", out)
		}
		table := az.ok("disk", "list", "-g", "rg", "-o", "table")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 5 || !strings.HasPrefix(lines[0], "Name ") || !strings.Contains(lines[0], "SizeGb") {
			t.Fatalf("az disk list -o table =\n%s\nwant a header, a rule and d1, d2, d3", table)
		}
		var names []string
		for _, l := range lines[2:] {
			f := strings.Fields(l)
			names = append(names, f[0])
			if !slices.Contains(f, "rg") || !slices.Contains(f, "eastus") || !slices.Contains(f, "Succeeded") {
				t.Errorf("az disk list -o table row %q lacks its group, location or state", l)
			}
		}
		if slices.Sort(names); !slices.Equal(names, []string{"d1", "d2", "d3"}) {
			t.Errorf("az disk list -o table lists %q, want d1 d2 d3", names)
		}
	})

	t.Run("errors", func(t *testing.T) {
		out, stderr, code := az.run("disk", "show", "-g", "rg", "-n", "missing", "--only-show-errors", "-o", "json")
		if code != 3 || out != "" || !strings.Contains(stderr, "(ResourceNotFound)") || !strings.Contains(stderr, "missing") {
			t.Errorf("az disk show of a missing disk: exit %d, stdout %q, stderr %q; want exit 3 and ResourceNotFound", code, out, stderr)
		}
		_, stderr, code = az.run("disk", "create", "-g", "rg", "-n", "bad", "--size-gb", "0", "--sku", "Standard_LRS", "--only-show-errors", "-o", "json")
		if code != 1 || !strings.Contains(stderr, "(InvalidParameter)") || !strings.Contains(stderr, "diskSizeGB") {
			t.Errorf("az disk create --size-gb 0: exit %d, stderr %q; want exit 1 and InvalidParameter", code, stderr)
		}
	})

	t.Run("deployment", func(t *testing.T) {
		dir := t.TempDir()
		tmpl := filepath.Join(dir, "t.json")
		if err := os.WriteFile(tmpl, []byte(azTemplate), 0o644); err != nil {
			t.Fatal(err)
		}
		params := filepath.Join(dir, "params.json")
		pj := fmt.Sprintf(`{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {"diskName": {"value": %q}, "diskResourceId": {"value": %q}}}`, d2.Name, d2.ID)
		if err := os.WriteFile(params, []byte(pj), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			disk azResource
			args []string
		}{
			{d1, []string{"--parameters", "diskName=" + d1.Name, "diskResourceId=" + d1.ID}},
			{d2, []string{"-n", "from-file", "--parameters", "@" + params}},
		} {
			var dep struct {
				Name       string
				Properties struct {
					ProvisioningState string
					OutputResources   []struct{ ID string }
				}
			}
			az.json(&dep, slices.Concat([]string{"deployment", "group", "create", "-g", "rg", "--template-file", tmpl}, tc.args)...)
			wantID := strings.TrimSuffix(tc.disk.ID, "/disks/"+tc.disk.Name) + "/snapshots/" + tc.disk.Name + "_snapshot1"
			if dep.Properties.ProvisioningState != "Succeeded" || len(dep.Properties.OutputResources) != 1 ||
				!strings.EqualFold(dep.Properties.OutputResources[0].ID, wantID) {
				t.Errorf("az deployment group create %q = %+v, want Succeeded with output resource %s", tc.args, dep, wantID)
			}
			var s azResource
			az.json(&s, "snapshot", "show", "-g", "rg", "-n", tc.disk.Name+"_snapshot1")
			s.checkCopyOf(t, tc.disk, true)
		}
	})

	t.Run("rerun after restart", func(t *testing.T) {
		// The server comes back on another port; az-setup again updates the
		// cloud and logs in again.
		srv.restart()
		again := azSetup(t, srv, az.dir)
		if got := again.ok("disk", "show", "-g", "rg", "-n", "d1", "--query", "uniqueId", "-o", "tsv"); got != d1.UniqueID+"\n" {
			t.Errorf("az disk show after the restart = %q, want %q", got, d1.UniqueID+"\n")
		}
		az.calls, az.spent = az.calls+again.calls, az.spent+again.spent
	})
}

// azTemplate is the template of issue 5: an incremental snapshot of
// a disk, at apiVersion 2019-03-01. az sends it verbatim, comments too.
const azTemplate = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "diskName": {"type": "string"},
    "diskResourceId": {"type": "string"}
  },
  "resources": [
    {
      // An incremental snapshot named after its disk.
      "type": "Microsoft.Compute/snapshots",
      "apiVersion": "2019-03-01",
      "name": "[concat(parameters('diskName'),'_snapshot1')]",
      "location": "[resourceGroup().location]",
      "properties": {
        "creationData": {
          "createOption": "Copy",
          "sourceResourceId": "[parameters('diskResourceId')]"
        },
        "incremental": true
      }
    }
  ]
}
`

// azSession runs az in the environment az-setup gave it.
type azSession struct {
	t      *testing.T
	srv    *server
	env    []string
	bundle string // REQUESTS_CA_BUNDLE, which curl trusts too
	dir    string // AZURE_CONFIG_DIR
	calls  int
	spent  time.Duration
}

// azBaseEnv is the test's environment without anything that points az
// elsewhere.
func azBaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "AZURE_") && name != "REQUESTS_CA_BUNDLE" && name != "ARM_CLOUD_METADATA_URL" && name != "SSL_CERT_FILE" {
			env = append(env, kv)
		}
	}
	return env
}

// azSetup runs `deltadisk az-setup --apply` for srv with configDir and
// returns a session in the environment it prints.
func azSetup(t *testing.T, srv *server, configDir string) *azSession {
	t.Helper()
	began := time.Now()
	cmd := exec.CommandContext(t.Context(), binary, "az-setup", "--data-dir", srv.dir, "--config-dir", configDir, "--apply")
	cmd.Env = azBaseEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deltadisk az-setup --apply: %v\n%s", err, stderr.String())
	}
	spent := time.Since(began)
	t.Logf("deltadisk az-setup --apply (%v)", spent.Round(time.Millisecond))
	// The printed lines, evaluated by a shell.
	sh := exec.CommandContext(t.Context(), "sh", "-c",
		`eval "$1" && printf '%s\n' "$AZURE_CONFIG_DIR" "$REQUESTS_CA_BUNDLE" "$AZURE_CORE_COLLECT_TELEMETRY"`, "sh", string(out))
	vals, err := sh.Output()
	if err != nil {
		t.Fatalf("sh -c 'eval <az-setup output>': %v; output:\n%s", err, out)
	}
	v := strings.Split(strings.TrimSuffix(string(vals), "\n"), "\n")
	if len(v) != 3 || v[0] != configDir || v[2] != "false" {
		t.Fatalf("az-setup --apply printed\n%s\nwhich sets %q; want AZURE_CONFIG_DIR=%s and telemetry off", out, v, configDir)
	}
	bundle, err := os.ReadFile(v[1])
	if err != nil {
		t.Fatalf("REQUESTS_CA_BUNDLE: %v", err)
	}
	ca, err := os.ReadFile(srv.creds.CACertFile)
	if err != nil || !bytes.Contains(bundle, ca) {
		t.Fatalf("the CA bundle %s does not hold deltadisk's CA (%v)", v[1], err)
	}
	if sys, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil && !bytes.Contains(bundle, sys) {
		t.Errorf("the CA bundle %s does not hold the system's CAs", v[1])
	}
	return &azSession{
		t:      t,
		srv:    srv,
		env:    append(azBaseEnv(), "AZURE_CONFIG_DIR="+v[0], "REQUESTS_CA_BUNDLE="+v[1], "AZURE_CORE_COLLECT_TELEMETRY="+v[2]),
		bundle: v[1], dir: v[0], calls: 1, spent: spent,
	}
}

// run runs az and returns its output and exit code.
func (a *azSession) run(args ...string) (stdout, stderr string, code int) {
	a.t.Helper()
	cmd := exec.CommandContext(a.t.Context(), "az", args...)
	cmd.Env = a.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	began := time.Now()
	err := cmd.Run()
	d := time.Since(began)
	a.calls++
	a.spent += d
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		a.t.Fatalf("az %s: %v", strings.Join(args, " "), err)
	}
	a.t.Logf("az %s → exit %d (%v)", strings.Join(args, " "), code, d.Round(time.Millisecond))
	return out.String(), errOut.String(), code
}

// ok runs az, which must succeed without a word on stderr.
func (a *azSession) ok(args ...string) string {
	a.t.Helper()
	out, stderr, code := a.run(args...)
	if code != 0 || stderr != "" {
		a.t.Fatalf("az %s: exit %d\nstdout:\n%s\nstderr:\n%s\nserver log (tail):\n%s",
			strings.Join(args, " "), code, out, stderr, azTail(a.srv.stderr.String(), 20))
	}
	return out
}

// json runs az with JSON output into v, which must take every field.
func (a *azSession) json(v any, args ...string) {
	a.t.Helper()
	out := a.ok(append(args, "--only-show-errors", "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("az %s printed %q: %v", strings.Join(args, " "), out, err)
	}
}

func azTail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// azResource is a disk or snapshot as az prints it (properties
// flattened).
type azResource struct {
	ID, Name, Location, Type string
	ProvisioningState        string
	DiskSizeGB               int   `json:"diskSizeGb"`
	DiskSizeBytes            int64 `json:"diskSizeBytes"`
	DiskState                string
	UniqueID                 string `json:"uniqueId"`
	TimeCreated              string
	Incremental              *bool
	Sku                      struct{ Name, Tier string }
	CreationData             struct {
		CreateOption     string
		SourceResourceID string `json:"sourceResourceId"`
		SourceUniqueID   string `json:"sourceUniqueId"`
	}
}

func (a *azSession) createDisk(name string, args ...string) azResource {
	a.t.Helper()
	var d azResource
	a.json(&d, slices.Concat([]string{"disk", "create", "-g", "rg", "-n", name}, args)...)
	if d.Name != name || d.Type != "Microsoft.Compute/disks" || d.ProvisioningState != "Succeeded" ||
		!strings.HasSuffix(d.ID, "/resourceGroups/rg/providers/Microsoft.Compute/disks/"+name) {
		a.t.Fatalf("az disk create %s = %+v", name, d)
	}
	return d
}

func (a *azSession) createSnapshot(name string, args ...string) azResource {
	a.t.Helper()
	var s azResource
	a.json(&s, slices.Concat([]string{"snapshot", "create", "-g", "rg", "-n", name}, args)...)
	if s.Name != name || s.Type != "Microsoft.Compute/snapshots" || s.ProvisioningState != "Succeeded" ||
		!strings.HasSuffix(s.ID, "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/"+name) || s.Location != "eastus" {
		a.t.Fatalf("az snapshot create %s = %+v", name, s)
	}
	return s
}

// checkCopyOf checks that r (a snapshot, or a disk made from one) was
// copied from src, and whether it is incremental (snapshots only).
func (r azResource) checkCopyOf(t *testing.T, src azResource, incremental bool) {
	t.Helper()
	c := r.CreationData
	if c.CreateOption != "Copy" || c.SourceResourceID != src.ID || c.SourceUniqueID != src.UniqueID ||
		r.UniqueID == "" || r.UniqueID == src.UniqueID || r.DiskSizeGB != src.DiskSizeGB {
		t.Errorf("%s: creationData %+v, uniqueId %s, size %d GiB; want a copy of %s (uniqueId %s, %d GiB)",
			r.Name, c, r.UniqueID, r.DiskSizeGB, src.ID, src.UniqueID, src.DiskSizeGB)
	}
	if strings.HasSuffix(r.Type, "/snapshots") && (r.Incremental == nil || *r.Incremental != incremental) {
		t.Errorf("%s: incremental %v, want %v", r.Name, r.Incremental, incremental)
	}
}

// grant runs grant-access on a disk or snapshot and returns the SAS URL.
func (a *azSession) grant(kind, name, access string) string {
	a.t.Helper()
	var g struct {
		AccessSas string `json:"accessSas"`
	}
	args := []string{kind, "grant-access", "-g", "rg", "-n", name, "--duration-in-seconds", "3600"}
	if kind == "disk" {
		args = append(args, "--access-level", access)
	}
	a.json(&g, args...)
	if !strings.HasPrefix(g.AccessSas, "https://") {
		a.t.Fatalf("az %s grant-access %s printed accessSas %q", kind, name, g.AccessSas)
	}
	return g.AccessSas
}

// azWrite is data to write at off.
type azWrite struct {
	off  int64
	data []byte
}

// azImage is what a disk holds: zeros, then writes in order.
type azImage struct {
	size   int64
	writes []azWrite
}

// write changes a disk through a Write grant (deltadisk's extension; az
// has no Put Page), with Put Page from Go, and records it in img.
func (a *azSession) write(disk string, img *azImage, ws ...azWrite) {
	a.t.Helper()
	sas := a.grant("disk", disk, "Write")
	for _, w := range ws {
		req, err := http.NewRequestWithContext(a.t.Context(), http.MethodPut, sas+"&comp=page", bytes.NewReader(w.data))
		if err != nil {
			a.t.Fatal(err)
		}
		req.Header.Set("x-ms-version", "2021-12-02")
		req.Header.Set("x-ms-page-write", "update")
		req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", w.off, w.off+int64(len(w.data))-1))
		resp, err := a.srv.httpc.Do(req)
		if err != nil {
			a.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			a.t.Fatalf("Put Page %d+%d: %s\n%s", w.off, len(w.data), resp.Status, body)
		}
		img.writes = append(img.writes, w)
	}
	if out := a.ok("disk", "revoke-access", "-g", "rg", "-n", disk); out != "" {
		a.t.Errorf("az disk revoke-access printed %q, want nothing", out)
	}
}

// sum is the SHA-256 of the image.
func (img *azImage) sum() [32]byte {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < img.size; off += int64(len(buf)) {
		clear(buf)
		for _, w := range img.writes {
			lo, hi := max(off, w.off), min(off+int64(len(buf)), w.off+int64(len(w.data)))
			if lo < hi {
				copy(buf[lo-off:hi-off], w.data[lo-w.off:hi-w.off])
			}
		}
		h.Write(buf)
	}
	return [32]byte(h.Sum(nil))
}

// curl fetches a SAS URL with curl, trusting az's CA bundle, and returns
// what it printed.
func (a *azSession) curl(url string, args ...string) []byte {
	a.t.Helper()
	cmd := exec.CommandContext(a.t.Context(), "curl", slices.Concat([]string{"-sS", "--fail", "--cacert", a.bundle}, args, []string{url})...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	out, err := cmd.Output()
	if err != nil {
		a.t.Fatalf("curl %q: %v\n%s", args, err, stderr.String())
	}
	a.t.Logf("curl %s (%v)", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	return out
}

// azCheckVHD checks a downloaded snapshot: the image's bytes, then a valid
// fixed VHD footer of its size, which qemu-img reads.
func azCheckVHD(t *testing.T, path string, img *azImage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != img.size+vhd.FooterSize {
		t.Fatalf("downloaded %d bytes, want %d (the disk and a footer)", fi.Size(), img.size+vhd.FooterSize)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, img.size); err != nil {
		t.Fatal(err)
	}
	if got, want := [32]byte(h.Sum(nil)), img.sum(); got != want {
		t.Errorf("downloaded data hash %x, want %x (what was written)", got, want)
	}
	footer := make([]byte, vhd.FooterSize)
	if _, err := io.ReadFull(f, footer); err != nil {
		t.Fatal(err)
	}
	ft, err := vhd.Parse(footer)
	if err == nil {
		err = ft.ValidateUpload(fi.Size())
	}
	if err != nil {
		t.Errorf("footer: %v", err)
	}
	if size, ok := qemuCheck(t, path); ok && size != img.size {
		t.Errorf("qemu-img reads a virtual size of %d, want %d", size, img.size)
	}
}

// azFamily runs the jq filter that selects one disk's incremental
// snapshots from `az snapshot list -o json`, and returns their names,
// sorted.
func azFamily(t *testing.T, list string, disk azResource) []string {
	t.Helper()
	const filter = `[.[] | select(.incremental == true
	    and .creationData.sourceUniqueId == $uid
	    and .creationData.sourceResourceId == $id) | .name] | sort | .[]`
	cmd := exec.CommandContext(t.Context(), "jq", "-r", "--arg", "uid", disk.UniqueID, "--arg", "id", disk.ID, filter)
	cmd.Stdin = strings.NewReader(list)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	return strings.Fields(string(out))
}
