package main_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// The zones of a region as the real binary keeps them: each zone is a pack
// store of its own, the directory DIR/zones/<zone> ("eastus-1" to
// "eastus-3" in a region with three zones, "westcentralus" in one without).
// These tests look at those directories from outside, remove or break them
// while the server runs, and watch what the Azure SDK, the CLI and /metrics
// see.

const (
	// zoneDiskSize is the size of the disks here: small, so that a whole
	// disk is hashed in a moment.
	zoneDiskSize = 128 << 20
	// zoneBlock is the engine's block, the unit a chunk holds; writes
	// here are aligned to it, so bytes written are chunk bytes.
	zoneBlock = 64 << 10
)

var eastZones = []string{"eastus-1", "eastus-2", "eastus-3"}

// zoneBytes is the size of the pack files under DIR/zones/<zone>, 0 when
// the directory is missing.
func (s *server) zoneBytes(zone string) int64 {
	s.t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(s.dir, "zones", zone), func(path string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".tmp-"):
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		s.t.Fatalf("zone %s: %v", zone, err)
	}
	return n
}

// zoneSizes is zoneBytes of each zone.
func (s *server) zoneSizes(zones ...string) map[string]int64 {
	s.t.Helper()
	out := make(map[string]int64, len(zones))
	for _, z := range zones {
		out[z] = s.zoneBytes(z)
	}
	return out
}

// checkGrowth fails unless each zone of grew grew by at least min bytes
// since before, and every other zone of before did not change.
func (s *server) checkGrowth(what string, before map[string]int64, min int64, grew ...string) {
	s.t.Helper()
	after := s.zoneSizes(slices.Collect(maps.Keys(before))...)
	for z, b := range before {
		d := after[z] - b
		switch want := slices.Contains(grew, z); {
		case want && d < min:
			s.t.Errorf("%s: zone %s's packs grew by %d bytes, want at least %d", what, z, d, min)
		case !want && d != 0:
			s.t.Errorf("%s: zone %s's packs changed by %d bytes, want no change", what, z, d)
		}
	}
}

// metric is the value of the /metrics line for series, a metric's name
// and labels as Prometheus prints them.
func (s *server) metric(series string) float64 {
	s.t.Helper()
	resp, err := s.httpc.Get(s.creds.ResourceManagerURL + "metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("metric %q: %v", sc.Text(), err)
			}
			return f
		}
	}
	s.t.Fatalf("/metrics has no %s (err %v)", series, sc.Err())
	return 0
}

const replicatedSeries = "deltadisk_zone_replicated_bytes_total"

func readFailures(zone string) string {
	return `deltadisk_zone_read_failures_total{zone="` + zone + `"}`
}

// zoneDisk creates a zoneDiskSize disk in location, of sku ("" for the
// default), through an upload of its VHD footer alone.
func (s *server) zoneDisk(t *testing.T, c clients, rg, name, location string, sku armcompute.DiskStorageAccountTypes) armcompute.Disk {
	t.Helper()
	d := armcompute.Disk{Location: to.Ptr(location),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr[int64](zoneDiskSize + 512)}}}
	if sku != "" {
		d.SKU = &armcompute.DiskSKU{Name: to.Ptr(sku)}
	}
	p, err := c.disks.BeginCreateOrUpdate(t.Context(), rg, name, d, nil)
	if err == nil {
		_, err = p.PollUntilDone(t.Context(), nil)
	}
	if err != nil {
		t.Fatalf("create disk %s (%s in %s): %v", name, sku, location, err)
	}
	uploadPages(t, s.pageClient(c.grantSAS(t, rg, name, true, armcompute.AccessLevelWrite)), vhdFooter(t, zoneDiskSize), zoneDiskSize)
	c.revokeSAS(t, rg, name, true)
	got, err := c.disks.Get(t.Context(), rg, name, nil)
	if err != nil || *got.Properties.DiskState != armcompute.DiskStateUnattached {
		t.Fatalf("disk %s after its upload: %v", name, err)
	}
	return got.Disk
}

// zoneSnapshot creates an incremental snapshot of source in location, of
// sku ("" for the default).
func (c clients) zoneSnapshot(t *testing.T, rg, name, location, source string, sku armcompute.SnapshotStorageAccountTypes) (armcompute.Snapshot, error) {
	snap := armcompute.Snapshot{Location: to.Ptr(location), Properties: &armcompute.SnapshotProperties{
		Incremental:  to.Ptr(true),
		CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(source)}}}
	if sku != "" {
		snap.SKU = &armcompute.SnapshotSKU{Name: to.Ptr(sku)}
	}
	p, err := c.snapshots.BeginCreateOrUpdate(t.Context(), rg, name, snap, nil)
	if err != nil {
		return armcompute.Snapshot{}, err
	}
	res, err := p.PollUntilDone(t.Context(), nil)
	return res.Snapshot, err
}

func (c clients) mustZoneSnapshot(t *testing.T, rg, name, location, source string, sku armcompute.SnapshotStorageAccountTypes) armcompute.Snapshot {
	t.Helper()
	s, err := c.zoneSnapshot(t, rg, name, location, source, sku)
	if err != nil {
		t.Fatalf("snapshot %s (%s): %v", name, sku, err)
	}
	return s
}

// awaitReplicated polls a snapshot until its zones hold all of its data:
// completionPercent absent or 100. While replication is pending the
// percent must stay within [0, 100) and never go back. It reports whether
// the snapshot was seen pending.
func (c clients) awaitReplicated(t *testing.T, rg, name string) bool {
	t.Helper()
	last, seen := -1.0, false
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := c.snapshots.Get(t.Context(), rg, name, nil)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		p := s.Properties.CompletionPercent
		if p == nil || *p == 100 {
			return seen
		}
		seen = true
		if *p < 0 || *p > 100 || float64(*p) < last {
			t.Fatalf("snapshot %s: completionPercent %v after %v", name, *p, last)
		}
		last = float64(*p)
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %s still replicating after 30s: completionPercent %v", name, *p)
		}
	}
}

// percent shows a completionPercent.
func percent(p *float32) string {
	if p == nil {
		return "absent"
	}
	return strconv.FormatFloat(float64(*p), 'f', -1, 32)
}

// zoneImage is what a disk of zoneDiskSize holds, kept beside it.
type zoneImage []byte

func newZoneImage() zoneImage { return make(zoneImage, zoneDiskSize) }

// write writes n bytes of seed's incompressible pattern at each offset of
// the disk through a write SAS, keeps them in img, and returns the bytes
// written.
func (img zoneImage) write(t *testing.T, s *server, c clients, rg, disk string, n int64, seed uint64, offs ...int64) int64 {
	t.Helper()
	pc := s.pageClient(c.grantSAS(t, rg, disk, true, armcompute.AccessLevelWrite))
	for _, off := range offs {
		p := img[off : off+n]
		dataPattern(p, off, seed)
		uploadPages(t, pc, p, off)
	}
	c.revokeSAS(t, rg, disk, true)
	return n * int64(len(offs))
}

// zoneRes names a disk or snapshot of a group.
type zoneRes struct {
	rg, name string
	disk     bool
}

// checkReads fails unless each resource reads byte-identical to img over
// the whole disk, downloaded side by side through read SAS grants, with no
// read failing.
func (s *server) checkReads(t *testing.T, c clients, img zoneImage, rs ...zoneRes) {
	t.Helper()
	var pcs []*pageblob.Client
	for _, r := range rs {
		pcs = append(pcs, s.pageClient(c.grantSAS(t, r.rg, r.name, r.disk, armcompute.AccessLevelRead)))
	}
	want := sha256.Sum256(img)
	for i, h := range hashData(t, zoneDiskSize, pcs...) {
		if h != want {
			t.Errorf("%s reads differently from what was written: sha256 %x, want %x", rs[i].name, h, want)
		}
	}
	for _, r := range rs {
		c.revokeSAS(t, r.rg, r.name, r.disk)
	}
}

// TestZoneSkus: which zones a disk's writes and an incremental snapshot's
// data go to, by sku and region. In eastus an incremental snapshot is
// Standard_ZRS unless asked otherwise, and its data ends up in all three
// zones; a Standard_LRS one stays in the first. Premium_ZRS and
// StandardSSD_ZRS disks write every zone, Standard_LRS disks (the
// default) the first only. westcentralus has no zones: one store named
// after the region, Standard_LRS by default, and the ZRS skus refused
// with ARM's InvalidParameter on sku.name.
func TestZoneSkus(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westcentralus")
	all := append(append([]string{}, eastZones...), "westcentralus")

	// Disks: each writes 2 MiB in 4 extents.
	disks := []struct {
		name    string
		sku     armcompute.DiskStorageAccountTypes
		wantSku armcompute.DiskStorageAccountTypes
		zones   []string
	}{
		{"default", "", armcompute.DiskStorageAccountTypesStandardLRS, eastZones[:1]},
		{"premium-lrs", armcompute.DiskStorageAccountTypesPremiumLRS, armcompute.DiskStorageAccountTypesPremiumLRS, eastZones[:1]},
		{"premium-zrs", armcompute.DiskStorageAccountTypesPremiumZRS, armcompute.DiskStorageAccountTypesPremiumZRS, eastZones},
		{"ssd-zrs", armcompute.DiskStorageAccountTypesStandardSSDZRS, armcompute.DiskStorageAccountTypesStandardSSDZRS, eastZones},
	}
	imgs, ids := map[string]zoneImage{}, map[string]string{}
	var perDisk int64 // the same for each
	for i, d := range disks {
		disk := srv.zoneDisk(t, c, "east", d.name, "eastus", d.sku)
		if *disk.SKU.Name != d.wantSku {
			t.Errorf("disk %s created with sku %q is %s, want %s", d.name, d.sku, *disk.SKU.Name, d.wantSku)
		}
		before := srv.zoneSizes(all...)
		imgs[d.name], ids[d.name] = newZoneImage(), *disk.ID
		perDisk = imgs[d.name].write(t, srv, c, "east", d.name, 512<<10, uint64(i+1), 0, 32<<20, 64<<20, 127<<20)
		srv.checkGrowth("writes to "+d.name+" ("+string(d.wantSku)+")", before, perDisk, d.zones...)
	}

	// Incremental snapshots of the Standard_LRS disk: ZRS by default, its
	// data copied into eastus-2 and eastus-3; LRS when asked, nothing
	// copied.
	before := srv.zoneSizes(all...)
	zrs := c.mustZoneSnapshot(t, "east", "zrs", "eastus", ids["default"], "")
	if *zrs.SKU.Name != armcompute.SnapshotStorageAccountTypesStandardZRS {
		t.Errorf("an incremental snapshot in eastus without a sku is %s, want Standard_ZRS", *zrs.SKU.Name)
	}
	c.awaitReplicated(t, "east", "zrs")
	srv.checkGrowth("a Standard_ZRS snapshot of a Standard_LRS disk", before, perDisk, "eastus-2", "eastus-3")
	before = srv.zoneSizes(all...)
	lrs := c.mustZoneSnapshot(t, "east", "lrs", "eastus", ids["default"], armcompute.SnapshotStorageAccountTypesStandardLRS)
	if *lrs.SKU.Name != armcompute.SnapshotStorageAccountTypesStandardLRS || lrs.Properties.CompletionPercent != nil {
		t.Errorf("an incremental snapshot with sku Standard_LRS: sku %s, completionPercent %v; want Standard_LRS and no replication",
			*lrs.SKU.Name, percent(lrs.Properties.CompletionPercent))
	}
	// A Standard_ZRS snapshot of a ZRS disk has every zone already.
	zz := c.mustZoneSnapshot(t, "east", "zrs-of-zrs", "eastus", ids["premium-zrs"], "")
	if zz.Properties.CompletionPercent != nil {
		t.Errorf("a Standard_ZRS snapshot of a Premium_ZRS disk shows completionPercent %v: nothing was left to replicate", *zz.Properties.CompletionPercent)
	}
	srv.checkGrowth("a Standard_LRS snapshot of an LRS disk and a ZRS snapshot of a ZRS disk", before, 0)
	srv.checkReads(t, c, imgs["default"], zoneRes{"east", "zrs", false}, zoneRes{"east", "lrs", false})
	srv.checkReads(t, c, imgs["premium-zrs"], zoneRes{"east", "zrs-of-zrs", false})

	// westcentralus: one store, DIR/zones/westcentralus.
	wd := srv.zoneDisk(t, c, "west", "d", "westcentralus", "")
	before = srv.zoneSizes(all...)
	wimg := newZoneImage()
	n := wimg.write(t, srv, c, "west", "d", 512<<10, 9, 0, 100<<20)
	srv.checkGrowth("writes to a disk in westcentralus", before, n, "westcentralus")
	ws := c.mustZoneSnapshot(t, "west", "s", "westcentralus", *wd.ID, "")
	if *ws.SKU.Name != armcompute.SnapshotStorageAccountTypesStandardLRS || ws.Properties.CompletionPercent != nil {
		t.Errorf("an incremental snapshot in westcentralus without a sku: %s, completionPercent %v; want Standard_LRS", *ws.SKU.Name, percent(ws.Properties.CompletionPercent))
	}
	srv.checkReads(t, c, wimg, zoneRes{"west", "s", false})

	_, err := c.zoneSnapshot(t, "west", "zrs", "westcentralus", *wd.ID, armcompute.SnapshotStorageAccountTypesStandardZRS)
	wantARMError(t, err, http.StatusBadRequest, "InvalidParameter")
	// The refusals on the wire: ARM's error shape, naming the field.
	tok, err := srv.defaultCredential().GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	base := "/subscriptions/" + srv.creds.SubscriptionID + "/resourceGroups/west/providers/Microsoft.Compute/"
	for _, r := range []struct{ path, body string }{
		{"snapshots/zrs", `{"location":"westcentralus","sku":{"name":"Standard_ZRS"},"properties":{"incremental":true,"creationData":{"createOption":"Copy","sourceResourceId":"` + *wd.ID + `"}}}`},
		{"disks/zrs", `{"location":"westcentralus","sku":{"name":"Premium_ZRS"},"properties":{"diskSizeGB":1,"creationData":{"createOption":"Empty"}}}`},
		{"disks/ssdzrs", `{"location":"westcentralus","sku":{"name":"StandardSSD_ZRS"},"properties":{"diskSizeGB":1,"creationData":{"createOption":"Empty"}}}`},
	} {
		resp, body := srv.do(http.MethodPut, base+r.path+"?api-version=2024-03-02", tok.Token, []byte(r.body))
		var e struct {
			Error struct{ Code, Message, Target string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusBadRequest || e.Error.Code != "InvalidParameter" ||
			e.Error.Target != "sku.name" || !strings.Contains(e.Error.Message, "westcentralus") || !strings.Contains(e.Error.Message, "zones") {
			t.Errorf("PUT %s with a ZRS sku in westcentralus = %d %s; want 400 InvalidParameter on sku.name naming the region's lack of zones", r.path, resp.StatusCode, body)
		}
		if resp, _ := srv.do(http.MethodGet, base+r.path+"?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("the refused PUT %s created it: GET = %d", r.path, resp.StatusCode)
		}
	}
}

// TestZoneReplication: a Standard_ZRS snapshot of a Standard_LRS disk is
// created at once and filled into the other zones in the background,
// completionPercent showing the progress until it is done; the two other
// zones then hold its data, and replication counted twice the bytes
// written. A second snapshot after 1 % of the disk changed moves only the
// chunks new since the first.
func TestZoneReplication(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := srv.zoneDisk(t, c, "rg", "d", "eastus", armcompute.DiskStorageAccountTypesStandardLRS)

	// 4 MiB in 8 extents of 512 KiB.
	img := newZoneImage()
	var offs []int64
	for i := range int64(8) {
		offs = append(offs, i*16<<20+i*zoneBlock)
	}
	written := img.write(t, srv, c, "rg", "d", 512<<10, 1, offs...)

	sizes, repl := srv.zoneSizes(eastZones...), srv.metric(replicatedSeries)
	s1 := c.mustZoneSnapshot(t, "rg", "s1", "eastus", *disk.ID, armcompute.SnapshotStorageAccountTypesStandardZRS)
	if p := s1.Properties.CompletionPercent; *s1.SKU.Name != armcompute.SnapshotStorageAccountTypesStandardZRS || p != nil && (*p < 0 || *p > 100) {
		t.Fatalf("snapshot s1: sku %s, completionPercent %s", *s1.SKU.Name, percent(p))
	}
	start := time.Now()
	pending := c.awaitReplicated(t, "rg", "s1")
	t.Logf("s1 replicated %v after it was created (seen pending: %v)", time.Since(start), pending)
	srv.checkGrowth("replication of s1", sizes, written, "eastus-2", "eastus-3")
	if d := int64(srv.metric(replicatedSeries) - repl); d < 2*written || d > 2*written+2*zoneBlock {
		t.Errorf("replicating s1 counted %d bytes; want twice the %d written (once per zone that lacked them)", d, written)
	}

	// 1 % of the disk changes, in 64 KiB blocks; some were written before.
	rng := rand.New(rand.NewPCG(7, 8))
	seen := map[int64]bool{}
	var changed []int64
	for len(changed) < zoneDiskSize/100/zoneBlock {
		off := rng.Int64N(zoneDiskSize/zoneBlock) * zoneBlock
		if len(changed) < 4 {
			off = offs[len(changed)] + zoneBlock // inside s1's extents
		}
		if !seen[off] {
			seen[off] = true
			changed = append(changed, off)
		}
	}
	n := img.write(t, srv, c, "rg", "d", zoneBlock, 2, changed...)
	sizes, repl = srv.zoneSizes(eastZones...), srv.metric(replicatedSeries)
	c.mustZoneSnapshot(t, "rg", "s2", "eastus", *disk.ID, "")
	c.awaitReplicated(t, "rg", "s2")
	d := int64(srv.metric(replicatedSeries) - repl)
	t.Logf("s2: %d bytes changed, %d replicated", n, d)
	if d < 2*n || d > 2*n+2*zoneBlock {
		t.Errorf("replicating s2 counted %d bytes for %d changed since s1; want twice the changed bytes only", d, n)
	}
	srv.checkGrowth("replication of s2", sizes, n, "eastus-2", "eastus-3")
	after := srv.zoneSizes(eastZones...)
	for _, z := range eastZones[1:] {
		if g := after[z] - sizes[z]; g >= written {
			t.Errorf("replication of s2 grew zone %s by %d bytes: more than the %d changed, as much as the whole disk's %d", z, g, n, written)
		}
	}
	srv.checkReads(t, c, img, zoneRes{"rg", "s2", false}, zoneRes{"rg", "d", true})
}

// zoneScrub is the report of `deltadisk admin scrub`.
type zoneScrub struct {
	Repair                                            bool
	Copies, Missing, Corrupt, Repaired, Unrecoverable int
	Zones                                             []struct {
		Zone                                      string
		Packs, Copies, Missing, Corrupt, Repaired int
	}
	Problems []string
}

// scrub runs `deltadisk admin scrub` with args and returns its report and
// exit code.
func (s *server) scrub(args ...string) (zoneScrub, cliResult) {
	s.t.Helper()
	r := s.deltadiskCLI(append([]string{"admin", "scrub"}, args...)...)
	var rep zoneScrub
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		s.stop() // its log is complete, and safe to read, once it has exited
		s.t.Fatalf("deltadisk admin scrub %s: exit %d, %v; stdout:\n%s\nstderr:\n%s\nthe server's log:\n%s", strings.Join(args, " "), r.code, err, r.stdout, r.stderr, s.stderr)
	}
	return rep, r
}

// String is the report in short: the totals, the zones with something in
// them, and the first and last problems.
func (r zoneScrub) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "copies %d, missing %d, corrupt %d, repaired %d, unrecoverable %d;", r.Copies, r.Missing, r.Corrupt, r.Repaired, r.Unrecoverable)
	for _, z := range r.Zones {
		if z.Packs+z.Copies+z.Missing+z.Corrupt+z.Repaired > 0 {
			fmt.Fprintf(&b, " %s: %d packs, %d copies, %d missing, %d corrupt, %d repaired;", z.Zone, z.Packs, z.Copies, z.Missing, z.Corrupt, z.Repaired)
		}
	}
	problems := r.Problems
	if len(problems) > 4 {
		problems = append(append(slices.Clip(problems[:2]), "…"), problems[len(problems)-2:]...)
	}
	fmt.Fprintf(&b, " problems %q", problems)
	return b.String()
}

// zone is the part of a scrub report about one zone.
func (r zoneScrub) zone(name string) (missing, corrupt, repaired int) {
	for _, z := range r.Zones {
		if z.Zone == name {
			return z.Missing, z.Corrupt, z.Repaired
		}
	}
	return -1, -1, -1
}

// TestZoneLoss: a zone's directory vanishes under the running server. A
// zone-redundant disk and its snapshot read byte-identical, each failed
// read counted against the lost zone; `deltadisk admin scrub` reports the
// lost copies (exit 1), --repair rewrites every one from the other zones,
// and a scrub after it is clean. The repair is real: with the two other
// zones lost in turn, everything reads from the rebuilt one.
func TestZoneLoss(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := srv.zoneDisk(t, c, "rg", "d", "eastus", armcompute.DiskStorageAccountTypesPremiumZRS)
	img := newZoneImage()
	written := img.write(t, srv, c, "rg", "d", 512<<10, 3, 0, 20<<20, 40<<20, 60<<20, 80<<20, 100<<20)
	c.mustZoneSnapshot(t, "rg", "s", "eastus", *disk.ID, "")
	c.awaitReplicated(t, "rg", "s")
	// The disk moves on after the snapshot: the two differ.
	snapImg := append(zoneImage{}, img...)
	written += img.write(t, srv, c, "rg", "d", 256<<10, 4, 10<<20, 90<<20)
	reads := []zoneRes{{"rg", "s", false}, {"rg", "d", true}}

	// A restart, so that no pack is held open, then eastus-1 is lost.
	srv.restart()
	c = srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	lost := filepath.Join(srv.dir, "zones", "eastus-1")
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	srv.checkReads(t, c, snapImg, reads[0])
	srv.checkReads(t, c, img, reads[1])
	if f := srv.metric(readFailures("eastus-1")); f < 1 {
		t.Errorf("%s = %v after reads with eastus-1 lost; want the failed reads counted", readFailures("eastus-1"), f)
	}
	for _, z := range eastZones[1:] {
		if f := srv.metric(readFailures(z)); f != 0 {
			t.Errorf("%s = %v; only eastus-1 was lost", readFailures(z), f)
		}
	}

	// Scrub finds the lost copies, and only there.
	rep, r := srv.scrub()
	m1, c1, _ := rep.zone("eastus-1")
	if r.code != 1 || !strings.Contains(r.stderr, "bad chunk copies") || rep.Missing < int(written/zoneBlock) || m1 != rep.Missing || c1 != 0 || rep.Corrupt != 0 || rep.Repaired != 0 {
		t.Fatalf("admin scrub with eastus-1 lost: exit %d, report %v, stderr:\n%s\nwant exit 1 and at least %d copies missing, all in eastus-1", r.code, rep, r.stderr, written/zoneBlock)
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "zone eastus-1") || !strings.Contains(rep.Problems[0], "missing") {
		t.Errorf("admin scrub: %v; want the missing copies of eastus-1 named in its problems", rep)
	}
	for _, z := range eastZones[1:] {
		if m, c, _ := rep.zone(z); m != 0 || c != 0 {
			t.Errorf("admin scrub: zone %s has %d missing, %d corrupt copies; want none", z, m, c)
		}
	}
	missing := rep.Missing

	repl := srv.metric(replicatedSeries)
	rep, r = srv.scrub("--repair")
	if _, _, r1 := rep.zone("eastus-1"); r.code != 0 || r.stderr != "" || !rep.Repair || rep.Missing != missing || rep.Repaired != missing || r1 != missing || rep.Unrecoverable != 0 {
		t.Fatalf("admin scrub --repair: exit %d, report %v, stderr:\n%s\nwant exit 0 and the %d missing copies repaired", r.code, rep, r.stderr, missing)
	}
	if d := srv.metric(replicatedSeries) - repl; d < float64(written) {
		t.Errorf("%s grew by %v in the repair of %d copies, want at least the %d bytes written", replicatedSeries, d, missing, written)
	}
	if n := srv.zoneBytes("eastus-1"); n < written {
		t.Errorf("eastus-1 holds %d pack bytes after the repair, want at least the %d written", n, written)
	}
	rep, r = srv.scrub()
	if r.code != 0 || rep.Missing != 0 || rep.Corrupt != 0 || rep.Copies < 3*missing {
		t.Errorf("admin scrub after the repair: exit %d, report %v, stderr:\n%s\nwant exit 0 and every copy of every zone good", r.code, rep, r.stderr)
	}

	// Now eastus-2 and eastus-3 are lost (after a restart, so that none of
	// their packs is held open): eastus-1 alone serves every read.
	srv.restart()
	c = srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	for _, z := range eastZones[1:] {
		if err := os.RemoveAll(filepath.Join(srv.dir, "zones", z)); err != nil {
			t.Fatal(err)
		}
	}
	srv.checkReads(t, c, snapImg, reads[0])
	srv.checkReads(t, c, img, reads[1])
	if f := srv.metric(readFailures("eastus-1")); f != 0 {
		t.Errorf("%s = %v with eastus-1 repaired; want every read served there", readFailures("eastus-1"), f)
	}
}

// TestZoneWriteRefused: a zone store that refuses writes (a file where
// its directory should be, so that every write fails with ENOTDIR). A
// write to a zone-redundant disk is refused with 503 ServerBusy, the
// answer clients retry, and commits nothing: the disk still reads its old
// data. A locally-redundant disk in another zone takes writes as before.
// A zone-redundant snapshot of it stays pending, completionPercent below
// 100, and counts nothing replicated. Once the directory is back the
// store recreates it, the write is taken, and the snapshot completes.
func TestZoneWriteRefused(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	srv.zoneDisk(t, c, "rg", "zrs", "eastus", armcompute.DiskStorageAccountTypesPremiumZRS)
	lrs := srv.zoneDisk(t, c, "rg", "lrs", "eastus", armcompute.DiskStorageAccountTypesStandardLRS)
	zimg, limg := newZoneImage(), newZoneImage()
	zimg.write(t, srv, c, "rg", "zrs", 512<<10, 5, 0, 64<<20)
	limg.write(t, srv, c, "rg", "lrs", 512<<10, 6, 0, 64<<20)

	broken := filepath.Join(srv.dir, "zones", "eastus-3")
	if err := os.RemoveAll(broken); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(broken) })

	// The zone-redundant disk: refused with 503, nothing committed.
	pc := srv.pageClient(c.grantSAS(t, "rg", "zrs", true, armcompute.AccessLevelWrite))
	off := int64(32 << 20)
	p := make([]byte, 1<<20)
	dataPattern(p, off, 7)
	put := func() error {
		_, err := pc.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(p)), blob.HTTPRange{Offset: off, Count: int64(len(p))}, nil)
		return err
	}
	var re *azcore.ResponseError
	if err := put(); !errors.As(err, &re) || re.StatusCode != http.StatusServiceUnavailable || re.ErrorCode != "ServerBusy" {
		t.Fatalf("Put Page to a Premium_ZRS disk with eastus-3 refusing writes: %v; want 503 ServerBusy", err)
	}
	if got := readRange(t, pc, off, int64(len(p))); string(got) != string(zimg[off:off+int64(len(p))]) {
		t.Errorf("the refused write changed what the disk reads")
	}
	c.revokeSAS(t, "rg", "zrs", true)
	srv.checkReads(t, c, zimg, zoneRes{"rg", "zrs", true})

	// The locally-redundant disk lives in eastus-1 only.
	limg.write(t, srv, c, "rg", "lrs", 512<<10, 8, 16<<20, 100<<20)
	srv.checkReads(t, c, limg, zoneRes{"rg", "lrs", true})

	// A zone-redundant snapshot of it cannot be filled into eastus-3.
	repl, e2 := srv.metric(replicatedSeries), srv.zoneBytes("eastus-2")
	c.mustZoneSnapshot(t, "rg", "s", "eastus", *lrs.ID, "")
	// The replication attempt it kicks off fails. Its copies into eastus-2,
	// written beside the refused ones and never indexed, show that it ran.
	for deadline := time.Now().Add(2 * time.Second); srv.zoneBytes("eastus-2")-e2 < 2<<20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	s, err := c.snapshots.Get(t.Context(), "rg", "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Properties.CompletionPercent; p == nil || *p < 0 || *p >= 100 {
		t.Errorf("a Standard_ZRS snapshot that cannot be replicated shows completionPercent %s; want it pending, below 100", percent(p))
	}
	if d := srv.metric(replicatedSeries) - repl; d != 0 {
		t.Errorf("%s grew by %v while replication failed: bytes that went nowhere were counted as replicated", replicatedSeries, d)
	}

	// The directory is back (empty): the store recreates it on the next
	// write, which is taken.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	pc = srv.pageClient(c.grantSAS(t, "rg", "zrs", true, armcompute.AccessLevelWrite))
	if err := put(); err != nil {
		t.Fatalf("Put Page once eastus-3 is back: %v", err)
	}
	copy(zimg[off:], p)
	c.revokeSAS(t, "rg", "zrs", true)
	srv.checkReads(t, c, zimg, zoneRes{"rg", "zrs", true})
	if n := srv.zoneBytes("eastus-3"); n < int64(len(p)) {
		t.Errorf("eastus-3 holds %d pack bytes after the write, want at least its %d", n, len(p))
	}

	// A restart resumes the replication that failed, without waiting for
	// the retry interval.
	srv.restart()
	c = srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.awaitReplicated(t, "rg", "s")
	if n := srv.zoneBytes("eastus-3"); n < int64(len(p))+2*(512<<10)+2*(512<<10) {
		t.Errorf("eastus-3 holds %d pack bytes once s is replicated; want the lrs disk's data there too", n)
	}
	srv.checkReads(t, c, limg, zoneRes{"rg", "s", false})
}
