package main_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/deltadisk/deltadisk/internal/tooltest"
)

// TestFullFilesystem runs the server with its data dir on a small tmpfs
// and fills it. Writes are then refused with 507 InsufficientStorage, a
// message that says so, and a log line naming the path (not 503
// ServerBusy, which clients retry without end); an ARM write is a 507 or
// succeeds, never a bare 500; an NBD write gets ENOSPC. The server restarts
// on the full filesystem (it writes nothing at start when nothing changed),
// still reads what it had, and takes writes again once space is freed.
func TestFullFilesystem(t *testing.T) {
	qemuIO := tooltest.Path(t, "qemu-io", "qemu-utils")
	dir := mountTmpfs(t, "64m")
	// A restart must come back on the same address, or credentials.json
	// would change.
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerOnPort(t, dir, port)
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	c.emptyDisk(t, "rg", "d", 1)
	attached := c.emptyDisk(t, "rg", "nbd", 1)
	exp := srv.attach(t, *attached.ID)
	sas := c.grantSAS(t, "rg", "d", true, armcompute.AccessLevelWrite)
	// Space to free at the end, taken before the server fills the rest.
	reserve := filepath.Join(filepath.Dir(dir), "reserve")
	if err := os.WriteFile(reserve, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := srv.pageClient(sas)

	// Fill: 4 MiB of incompressible data at a time until a write is
	// refused, then whatever space is left with a file of our own.
	const step = 4 << 20
	p := make([]byte, step)
	var written int64
	var re *azcore.ResponseError
	for {
		if written+step > 1<<30 {
			t.Fatalf("wrote %d bytes to a 64 MiB filesystem without a refusal", written)
		}
		dataPattern(p, written, 1)
		_, err := pc.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(p)), blob.HTTPRange{Offset: written, Count: step}, nil)
		if err == nil {
			written += step
			continue
		}
		if !errors.As(err, &re) || re.StatusCode != http.StatusInsufficientStorage || re.ErrorCode != "InsufficientStorage" {
			t.Fatalf("Put Page on a full filesystem after %d bytes: %v; want 507 InsufficientStorage", written, err)
		}
		break
	}
	if written == 0 {
		t.Fatal("the first write was refused: the filesystem was full before the test wrote")
	}
	fillUp(t, filepath.Join(filepath.Dir(dir), "filler"))

	dataPattern(p, written, 1)
	_, err = pc.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(p)), blob.HTTPRange{Offset: written, Count: step}, nil)
	if !errors.As(err, &re) || re.StatusCode != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Put Page with no byte free: %v; want 507 saying there is no space left", err)
	}
	// An ARM write needs the metadata file to grow, or not: either it
	// works or it says the storage is full.
	if _, err := c.disks.BeginCreateOrUpdate(t.Context(), "rg", "more", armcompute.Disk{
		Location: new("eastus"),
		Properties: &armcompute.DiskProperties{
			CreationData: &armcompute.CreationData{CreateOption: new(armcompute.DiskCreateOptionEmpty)},
			DiskSizeGB:   new(int32(1)),
		},
	}, nil); err != nil && (!errors.As(err, &re) || re.StatusCode != http.StatusInsufficientStorage || re.ErrorCode != "InsufficientStorage") {
		t.Errorf("disk PUT with no byte free: %v; want success or 507 InsufficientStorage", err)
	}
	src := filepath.Join(t.TempDir(), "random")
	dataPattern(p, 0, 2)
	if err := os.WriteFile(src, p[:1<<20], 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(qemuIO, "-f", "raw", exp, "-c", "write -s "+src+" 0 1M").CombinedOutput()
	if !strings.Contains(string(out), "No space left on device") {
		t.Errorf("qemu-io write over NBD with no byte free:\n%s\nwant ENOSPC", out)
	}

	// The log names what is full, and where.
	srv.stop()
	if log := srv.stderr.String(); !strings.Contains(log, "storage full") || !strings.Contains(log, filepath.Join(dir, "zones")) {
		t.Errorf("the server's log does not name the full store's path:\n%s", log)
	}

	// Start on the full filesystem; what was written reads back.
	srv = startServerOnPort(t, dir, port)
	pc = srv.pageClient(sas) // the grant outlives the restart
	for _, off := range []int64{0, written - step} {
		dataPattern(p, off, 1)
		if got := readRange(t, pc, off, step); !bytes.Equal(got, p) {
			t.Errorf("after the restart the disk reads other data at %d", off)
		}
	}

	// Space back: writes are taken again.
	for _, f := range []string{reserve, filepath.Join(filepath.Dir(dir), "filler")} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	dataPattern(p, 0, 3)
	uploadPages(t, pc, p, 0)
	if got := readRange(t, pc, 0, step); !bytes.Equal(got, p) {
		t.Errorf("the write taken once space was freed does not read back")
	}
}

// mountTmpfs mounts a tmpfs of size on a new directory until the test
// ends. Mounting needs root, or sudo without a password; without either
// the test skips, and fails in CI (DELTADISK_CI set), which has them.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	opts := fmt.Sprintf("size=%s,mode=0700,uid=%d,gid=%d", size, os.Getuid(), os.Getgid())
	mount := []string{"mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir}
	umount := []string{"umount", dir}
	if os.Geteuid() != 0 {
		mount = append([]string{"sudo", "-n"}, mount...)
		umount = append([]string{"sudo", "-n"}, umount...)
	}
	if out, err := exec.Command(mount[0], mount[1:]...).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("mounting a tmpfs needs root or passwordless sudo: %v\n%s", err, out)
		if os.Getenv("DELTADISK_CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(umount[0], umount[1:]...).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v\n%s", dir, err, out)
		}
	})
	return filepath.Join(dir, "data")
}

// fillUp writes path until the filesystem has no byte left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for size := len(buf); size > 0; {
		if _, err := f.Write(buf[:size]); err != nil {
			size /= 2 // the last pages may take less than a whole buffer
		}
	}
	if _, err := f.Write(buf[:1]); err == nil {
		t.Fatal("the filesystem still takes a byte after filling")
	}
}

// startServerOnPort is startServer on a fixed port, keeping the data dir's
// credentials.json as it is: the server must find nothing to rewrite.
func startServerOnPort(t *testing.T, dir string, port int) *server {
	t.Helper()
	s := &server{t: t, dir: dir, stderr: &bytes.Buffer{}}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s.cmd = exec.Command(binary, "serve", "--data-dir", dir, "--listen", addr)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			s.stop()
			t.Fatalf("deltadisk serve did not become healthy on %s; stderr:\n%s", addr, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
		b, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
		if err != nil || json.Unmarshal(b, &s.creds) != nil {
			continue
		}
		ca, err := os.ReadFile(s.creds.CACertFile)
		if err != nil {
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		s.httpc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
		resp, err := s.httpc.Get("https://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
	}
}

// attach attaches a disk and returns its NBD URI.
func (s *server) attach(t *testing.T, diskID string) string {
	t.Helper()
	tok, err := s.defaultCredential().GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{s.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := s.do(http.MethodPost, diskID+"/attach?api-version=2024-03-02", tok.Token, nil)
	var exp struct {
		NBDURI string `json:"nbdUri"`
	}
	if err := json.Unmarshal(body, &exp); resp.StatusCode != http.StatusOK || err != nil || exp.NBDURI == "" {
		t.Fatalf("attach = %d %s", resp.StatusCode, body)
	}
	return exp.NBDURI
}
