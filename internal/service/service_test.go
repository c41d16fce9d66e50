package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	sub      = "11111111-1111-1111-1111-111111111111"
	otherSub = "22222222-2222-2222-2222-222222222222"
)

type fixture struct {
	s   *service.Service
	e   *engine.Engine
	now time.Time
	// zones are the zone stores' backends, for tests that make one fail.
	zones map[string]*chunkstest.FaultyBackend
	// counted is the metadata store both the service and the engine use.
	counted *metatest.CountingStore
}

func newFixture(t *testing.T, tune func(*service.Config)) *fixture {
	t.Helper()
	ctx := t.Context()
	cfg := bolt.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "meta.db")
	ms, err := bolt.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	f := &fixture{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), zones: map[string]*chunkstest.FaultyBackend{}}
	// Counting sits above the retry wrappers, so that it counts the
	// transactions the service asks for, however often each one runs.
	f.counted = metatest.Counting(metatest.Wrap(t, ms))
	ecfg := engine.DefaultConfig()
	ecfg.Meta = f.counted
	ecfg.Zones, err = service.Zones(service.DefaultRegions(), func(zone string) (*chunks.Store, error) {
		cfg := chunks.DefaultConfig()
		f.zones[zone] = chunkstest.Faulty(chunkstest.NewMem())
		cfg.Backend = f.zones[zone]
		return chunks.New(cfg)
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.e, err = engine.Open(ctx, ecfg); err != nil {
		t.Fatal(err)
	}
	scfg := service.DefaultConfig()
	scfg.Meta, scfg.Engine = f.counted, f.e
	scfg.Subscriptions = []service.Subscription{{ID: sub, DisplayName: "one"}, {ID: otherSub, DisplayName: "two"}}
	scfg.Now = func() time.Time { return f.now }
	if tune != nil {
		tune(&scfg)
	}
	if f.s, err = service.Open(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{sub, otherSub} {
		for _, g := range []struct{ name, loc string }{{"rg", "eastus"}, {"west", "westus"}, {"other", "East US"}} {
			if _, _, err := f.s.PutGroup(ctx, s, g.name, g.loc, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func diskID(name string) service.ResourceID {
	return service.ResourceID{Subscription: sub, Group: "rg", Kind: service.KindDisk, Name: name}
}

func snapID(name string) service.ResourceID {
	return service.ResourceID{Subscription: sub, Group: "rg", Kind: service.KindSnapshot, Name: name}
}

// show reads a resource as the API shows it, with its zones and
// replication filled in.
func (f *fixture) show(t *testing.T, id service.ResourceID) *service.Resource {
	t.Helper()
	r, err := f.s.Get(t.Context(), id)
	if err == nil {
		err = f.s.NoteReplication(t.Context(), r)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) disk(t *testing.T, id service.ResourceID, gb int64) *service.Resource {
	t.Helper()
	r, err := f.s.Put(t.Context(), id, service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Empty"}, DiskSizeGB: gb})
	if err != nil {
		t.Fatalf("create disk %s: %v", id.Name, err)
	}
	return r
}

func (f *fixture) snapshot(t *testing.T, id service.ResourceID, source string, incremental bool) (*service.Resource, error) {
	t.Helper()
	return f.s.Put(t.Context(), id, service.Spec{Location: "eastus", Incremental: incremental,
		CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: source}})
}

// wantCode checks a refusal's kind and ARM code.
func wantCode(t *testing.T, err error, kind error, code string) {
	t.Helper()
	var se *service.Error
	if !errors.As(err, &se) || !errors.Is(err, kind) || se.Code != code {
		t.Fatalf("got %v, want %v with code %s", err, kind, code)
	}
}

func TestDiskAndFamily(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("Disk1"), 4)
	if d.SizeBytes != 4<<30 || d.Sku != "Standard_LRS" || d.State(f.now) != "Unattached" || d.UniqueID == "" {
		t.Fatalf("new disk = %+v", d)
	}
	var snaps []*service.Resource
	for i := range 3 {
		s, err := f.snapshot(t, snapID(fmt.Sprintf("s%d", i)), d.ID().String(), true)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
	}
	s0 := snaps[0]
	if !s0.Incremental || s0.Sku != "Standard_ZRS" || s0.CreationData.SourceUniqueID != d.UniqueID ||
		s0.FamilyID != d.FamilyID || s0.CreationData.SourceResourceID != d.ID().String() {
		t.Fatalf("incremental snapshot = %+v; want ZRS (eastus has zones) in the disk's family", s0)
	}
	// Case-insensitive lookups; names keep their case.
	got, err := f.s.Get(ctx, service.ResourceID{Subscription: strings.ToUpper(sub), Group: "RG", Kind: service.KindDisk, Name: "disk1"})
	if err != nil || got.Name != "Disk1" {
		t.Fatalf("Get(case-changed id) = %v, %v", got, err)
	}
	// Deleting the disk leaves its snapshots; a new disk of that name is a
	// new family.
	if ok, err := f.s.Delete(ctx, diskID("disk1")); err != nil || !ok {
		t.Fatalf("Delete(disk) = %v, %v", ok, err)
	}
	if _, err := f.s.Get(ctx, snapID("s1")); err != nil {
		t.Fatalf("snapshot gone with its disk: %v", err)
	}
	d2 := f.disk(t, diskID("Disk1"), 4)
	if d2.UniqueID == d.UniqueID || d2.FamilyID == d.FamilyID {
		t.Fatalf("re-created disk kept uniqueId %s / family %s", d.UniqueID, d.FamilyID)
	}
	// A disk restored from the middle snapshot, and a full snapshot of an
	// incremental one.
	restored, err := f.s.Put(ctx, diskID("restored"), service.Spec{Location: "eastus", DiskSizeGB: 8,
		CreationData: service.CreationData{CreateOption: "copy", SourceResourceID: snaps[1].ID().String()}})
	if err != nil || restored.SizeBytes != 8<<30 || restored.CreationData.SourceUniqueID != snaps[1].UniqueID {
		t.Fatalf("disk from snapshot = %+v, %v", restored, err)
	}
	full, err := f.snapshot(t, snapID("full"), snaps[2].ID().String(), false)
	if err != nil || full.Incremental || full.Sku != "Standard_LRS" {
		t.Fatalf("full snapshot = %+v, %v", full, err)
	}
	// Deleting the middle snapshot of the chain.
	if _, err := f.s.Delete(ctx, snapID("s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Get(ctx, snapID("s1")); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("Get(deleted) = %v", err)
	}
	if ok, err := f.s.Delete(ctx, snapID("s1")); err != nil || ok {
		t.Fatalf("second Delete = %v, %v; want false, nil", ok, err)
	}
}

func TestRules(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, func(c *service.Config) {
		c.Policy.MaxIncrementalPerDisk = 4
		c.Policy.MaxSASPerFamily = 2
	})
	d := f.disk(t, diskID("d"), 1)
	did := d.ID().String()
	s0, err := f.snapshot(t, snapID("s0"), did, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kind error
		code string
		run  func() error
	}{
		{"incremental of a snapshot", service.ErrConflict, "OperationNotAllowed", func() error {
			_, err := f.snapshot(t, snapID("x"), s0.ID().String(), true)
			return err
		}},
		{"incremental in a region without the feature", service.ErrConflict, "OperationNotAllowed", func() error {
			w := service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindDisk, Name: "w"}
			if _, err := f.s.Put(ctx, w, service.Spec{Location: "westus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}}); err != nil {
				return err
			}
			_, err := f.s.Put(ctx, service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: "ws"},
				service.Spec{Location: "westus", Incremental: true, CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: w.String()}})
			return err
		}},
		{"source in another subscription", service.ErrConflict, "OperationNotAllowed", func() error {
			od := service.ResourceID{Subscription: otherSub, Group: "rg", Kind: service.KindDisk, Name: "od"}
			if _, err := f.s.Put(ctx, od, service.Spec{Location: "eastus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}}); err != nil {
				return err
			}
			_, err := f.snapshot(t, snapID("x"), od.String(), true)
			return err
		}},
		{"disk from a snapshot in another region", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindDisk, Name: "wd"},
				service.Spec{Location: "westus", CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: s0.ID().String()}})
			return err
		}},
		{"source missing", service.ErrNotFound, "ResourceNotFound", func() error {
			_, err := f.snapshot(t, snapID("x"), diskID("nope").String(), true)
			return err
		}},
		{"premium incremental", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, snapID("x"), service.Spec{Location: "eastus", Sku: "Premium_LRS", Incremental: true, CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: did}})
			return err
		}},
		{"ZRS where there are no zones", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindDisk, Name: "z"},
				service.Spec{Location: "westus", Sku: "Premium_ZRS", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"size 0", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("x"), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"size too large", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("x"), service.Spec{Location: "eastus", DiskSizeGB: 32768, CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"bad name", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("-bad"), service.Spec{Location: "eastus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"unknown createOption", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("x"), service.Spec{Location: "eastus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Teleport"}})
			return err
		}},
		{"missing location", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("x"), service.Spec{DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"upload size not a MiB multiple plus 512", service.ErrInvalid, "InvalidParameter", func() error {
			_, err := f.s.Put(ctx, diskID("x"), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Upload", UploadSizeBytes: 20 << 20}})
			return err
		}},
		{"group missing", service.ErrNotFound, "ResourceGroupNotFound", func() error {
			_, err := f.s.Put(ctx, service.ResourceID{Subscription: sub, Group: "nope", Kind: service.KindDisk, Name: "x"},
				service.Spec{Location: "eastus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			return err
		}},
		{"shrink", service.ErrConflict, "OperationNotAllowed", func() error {
			big := f.disk(t, diskID("big"), 4)
			_, err := f.s.Patch(ctx, big.ID(), service.Patch{DiskSizeGB: 2})
			return err
		}},
		{"write grant on a snapshot", service.ErrConflict, "OperationNotAllowed", func() error {
			_, err := f.s.GrantAccess(ctx, s0.ID(), "Write", 60)
			return err
		}},
		{"changing createOption on PUT", service.ErrConflict, "PropertyChangeNotAllowed", func() error {
			_, err := f.s.Put(ctx, d.ID(), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Upload", UploadSizeBytes: 20<<20 + 512}})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.run(), tc.kind, tc.code) })
	}
	if _, err := f.s.Get(ctx, snapID("x")); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("a refused request left snapshot x behind: %v", err)
	}

	t.Run("at most N per disk", func(t *testing.T) {
		for i := 1; i < 4; i++ {
			if _, err := f.snapshot(t, snapID(fmt.Sprintf("s%d", i)), did, true); err != nil {
				t.Fatal(err)
			}
		}
		_, err := f.snapshot(t, snapID("s4"), did, true)
		wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
		if !strings.Contains(err.Error(), "at most 4") {
			t.Errorf("message %q does not name the limit", err)
		}
	})
	t.Run("SAS per family", func(t *testing.T) {
		for _, n := range []string{"s0", "s1"} {
			if _, err := f.s.GrantAccess(ctx, snapID(n), "read", 60); err != nil {
				t.Fatal(err)
			}
		}
		_, err := f.s.GrantAccess(ctx, snapID("s2"), "Read", 60)
		wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
		_, err = f.s.GrantAccess(ctx, snapID("s0"), "Read", 60)
		wantCode(t, err, service.ErrConflict, "OperationNotAllowed") // one grant at a time
		f.now = f.now.Add(61 * time.Second)                          // both expire
		if _, err := f.s.GrantAccess(ctx, snapID("s2"), "Read", 60); err != nil {
			t.Fatalf("grant after the others expired: %v", err)
		}
	})
	t.Run("resize then no incremental", func(t *testing.T) {
		if _, err := f.s.Patch(ctx, d.ID(), service.Patch{DiskSizeGB: 2}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"s0", "s1", "s2"} {
			_, _ = f.s.RevokeAccess(ctx, snapID(n))
			if _, err := f.s.Delete(ctx, snapID(n)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := f.snapshot(t, snapID("after"), did, true)
		wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	})
}

func TestRateWindow(t *testing.T) {
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)
	for i := range 7 {
		if _, err := f.snapshot(t, snapID(fmt.Sprintf("s%d", i)), d.ID().String(), true); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(10 * time.Second)
	}
	_, err := f.snapshot(t, snapID("s7"), d.ID().String(), true)
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	if !strings.Contains(err.Error(), "at most 7") || !strings.Contains(err.Error(), "5m0s") {
		t.Errorf("message %q does not name the rule", err)
	}
	f.now = f.now.Add(5*time.Minute - 60*time.Second) // the first one leaves the window
	if _, err := f.snapshot(t, snapID("s7"), d.ID().String(), true); err != nil {
		t.Fatalf("snapshot after the window moved: %v", err)
	}
}

func TestUploadLifecycle(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	const size = 20 << 20
	id := diskID("up")
	r, err := f.s.Put(ctx, id, service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Upload", UploadSizeBytes: size + 512}})
	if err != nil || r.State(f.now) != "ReadyToUpload" || r.SizeBytes != size {
		t.Fatalf("upload disk = %+v, %v", r, err)
	}
	if _, err := f.s.GrantAccess(ctx, id, "Read", 60); !errors.Is(err, service.ErrConflict) {
		t.Fatalf("Read grant before upload = %v, want a refusal", err)
	}
	_, err = f.snapshot(t, snapID("early"), id.String(), true)
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	g, err := f.s.GrantAccess(ctx, id, "Write", 3600)
	if err != nil || g.State(f.now) != "ActiveUpload" {
		t.Fatalf("write grant = %v, %v", g, err)
	}
	if res, err := f.s.ResolveGrant(ctx, g.Grant.ID); err != nil || res.Name != "up" {
		t.Fatalf("ResolveGrant = %v, %v", res, err)
	}
	// Revoking without a footer keeps the disk awaiting its upload.
	r, err = f.s.RevokeAccess(ctx, id)
	wantCode(t, err, service.ErrInvalid, "BadRequest")
	if r.State(f.now) != "ReadyToUpload" {
		t.Fatalf("state after a revoke without footer = %s", r.State(f.now))
	}
	if _, err := f.s.ResolveGrant(ctx, g.Grant.ID); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("revoked grant still resolves: %v", err)
	}
	footer, err := vhd.New(size, [16]byte{1}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := footer.MarshalBinary()
	g, err = f.s.GrantAccess(ctx, id, "Write", 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.WritePages(ctx, g, g.SizeBytes, vhd.FooterSize, fb, func(*service.Resource) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if r, err = f.s.RevokeAccess(ctx, id); err != nil || r.State(f.now) != "Unattached" {
		t.Fatalf("revoke after a valid upload = %v, %v", r.State(f.now), err)
	}
	if _, err := f.snapshot(t, snapID("after"), id.String(), true); err != nil {
		t.Fatalf("snapshot of the uploaded disk: %v", err)
	}
}

func TestGroupsAndMove(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, func(c *service.Config) { c.Policy.ListPageSize = 2 })
	d := f.disk(t, diskID("d"), 1)
	inc, _ := f.snapshot(t, snapID("inc"), d.ID().String(), true)
	full, _ := f.snapshot(t, snapID("full"), d.ID().String(), false)
	for i := range 3 {
		f.disk(t, diskID(fmt.Sprintf("e%d", i)), 1)
	}
	// Paging: 4 disks in pages of 2.
	var names []string
	next := ""
	for pages := 0; ; pages++ {
		page, n, err := f.s.List(ctx, sub, "rg", service.KindDisk, next, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			names = append(names, r.Name)
		}
		if next = n; next == "" {
			break
		}
		if pages > 3 {
			t.Fatal("paging does not end")
		}
	}
	if got := strings.Join(names, ","); got != "d,e0,e1,e2" {
		t.Fatalf("paged list = %s", got)
	}
	// Moves: incremental refused, other subscription refused, full allowed.
	err := f.s.Move(ctx, sub, "rg", service.GroupID(sub, "other"), []string{inc.ID().String()})
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	err = f.s.Move(ctx, sub, "rg", service.GroupID(otherSub, "other"), []string{d.ID().String()})
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	if err := f.s.Move(ctx, sub, "rg", service.GroupID(sub, "other"), []string{d.ID().String(), full.ID().String()}); err != nil {
		t.Fatal(err)
	}
	if moved, err := f.s.Get(ctx, service.ResourceID{Subscription: sub, Group: "other", Kind: service.KindDisk, Name: "d"}); err != nil || moved.Group != "other" {
		t.Fatalf("moved disk = %v, %v", moved, err)
	}
	// Deleting a group deletes its resources and their images.
	before, _ := f.e.List(ctx)
	if ok, err := f.s.DeleteGroup(ctx, sub, "other"); err != nil || !ok {
		t.Fatalf("DeleteGroup = %v, %v", ok, err)
	}
	after, _ := f.e.List(ctx)
	if len(before)-len(after) != 2 {
		t.Errorf("group delete released %d images, want 2", len(before)-len(after))
	}
	if _, err := f.s.GetGroup(ctx, sub, "other"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("group still there: %v", err)
	}
	if _, err := f.s.Get(ctx, inc.ID()); err != nil {
		t.Errorf("the incremental snapshot in rg was touched: %v", err)
	}
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	f.disk(t, diskID("kept"), 1)
	orphan, err := f.e.CreateVolume(ctx, 1<<20) // as if a crash left it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := service.Open(ctx, f.s.Config()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Stat(ctx, orphan); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("orphan image survived reconcile: %v", err)
	}
	if _, err := f.s.Get(ctx, diskID("kept")); err != nil {
		t.Errorf("referenced disk lost: %v", err)
	}
}

// TestConcurrentCreates: many PUTs of one name at once leave one disk and
// one engine image; a PUT is create-or-update, so none of them fails.
func TestConcurrentCreates(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	before, _ := f.e.List(ctx)
	errs := make(chan error, 16)
	ids := make(chan string, 16)
	for range 16 {
		go func() {
			r, err := f.s.Put(ctx, diskID("same"), service.Spec{Location: "eastus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}})
			if err == nil {
				ids <- r.UniqueID
			}
			errs <- err
		}()
	}
	unique := map[string]bool{}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		unique[<-ids] = true
	}
	if len(unique) != 1 {
		t.Errorf("16 PUTs of one name made %d disks", len(unique))
	}
	after, _ := f.e.List(ctx)
	if len(after)-len(before) != 1 {
		t.Errorf("16 PUTs of one name made %d engine images, want 1", len(after)-len(before))
	}
}

// TestZonePlacement: skus decide the zones, and a zone-redundant snapshot
// of a locally-redundant disk shows its replication until the engine has
// filled the other zones.
func TestZonePlacement(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1) // Standard_LRS
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{1, 2}, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if d = f.show(t, d.ID()); !slices.Equal(d.Zones, []string{"eastus-1"}) || d.Replication != nil {
		t.Fatalf("LRS disk in eastus: zones %v, replication %+v", d.Zones, d.Replication)
	}
	s, err := f.snapshot(t, snapID("s"), d.ID().String(), true) // ZRS by default in eastus
	if err != nil {
		t.Fatal(err)
	}
	if s = f.show(t, s.ID()); s.Sku != "Standard_ZRS" || len(s.Zones) != 3 || s.Replication == nil {
		t.Fatalf("ZRS snapshot of an LRS disk: sku %s zones %v replication %+v, want pending in 3 zones", s.Sku, s.Zones, s.Replication)
	}
	if n, err := f.e.Replicate(ctx); n != 1 || err != nil {
		t.Fatalf("Replicate = %d, %v", n, err)
	}
	if s = f.show(t, s.ID()); s.Replication != nil {
		t.Fatalf("replication still shown after it finished: %+v", s.Replication)
	}
	zrs := diskID("z")
	if _, err := f.s.Put(ctx, zrs, service.Spec{Location: "eastus", Sku: "Premium_ZRS", DiskSizeGB: 1,
		CreationData: service.CreationData{CreateOption: "Empty"}}); err != nil {
		t.Fatal(err)
	}
	if r := f.show(t, zrs); !slices.Equal(r.Zones, []string{"eastus-1", "eastus-2", "eastus-3"}) {
		t.Fatalf("Premium_ZRS disk zones = %v", r.Zones)
	}
	w, err := f.snapshot(t, snapID("lrs"), d.ID().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	if w = f.show(t, w.ID()); w.Sku != "Standard_LRS" || !slices.Equal(w.Zones, []string{"eastus-1"}) || w.Replication != nil {
		t.Fatalf("full LRS snapshot: sku %s zones %v replication %+v", w.Sku, w.Zones, w.Replication)
	}
}

// TestSkuChangeMovesData: changing a disk's sku from LRS to ZRS places it
// in every zone (pending until replicated) and a snapshot's likewise; ZRS
// in a region without zones is refused.
func TestSkuChangeMovesData(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{3, 4}, 1<<19), 0); err != nil {
		t.Fatal(err)
	}
	r, err := f.s.Patch(ctx, d.ID(), service.Patch{Sku: "Premium_ZRS"})
	if err != nil {
		t.Fatal(err)
	}
	if r = f.show(t, r.ID()); r.Sku != "Premium_ZRS" || len(r.Zones) != 3 || r.Replication == nil {
		t.Fatalf("disk after the sku change: sku %s zones %v replication %+v, want ZRS pending in 3 zones", r.Sku, r.Zones, r.Replication)
	}
	if n, err := f.e.Replicate(ctx); n != 1 || err != nil {
		t.Fatalf("Replicate = %d, %v", n, err)
	}
	if r = f.show(t, r.ID()); r.Replication != nil {
		t.Fatalf("still replicating: %+v", r.Replication)
	}
	s, err := f.snapshot(t, snapID("s"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Patch(ctx, s.ID(), service.Patch{Sku: "Standard_LRS"}); err != nil {
		t.Fatal(err)
	}
	if s = f.show(t, s.ID()); !slices.Equal(s.Zones, []string{"eastus-1"}) || s.Replication != nil {
		t.Fatalf("snapshot narrowed to LRS: zones %v replication %+v", s.Zones, s.Replication)
	}
	w := service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindDisk, Name: "w"}
	if _, err := f.s.Put(ctx, w, service.Spec{Location: "westus", DiskSizeGB: 1, CreationData: service.CreationData{CreateOption: "Empty"}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.Patch(ctx, w, service.Patch{Sku: "Premium_ZRS"})
	wantCode(t, err, service.ErrInvalid, "InvalidParameter")
	rep, err := f.e.Check(ctx, engine.CheckOptions{ReadData: true})
	if err != nil || rep.Err() != nil {
		t.Fatal(err, rep.Err())
	}
}
