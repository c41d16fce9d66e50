package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/deltadisk/deltadisk/internal/tooltest"
)

// TestAttach: a disk attached over NBD takes writes from qemu-io, refuses a
// second attach and any grant, and after detach a snapshot holds the
// writes (read back through a SAS).
func TestAttach(t *testing.T) {
	qemuIO := tooltest.Path(t, "qemu-io", "qemu-utils")
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "d", 1)
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := srv.do(http.MethodPost, *disk.ID+"/attach?api-version=2024-03-02", tok.Token, nil)
	var exp struct {
		NBDURI     string `json:"nbdUri"`
		NBDUnixURI string `json:"nbdUnixUri"`
		ManagedBy  string `json:"managedBy"`
	}
	if err := json.Unmarshal(body, &exp); resp.StatusCode != http.StatusOK || err != nil || exp.NBDURI == "" {
		t.Fatalf("attach = %d %s", resp.StatusCode, body)
	}
	got, _ := c.disks.Get(ctx, "rg", "d", nil)
	if *got.Properties.DiskState != armcompute.DiskStateAttached || got.ManagedBy == nil || *got.ManagedBy != srv.creds.ClientID {
		t.Errorf("attached disk: state %v managedBy %v", *got.Properties.DiskState, got.ManagedBy)
	}
	if resp, body := srv.do(http.MethodPost, *disk.ID+"/attach?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("second attach = %d %s, want 409", resp.StatusCode, body)
	}
	_, err = c.disks.BeginGrantAccess(ctx, "rg", "d", armcompute.GrantAccessData{Access: new(armcompute.AccessLevelRead), DurationInSeconds: new(int32(60))}, nil)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")

	// Unaligned writes, a zeroed range, over TCP and over the unix socket.
	for _, uri := range []string{exp.NBDURI, exp.NBDUnixURI} {
		out, err := exec.Command(qemuIO, "-f", "raw", uri,
			"-c", "write -P 0xab 1000 3000", "-c", "write -P 0xcd 1m 64k", "-c", "flush", "-c", "read -P 0xab 1000 3000").CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("fail")) {
			t.Fatalf("qemu-io on %s: %v\n%s", uri, err, out)
		}
	}
	if resp, body := srv.do(http.MethodPost, *disk.ID+"/detach?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("detach = %d %s", resp.StatusCode, body)
	}
	if out, err := exec.Command(qemuIO, "-f", "raw", exp.NBDURI, "-c", "read 0 512").CombinedOutput(); err == nil {
		t.Errorf("the export still serves after detach:\n%s", out)
	}
	snap := c.mustSnapshot(t, "rg", "s", *disk.ID)
	sas := c.grantSAS(t, "rg", "s", false, armcompute.AccessLevelRead)
	pc := srv.pageClient(sas)
	if b := readRange(t, pc, 1000, 3000); !bytes.Equal(b, bytes.Repeat([]byte{0xab}, 3000)) {
		t.Errorf("snapshot %s lacks the NBD write at 1000", *snap.Name)
	}
	if b := readRange(t, pc, 1<<20, 64<<10); !bytes.Equal(b, bytes.Repeat([]byte{0xcd}, 64<<10)) {
		t.Errorf("snapshot lacks the NBD write at 1 MiB")
	}
	if b := readRange(t, pc, 0, 1000); !bytes.Equal(b, make([]byte, 1000)) {
		t.Errorf("bytes before the write changed")
	}
}
