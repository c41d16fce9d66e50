package main_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// These tests cover what TestCopyStart does not: a copy that a restart
// (SIGKILL, then SIGTERM) interrupts, the one-copy-at-a-time rule of a
// disk and region while a copy runs, and the bad inputs that must leave no
// trace. A copy reads its source through the server's public URL, so
// running the server behind a dataProxy and throttling it keeps a copy
// running for as long as a test needs, whatever the machine's speed.

// throttledServer is a `deltadisk serve` whose public URL is a dataProxy,
// on a fixed listen address so that it can be killed and started again on
// the same data dir behind the same proxy.
type throttledServer struct {
	*server
	proxy  *dataProxy
	listen string
}

func startThrottledServer(t *testing.T) *throttledServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := tmp.Addr().String()
	tmp.Close()
	ts := &throttledServer{server: &server{t: t, dir: t.TempDir()}, proxy: startDataProxy(t, ln, listen), listen: listen}
	ts.start()
	t.Cleanup(ts.stop)
	return ts
}

// start runs the binary and waits until it answers /healthz through the
// proxy.
func (ts *throttledServer) start() {
	s := ts.server
	t := s.t
	t.Helper()
	credPath := filepath.Join(s.dir, "credentials.json")
	_ = os.Remove(credPath)
	s.cmd = exec.Command(binary, "serve", "--data-dir", s.dir, "--listen", ts.listen,
		"--public-url", "https://"+ts.proxy.ln.Addr().String())
	s.stderr = &bytes.Buffer{}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.stopped = false
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.kill()
			t.Fatalf("deltadisk serve did not become healthy; stderr:\n%s", s.stderr)
		}
		b, err := os.ReadFile(credPath)
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
		if resp, err := s.httpc.Get(s.creds.ResourceManagerURL + "healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
}

// kill ends the server with SIGKILL: nothing is flushed or saved.
func (ts *throttledServer) kill() {
	s := ts.server
	if s.stopped || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// copyBytes is deltadisk_copy_transport_bytes_total: what this run of the
// server has read through the copy transport.
func (ts *throttledServer) copyBytes() int64 {
	t := ts.t
	t.Helper()
	resp, err := ts.httpc.Get(ts.creds.ResourceManagerURL + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "deltadisk_copy_transport_bytes_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %q: %v", sc.Text(), err)
			}
			return int64(f)
		}
	}
	t.Fatalf("/metrics has no deltadisk_copy_transport_bytes_total (err %v)", sc.Err())
	return 0
}

// copyStart PUTs a CopyStart snapshot and returns it, or the refusal.
func (c clients) copyStart(ctx context.Context, rg, name, location, source string) (armcompute.Snapshot, error) {
	p, err := c.snapshots.BeginCreateOrUpdate(ctx, rg, name, armcompute.Snapshot{Location: to.Ptr(location),
		Properties: &armcompute.SnapshotProperties{Incremental: to.Ptr(true),
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopyStart), SourceResourceID: to.Ptr(source)}}}, nil)
	if err != nil {
		return armcompute.Snapshot{}, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	return res.Snapshot, err
}

// copyPercent is a copy target's completionPercent; a copy error fails
// the test.
func (c clients) copyPercent(t *testing.T, rg, name string) float64 {
	t.Helper()
	s, err := c.snapshots.Get(t.Context(), rg, name, nil)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	if e := s.Properties.CopyCompletionError; e != nil {
		t.Fatalf("copy %s failed: %s %s", name, *e.ErrorCode, *e.ErrorMessage)
	}
	if s.Properties.CompletionPercent == nil {
		t.Fatalf("copy %s has no completionPercent", name)
	}
	return float64(*s.Properties.CompletionPercent)
}

// awaitPercent polls a copy until its completionPercent reaches at least
// want, and returns the percent seen. The percent must never go back.
func (c clients) awaitPercent(t *testing.T, rg, name string, want float64, within time.Duration) float64 {
	t.Helper()
	last := -1.0
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		p := c.copyPercent(t, rg, name)
		if p < last {
			t.Fatalf("copy %s went back from %.1f%% to %.1f%%", name, last, p)
		}
		if last = p; p >= want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy %s at %.1f%% after %v; want %.1f%%", name, p, within, want)
		}
	}
}

// copyUsage is the copy accounting GET {snapshot}/usage shows.
type copyUsage struct {
	DiffBytes    int64 `json:"diffBytes"`
	BytesRead    int64 `json:"bytesRead"`
	BytesWritten int64 `json:"bytesWritten"`
	Full         bool  `json:"full"`
	Done         bool  `json:"done"`
}

func (s *server) copyUsage(id string) copyUsage {
	s.t.Helper()
	tok, err := s.defaultCredential().GetToken(s.t.Context(), policy.TokenRequestOptions{Scopes: []string{s.creds.Audience + ".default"}})
	if err != nil {
		s.t.Fatal(err)
	}
	resp, body := s.do(http.MethodGet, id+"/usage?api-version=2024-03-02", tok.Token, nil)
	var u struct{ Copy *copyUsage }
	if err := json.Unmarshal(body, &u); err != nil || resp.StatusCode != http.StatusOK || u.Copy == nil {
		s.t.Fatalf("usage of %s: %d %s", id, resp.StatusCode, body)
	}
	return *u.Copy
}

// copyDiskSize is the size of the disks copied here: small, so that
// hashing a whole disk is cheap; the throttle, not the size, keeps a copy
// running.
const copyDiskSize = 64 << 20

// smallDisk creates a copyDiskSize disk in eastus through an upload of its
// VHD footer alone.
func (s *server) smallDisk(t *testing.T, c clients, rg, name string) armcompute.Disk {
	t.Helper()
	c.uploadDisk(t, rg, name, copyDiskSize+512)
	uploadPages(t, s.pageClient(c.grantSAS(t, rg, name, true, armcompute.AccessLevelWrite)), vhdFooter(t, copyDiskSize), copyDiskSize)
	c.revokeSAS(t, rg, name, true)
	d, err := c.disks.Get(t.Context(), rg, name, nil)
	if err != nil || *d.Properties.DiskState != armcompute.DiskStateUnattached {
		t.Fatalf("disk %s after its upload: %v", name, err)
	}
	return d.Disk
}

// writeExtents writes n separate 512 KiB extents, one every stride bytes
// from off, through a write SAS on the disk, and returns the bytes written.
// Separate extents make separate page ranges, and a copy records its
// progress per range.
func (s *server) writeExtents(t *testing.T, c clients, rg, disk string, n int, off, stride int64, seed byte) int64 {
	t.Helper()
	const extent = 512 << 10
	pc := s.pageClient(c.grantSAS(t, rg, disk, true, armcompute.AccessLevelWrite))
	for i := range n {
		uploadPages(t, pc, blobData(extent, seed+byte(i)), off+int64(i)*stride)
	}
	c.revokeSAS(t, rg, disk, true)
	return int64(n) * extent
}

// sameData fails unless a copy reads byte-identical to its source over
// the whole disk, downloaded through read SAS grants.
func (s *server) sameData(t *testing.T, c clients, srcRG, src, dstRG, dst string) {
	t.Helper()
	a := s.pageClient(c.grantSAS(t, srcRG, src, false, armcompute.AccessLevelRead))
	b := s.pageClient(c.grantSAS(t, dstRG, dst, false, armcompute.AccessLevelRead))
	if h := hashData(t, copyDiskSize, a, b); h[0] != h[1] {
		t.Errorf("copy %s reads differently from its source %s: sha256 %x, want %x", dst, src, h[1], h[0])
	}
	c.revokeSAS(t, srcRG, src, false)
	c.revokeSAS(t, dstRG, dst, false)
}

// TestCopyStartResumesAfterRestart interrupts one copy twice — SIGKILL,
// then SIGTERM — while the throttle holds it mid-way, and checks that the
// progress it recorded survives each restart (completionPercent never
// goes back), that the last run reads only what was left rather than
// starting over, and that the finished copy reads byte-identical to its
// source.
func TestCopyStartResumesAfterRestart(t *testing.T) {
	ctx := t.Context()
	ts := startThrottledServer(t)
	c := ts.clients(ts.creds.SubscriptionID, ts.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westus2")
	disk := ts.smallDisk(t, c, "east", "d")
	// 64 extents of 512 KiB, 1 MiB apart: 32 MiB in 64 page ranges.
	written := ts.writeExtents(t, c, "east", "d", 64, 0, 1<<20, 1)
	src := c.mustSnapshot(t, "east", "s1", *disk.ID)

	// At 4 MiB/s the copy takes 8 s; the server records its progress
	// about once a second.
	const rate = 4 << 20
	ts.proxy.rate.Store(rate)
	cp, err := c.copyStart(ctx, "west", "c1", "westus2", *src.ID)
	if err != nil {
		t.Fatalf("CopyStart: %v", err)
	}
	if p := cp.Properties.CompletionPercent; p == nil || *p != 0 {
		t.Errorf("a new copy shows completionPercent %v, want 0", p)
	}
	p1 := c.awaitPercent(t, "west", "c1", 10, 20*time.Second)
	if p1 >= 100 {
		t.Fatalf("the copy finished (%.1f%%) before it could be interrupted; lower the rate", p1)
	}
	ts.kill()
	t.Logf("SIGKILL at %.1f%%", p1)
	ts.start()
	c = ts.clients(ts.creds.SubscriptionID, ts.defaultCredential())
	if p := c.copyPercent(t, "west", "c1"); p < p1 || p >= 100 {
		t.Fatalf("after SIGKILL at %.1f%% and a restart the copy shows %.1f%%; want it resumed from at least %.1f%% and still running", p1, p, p1)
	}
	p2 := c.awaitPercent(t, "west", "c1", p1+15, 20*time.Second)
	if p2 >= 100 {
		t.Fatalf("the copy finished (%.1f%%) before the second interruption; lower the rate", p2)
	}
	ts.stop() // SIGTERM: must exit cleanly mid-copy, leaving it to resume
	t.Logf("SIGTERM at %.1f%%", p2)
	ts.proxy.rate.Store(0)
	ts.start()
	c = ts.clients(ts.creds.SubscriptionID, ts.defaultCredential())
	if p := c.copyPercent(t, "west", "c1"); p < p2 {
		t.Fatalf("after SIGTERM at %.1f%% and a restart the copy shows %.1f%%; want at least %.1f%%", p2, p, p2)
	}
	c.awaitPercent(t, "west", "c1", 100, 20*time.Second)

	// This run read at most what was left after p2: it resumed rather
	// than starting over (which would read all of `written`).
	left := written - int64(p2*float64(written)/100) + 4096
	if n := ts.copyBytes(); n == 0 || n > left {
		t.Errorf("the last run read %d bytes through the transport; want 1 to %d (%.1f%% of %d were done)", n, left, p2, written)
	} else {
		t.Logf("the last run read %d of %d bytes", n, written)
	}
	u := ts.copyUsage(*cp.ID)
	if u.DiffBytes != written || !u.Full || !u.Done || u.BytesRead < written || u.BytesWritten < written {
		t.Errorf("usage of the copy = %+v; want diffBytes %d, full, done, and at least that read and written", u, written)
	}
	ts.sameData(t, c, "east", "s1", "west", "c1")

	// The copy line is free again: the next snapshot's copy runs, as a
	// diff against the first.
	more := ts.writeExtents(t, c, "east", "d", 4, 5<<19, 16<<20, 9)
	s2 := c.mustSnapshot(t, "east", "s2", *disk.ID)
	c2, err := c.copyStart(ctx, "west", "c2", "westus2", *s2.ID)
	if err != nil {
		t.Fatalf("CopyStart of the next snapshot after the resumed copy: %v", err)
	}
	c.awaitPercent(t, "west", "c2", 100, 20*time.Second)
	if u := ts.copyUsage(*c2.ID); u.Full || u.DiffBytes != more {
		t.Errorf("usage of the next copy = %+v; want a diff of %d bytes", u, more)
	}
	ts.sameData(t, c, "east", "s2", "west", "c2")
}

// TestCopyStartOneAtATime: while a copy of a disk's snapshot into a region
// runs, another copy of that disk into that region is refused, and so is
// a copy from the unfinished target; a copy into another region is not.
// Once the running copy ends, the next snapshot copies (as a diff), and a
// copy older than the last one copied into a region is refused.
func TestCopyStartOneAtATime(t *testing.T) {
	ctx := t.Context()
	ts := startThrottledServer(t)
	c := ts.clients(ts.creds.SubscriptionID, ts.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westus2")
	c.group(t, "central", "centralus")
	disk := ts.smallDisk(t, c, "east", "d")
	ts.writeExtents(t, c, "east", "d", 32, 0, 2<<20, 1)
	s1 := c.mustSnapshot(t, "east", "s1", *disk.ID)
	changed := ts.writeExtents(t, c, "east", "d", 3, 1<<20, 16<<20, 50)
	s2 := c.mustSnapshot(t, "east", "s2", *disk.ID)

	// 16 MiB at 1 MiB/s: c1 runs for about 16 s, far longer than the
	// requests below take.
	ts.proxy.rate.Store(1 << 20)
	c1, err := c.copyStart(ctx, "west", "c1", "westus2", *s1.ID)
	if err != nil {
		t.Fatalf("CopyStart s1: %v", err)
	}
	running := "A copy of this disk's snapshots into region 'westus2' is running (" + *c1.ID + ")"
	refusals := []struct {
		name, rg, target, location, source, want string
	}{
		{"next snapshot", "west", "c2", "westus2", *s2.ID, running},
		{"same snapshot again", "west", "c1again", "westus2", *s1.ID, running},
		{"from the unfinished copy", "central", "cc", "centralus", *c1.ID, "Snapshot 'c1' is itself still being copied"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.copyStart(ctx, tc.rg, tc.target, tc.location, tc.source)
			wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal = %v, want the message %q", err, tc.want)
			}
			if _, err := c.snapshots.Get(ctx, tc.rg, tc.target, nil); err == nil {
				t.Errorf("the refused CopyStart left a snapshot %s/%s", tc.rg, tc.target)
			} else {
				wantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
			}
		})
	}
	// Another region has its own line: s2 copies into centralus at once.
	if _, err := c.copyStart(ctx, "central", "cc2", "centralus", *s2.ID); err != nil {
		t.Errorf("CopyStart s2 into another region while s1's copy runs: %v", err)
	}
	if p := c.copyPercent(t, "west", "c1"); p >= 100 {
		t.Fatalf("c1 finished (%.1f%%) before the checks ended: they proved nothing; lower the rate", p)
	}

	ts.proxy.rate.Store(0)
	c.awaitPercent(t, "west", "c1", 100, 20*time.Second)
	c.awaitPercent(t, "central", "cc2", 100, 20*time.Second)
	c2, err := c.copyStart(ctx, "west", "c2", "westus2", *s2.ID)
	if err != nil {
		t.Fatalf("CopyStart s2 once s1's copy is done: %v", err)
	}
	c.awaitPercent(t, "west", "c2", 100, 20*time.Second)
	if u := ts.copyUsage(*c2.ID); u.Full || u.DiffBytes != changed {
		t.Errorf("usage of c2 = %+v; want a diff against c1 of %d bytes", u, changed)
	}
	ts.sameData(t, c, "east", "s1", "west", "c1")
	ts.sameData(t, c, "east", "s2", "west", "c2")
	ts.sameData(t, c, "east", "s2", "central", "cc2")

	// centralus got s2 first (a full copy: skipping s1 is allowed), so s1
	// may no longer go there: copies go in creation order.
	_, err = c.copyStart(ctx, "central", "cc1", "centralus", *s1.ID)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	if want := "Snapshot 's1' is not newer than '" + *s2.ID + "', the last one copied into region 'centralus'"; !strings.Contains(err.Error(), want) {
		t.Errorf("refusal = %v, want the message %q", err, want)
	}
}

// TestCopyStartBadInput: CopyStart requests that must be refused with an
// ARM error, leave no target behind, change nothing in the source region,
// and leave the disk's copy line free for the next good request.
func TestCopyStartBadInput(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westus2")
	disk := srv.smallDisk(t, c, "east", "d")
	srv.writeExtents(t, c, "east", "d", 2, 7<<20, 8<<20, 3)
	s1 := c.mustSnapshot(t, "east", "s1", *disk.ID)
	full := c.mustSnapshotFull(t, "east", "full", *disk.ID)
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	hashOf := func(name string) [32]byte {
		t.Helper()
		h := hashData(t, copyDiskSize, srv.pageClient(c.grantSAS(t, "east", name, false, armcompute.AccessLevelRead)))
		c.revokeSAS(t, "east", name, false)
		return h[0]
	}
	before := hashOf("s1")

	sub := "/subscriptions/" + srv.creds.SubscriptionID
	snaps := sub + "/resourceGroups/east/providers/Microsoft.Compute/snapshots/"
	tests := []struct {
		name        string
		kind        string // "snapshots" unless "disks"
		apiVersion  string // 2024-03-02 unless set
		location    string // westus2 unless set
		source      string
		status      int
		code, inMsg string
	}{
		{name: "full snapshot", source: *full.ID, status: http.StatusConflict, code: "OperationNotAllowed",
			inMsg: "CopyStart copies incremental snapshots; 'full' is a full snapshot."},
		{name: "missing snapshot", source: snaps + "nope", status: http.StatusNotFound, code: "ResourceNotFound",
			inMsg: "The source snapshot '" + snaps + "nope' was not found."},
		{name: "missing group", source: sub + "/resourceGroups/nogroup/providers/Microsoft.Compute/snapshots/s1", status: http.StatusNotFound, code: "ResourceNotFound",
			inMsg: "was not found"},
		{name: "another subscription", source: "/subscriptions/" + secondSub + "/resourceGroups/east/providers/Microsoft.Compute/snapshots/s1",
			status: http.StatusConflict, code: "OperationNotAllowed", inMsg: "CopyStart copies within a subscription"},
		{name: "source is a disk", source: *disk.ID, status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "needs sourceResourceId, the id of an incremental snapshot"},
		{name: "malformed source", source: "not-an-id", status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "needs sourceResourceId"},
		{name: "no source", source: "", status: http.StatusBadRequest, code: "InvalidParameter", inMsg: "needs sourceResourceId"},
		{name: "unknown target region", location: "atlantis", source: *s1.ID, status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "The location 'atlantis' is not available"},
		{name: "api-version 2019-07-01", apiVersion: "2019-07-01", source: *s1.ID, status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "createOption CopyStart needs api-version 2020-12-01 or later; the request used 2019-07-01."},
		{name: "api-version 2020-11-01-preview", apiVersion: "2020-11-01-preview", source: *s1.ID, status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "needs api-version 2020-12-01 or later"},
		{name: "creates a disk", kind: "disks", source: *s1.ID, status: http.StatusBadRequest, code: "InvalidParameter",
			inMsg: "createOption CopyStart creates a snapshot, not a disk."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, apiVersion, location := cmp.Or(tc.kind, "snapshots"), cmp.Or(tc.apiVersion, "2024-03-02"), cmp.Or(tc.location, "westus2")
			body, _ := json.Marshal(map[string]any{"location": location, "properties": map[string]any{"incremental": true,
				"creationData": map[string]any{"createOption": "CopyStart", "sourceResourceId": tc.source}}})
			path := sub + "/resourceGroups/west/providers/Microsoft.Compute/" + kind + "/bad"
			resp, out := srv.do(http.MethodPut, path+"?api-version="+apiVersion, tok.Token, body)
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(out, &e); err != nil || resp.StatusCode != tc.status || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.inMsg) {
				t.Errorf("PUT = %d %s; want %d %s with a message holding %q", resp.StatusCode, out, tc.status, tc.code, tc.inMsg)
			}
			if got := resp.Header.Get("x-ms-error-code"); got != tc.code {
				t.Errorf("x-ms-error-code = %q, want %q", got, tc.code)
			}
			if resp, out := srv.do(http.MethodGet, path+"?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("after the refusal GET %s = %d %s, want 404", kind, resp.StatusCode, out)
			}
		})
	}

	// Nothing changed in the source region.
	var names []string
	for pager := c.snapshots.NewListByResourceGroupPager("east", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Value {
			names = append(names, *s.Name)
		}
	}
	if got := strings.Join(names, ","); got != "full,s1" {
		t.Errorf("snapshots in eastus after the refusals: %s, want full,s1", got)
	}
	if got, err := c.snapshots.Get(ctx, "east", "s1", nil); err != nil || *got.Properties.UniqueID != *s1.Properties.UniqueID {
		t.Errorf("s1 after the refusals: %v", err)
	}
	if after := hashOf("s1"); after != before {
		t.Errorf("s1 reads differently after the refusals")
	}

	// No refusal held the disk's copy line: a good request at the first
	// api-version with CopyStart runs and finishes.
	body := `{"location":"westus2","properties":{"incremental":true,"creationData":{"createOption":"CopyStart","sourceResourceId":"` + *s1.ID + `"}}}`
	resp, out := srv.do(http.MethodPut, sub+"/resourceGroups/west/providers/Microsoft.Compute/snapshots/good?api-version=2020-12-01", tok.Token, []byte(body))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("CopyStart at api-version 2020-12-01 = %d %s", resp.StatusCode, out)
	}
	c.awaitPercent(t, "west", "good", 100, 20*time.Second)
	srv.sameData(t, c, "east", "s1", "west", "good")
}

// TestCopyStartAfterRotation is the usual rotation of cross-region
// backups: once s1 is copied, s1 is deleted in the source region; the
// disk trims (ClearPages) a range s1 held; its next snapshots must still
// copy. The next copy finds no previous source to diff against and copies
// s2's page ranges in full into the region's volume, which still held s1's
// data in the trimmed range; the full copy must clear it first, or the
// copy fails CopyVerificationFailed, and so does every later copy of the
// disk into that region. An interrupted first copy (its target deleted
// mid-way) followed by a trim is the same case.
func TestCopyStartAfterRotation(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westus2")
	disk := srv.smallDisk(t, c, "east", "d")
	srv.writeExtents(t, c, "east", "d", 4, 0, 8<<20, 1)
	s1 := c.mustSnapshot(t, "east", "s1", *disk.ID)
	if _, err := c.copyStart(ctx, "west", "c1", "westus2", *s1.ID); err != nil {
		t.Fatalf("CopyStart s1: %v", err)
	}
	c.awaitPercent(t, "west", "c1", 100, 20*time.Second)
	p, err := c.snapshots.BeginDelete(ctx, "east", "s1", nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, nil)
	}
	if err != nil {
		t.Fatalf("delete s1: %v", err)
	}
	pc := srv.pageClient(c.grantSAS(t, "east", "d", true, armcompute.AccessLevelWrite))
	if _, err := pc.ClearPages(ctx, blob.HTTPRange{Offset: 0, Count: 512 << 10}, nil); err != nil {
		t.Fatal(err)
	}
	c.revokeSAS(t, "east", "d", true)
	for _, n := range []string{"2", "3"} {
		s := c.mustSnapshot(t, "east", "s"+n, *disk.ID)
		if _, err := c.copyStart(ctx, "west", "c"+n, "westus2", *s.ID); err != nil {
			t.Fatalf("CopyStart s%s: %v", n, err)
		}
		c.awaitPercent(t, "west", "c"+n, 100, 20*time.Second)
		srv.sameData(t, c, "east", "s"+n, "west", "c"+n)
	}
}
