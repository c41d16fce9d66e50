package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/deltadisk/deltadisk/internal/tooltest"
)

// TestNBDExportSecrecy: NBD has no authentication, so an attached disk's
// export name is its only key. The name comes in the attach answer and
// nowhere else: nbdinfo reaches the disk with it, the export list is
// refused and shows no name, the name deltadisk once derived from the disk
// id reaches nothing, and a second attach of the same disk gets a new name
// while the first one stops working.
func TestNBDExportSecrecy(t *testing.T) {
	nbdinfo := tooltest.Path(t, "nbdinfo", "libnbd-bin")
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "d", 1)

	first := srv.attach(t, *disk.ID)
	name := exportOf(t, first)
	if out, err := exec.Command(nbdinfo, first).CombinedOutput(); err != nil {
		t.Fatalf("nbdinfo %s: %v\n%s", first, err, out)
	}
	u, _ := url.Parse(first)
	out, err := exec.Command(nbdinfo, "--list", "nbd://"+u.Host).CombinedOutput()
	if err == nil || strings.Contains(string(out), name) {
		t.Errorf("nbdinfo --list = %v:\n%s\nwant it refused, naming no export", err, out)
	}
	sum := sha256.Sum256([]byte(*disk.ID))
	derived := "nbd://" + u.Host + "/disk-" + hex.EncodeToString(sum[:12])
	if out, err := exec.Command(nbdinfo, derived).CombinedOutput(); err == nil {
		t.Errorf("nbdinfo on the name derived from the disk id reached an export:\n%s", out)
	}

	tok, err := srv.defaultCredential().GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := srv.do(http.MethodPost, *disk.ID+"/detach?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("detach = %d %s", resp.StatusCode, body)
	}
	second := srv.attach(t, *disk.ID)
	if exportOf(t, second) == name {
		t.Errorf("a second attach of the disk exported the same name %q", name)
	}
	if out, err := exec.Command(nbdinfo, first).CombinedOutput(); err == nil {
		t.Errorf("the first attach's name still reaches the disk:\n%s", out)
	}
	if out, err := exec.Command(nbdinfo, second).CombinedOutput(); err != nil {
		t.Errorf("nbdinfo %s: %v\n%s", second, err, out)
	}
}

// exportOf returns the export name of an nbd:// URI, checking it carries
// at least 128 bits of base32 after its prefix.
func exportOf(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nbd" {
		t.Fatalf("nbdUri %q: %v", uri, err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if len(strings.TrimPrefix(name, "disk-")) < 26 {
		t.Fatalf("export name %q is too short to be unguessable", name)
	}
	return name
}
