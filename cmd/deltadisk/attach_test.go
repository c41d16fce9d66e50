package main_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// attachDisk attaches a disk through the deltadisk extension and returns
// its nbd:// URI.
func attachDisk(t *testing.T, srv *server, diskID string) string {
	t.Helper()
	tok, err := srv.defaultCredential().GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := srv.do(http.MethodPost, diskID+"/attach?api-version=2024-03-02", tok.Token, nil)
	var exp struct {
		NBDURI string `json:"nbdUri"`
	}
	if err := json.Unmarshal(body, &exp); resp.StatusCode != http.StatusOK || err != nil || exp.NBDURI == "" {
		t.Fatalf("attach = %d %s", resp.StatusCode, body)
	}
	return exp.NBDURI
}

// TestAttachWriteBack: writes to an attached disk are buffered until a
// flush, yet a snapshot taken while it is attached holds the writes made
// before it, flushed or not; and writes flushed survive a SIGKILL.
func TestAttachWriteBack(t *testing.T) {
	nbdcopy := tooltest.Path(t, "nbdcopy", "libnbd-bin")
	qemuIO := tooltest.Path(t, "qemu-io", "qemu-utils")
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "d", 1)
	uri := attachDisk(t, srv, *disk.ID)

	// nbdcopy without --flush sends no flush: 3 MiB of 4 KiB writes at
	// odd places would sit in the buffer for a few seconds.
	data := randomBytes(3<<20, 7)
	src := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nbdcopy, "--request-size=4096", src, uri).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, out)
	}
	c.mustSnapshot(t, "rg", "s1", *disk.ID)
	pc := srv.pageClient(c.grantSAS(t, "rg", "s1", false, armcompute.AccessLevelRead))
	if got := readRange(t, pc, 0, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("a snapshot of the attached disk misses writes made before it")
	}

	// A flushed write survives a SIGKILL; the restart ends the attachment.
	out, err := exec.Command(qemuIO, "-f", "raw", uri, "-c", "write -P 0x5a 5m 1m", "-c", "flush").CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("fail")) {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	srv.stopped = true
	_ = srv.cmd.Process.Kill()
	_ = srv.cmd.Wait()
	srv.start()
	c = srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.mustSnapshot(t, "rg", "s2", *disk.ID)
	pc = srv.pageClient(c.grantSAS(t, "rg", "s2", false, armcompute.AccessLevelRead))
	if got := readRange(t, pc, 5<<20, 1<<20); !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, 1<<20)) {
		t.Error("a flushed write to an attached disk was lost with a SIGKILL")
	}
	if got := readRange(t, pc, 0, int64(len(data))); !bytes.Equal(got, data) {
		t.Error("writes committed by the first snapshot were lost with a SIGKILL")
	}
}
