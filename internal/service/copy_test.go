package service_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/service"
)

// engineTransport reads sources straight from the engine: the unit tests'
// stand-in for the data plane (the integration tests use the real one).
type engineTransport struct{ e *engine.Engine }

func (t engineTransport) Changes(ctx context.Context, src, prev *service.Resource) ([]engine.Extent, error) {
	var from engine.ID
	if prev != nil {
		from = prev.Image
	}
	return t.e.Diff(ctx, from, src.Image)
}

func (t engineTransport) Read(ctx context.Context, src *service.Resource, p []byte, off int64) error {
	return t.e.ReadAt(ctx, src.Image, p, off)
}

func (f *fixture) waitCopy(t *testing.T, id service.ResourceID) *service.Resource {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := f.s.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Copy != nil && r.Copy.Done {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("copy %s not done: %+v", id.Name, r.Copy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCopyStart(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	stop := f.s.StartCopier(ctx, engineTransport{f.e})
	defer stop()
	d := f.disk(t, diskID("d"), 1)
	block := func(b byte) []byte { return bytes.Repeat([]byte{b, 1}, engine.BlockSize/2) }
	write := func(b byte, blocks ...int64) {
		for _, n := range blocks {
			if err := f.e.WriteAt(ctx, d.Image, block(b), n*engine.BlockSize); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(1, 0, 5, 100, 1000)
	s1, err := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	write(2, 5, 6)
	if err := f.e.Zero(ctx, d.Image, 100*engine.BlockSize, engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Second)
	s2, err := f.snapshot(t, snapID("s2"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	west := func(name string) service.ResourceID {
		return service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: name}
	}
	copyOf := func(name string, src *service.Resource, api string) (*service.Resource, error) {
		return f.s.Put(ctx, west(name), service.Spec{Location: "westus", APIVersion: api,
			CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: src.ID().String()}})
	}
	c1, err := copyOf("c1", s1, "2024-03-02")
	if err != nil {
		t.Fatal(err)
	}
	if c1.Sku != "Standard_LRS" || !c1.Incremental || c1.FamilyID == s1.FamilyID {
		t.Errorf("copy target = sku %s incremental %v family %s", c1.Sku, c1.Incremental, c1.FamilyID)
	}
	c1 = f.waitCopy(t, west("c1"))
	if c1.Copy.Error != nil || c1.Copy.Percent != 100 || !c1.Copy.Full || c1.Copy.BytesRead != 4*engine.BlockSize {
		t.Fatalf("first copy = %+v, want a full copy reading the 4 blocks written", *c1.Copy)
	}
	if _, err := copyOf("c2", s2, "2024-03-02"); err != nil {
		t.Fatal(err)
	}
	c2 := f.waitCopy(t, west("c2"))
	// Only the changes travel: blocks 5 and 6 written, block 100 cleared.
	if c2.Copy.Error != nil || c2.Copy.Full || c2.Copy.BytesRead != 2*engine.BlockSize || c2.Copy.DiffBytes != 3*engine.BlockSize {
		t.Fatalf("second copy = %+v, want 2 blocks read of a 3-block diff", *c2.Copy)
	}
	for _, pair := range [][2]*service.Resource{{s1, c1}, {s2, c2}} {
		a, b := make([]byte, 1<<30), make([]byte, 1<<30)
		if err := f.e.ReadAt(ctx, pair[0].Image, a, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.e.ReadAt(ctx, pair[1].Image, b, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("copy %s reads differently from %s", pair[1].Name, pair[0].Name)
		}
	}
	// The copies form region B's family: their diff is the source's.
	da, err := f.e.Diff(ctx, s1.Image, s2.Image)
	if err != nil {
		t.Fatal(err)
	}
	db, err := f.e.Diff(ctx, c1.Image, c2.Image)
	if err != nil || fmt.Sprint(da) != fmt.Sprint(db) {
		t.Fatalf("diff of the copies = %v, %v; want the sources' %v", db, err, da)
	}

	_, err = copyOf("again", s1, "2024-03-02")
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed") // out of order
	_, err = copyOf("old", s2, "2020-06-30")
	wantCode(t, err, service.ErrInvalid, "InvalidParameter")
	full, err := f.snapshot(t, snapID("full"), d.ID().String(), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = copyOf("fromfull", full, "2024-03-02")
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	if _, err := f.s.Get(ctx, west("again")); err == nil {
		t.Errorf("a refused copy left its target behind")
	}
}

// TestCopyResumes: a copy queued while no copier runs (as after a restart
// interrupted it) is picked up and completed when the copier starts.
func TestCopyResumes(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{7}, engine.BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	s1, err := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	target := service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: "c1"}
	if _, err := f.s.Put(ctx, target, service.Spec{Location: "westus",
		CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: s1.ID().String()}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.s.Get(ctx, target); r.Copy == nil || r.Copy.Done {
		t.Fatalf("copy ran without a copier: %+v", r.Copy)
	}
	stop := f.s.StartCopier(ctx, engineTransport{f.e})
	defer stop()
	if r := f.waitCopy(t, target); r.Copy.Error != nil || r.Image == 0 {
		t.Fatalf("resumed copy = %+v", *r.Copy)
	}
}

// blockingTransport holds every copy in Changes until released.
type blockingTransport struct {
	engineTransport
	release chan struct{}
}

func (t blockingTransport) Changes(ctx context.Context, src, prev *service.Resource) ([]engine.Extent, error) {
	select {
	case <-t.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return t.engineTransport.Changes(ctx, src, prev)
}

// TestCopyLimits: a second copy of one disk into a region while one runs is
// refused, and so is a copy beyond the per-region limit; once the running
// copy ends, the next one is allowed.
func TestCopyLimits(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, func(c *service.Config) { c.Policy.MaxCopiesPerRegion = 1 })
	release := make(chan struct{})
	stop := f.s.StartCopier(ctx, blockingTransport{engineTransport{f.e}, release})
	defer stop()
	d := f.disk(t, diskID("d"), 1)
	e := f.disk(t, diskID("e"), 1)
	s1, _ := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	f.now = f.now.Add(time.Second)
	s2, _ := f.snapshot(t, snapID("s2"), d.ID().String(), true)
	t1, _ := f.snapshot(t, snapID("t1"), e.ID().String(), true)
	west := func(name string) service.ResourceID {
		return service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: name}
	}
	copyOf := func(name string, src *service.Resource) error {
		_, err := f.s.Put(ctx, west(name), service.Spec{Location: "westus",
			CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: src.ID().String()}})
		return err
	}
	if err := copyOf("c1", s1); err != nil {
		t.Fatal(err)
	}
	err := copyOf("c2", s2)
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	if !strings.Contains(err.Error(), "one at a time") && !strings.Contains(err.Error(), "at most 1") {
		t.Errorf("refusal %q names neither rule", err)
	}
	err = copyOf("u1", t1) // another disk: the region's limit of 1 applies
	wantCode(t, err, service.ErrConflict, "OperationNotAllowed")
	close(release)
	f.waitCopy(t, west("c1"))
	if err := copyOf("c2", s2); err != nil {
		t.Fatalf("copy after the running one ended: %v", err)
	}
	f.waitCopy(t, west("c2"))
}

// TestCopyIntoFailingZone: a copy whose target region's zone store refuses
// writes (full) ends failed with copyCompletionError, and the source in
// region A is untouched; with the zone back, the next copy succeeds.
func TestCopyIntoFailingZone(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	stop := f.s.StartCopier(ctx, engineTransport{f.e})
	defer stop()
	d := f.disk(t, diskID("d"), 1)
	data := bytes.Repeat([]byte{9, 8, 7, 6}, engine.BlockSize)
	if err := f.e.WriteAt(ctx, d.Image, data, 0); err != nil {
		t.Fatal(err)
	}
	s1, err := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	f.zones["westus"].Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: syscall.ENOSPC})
	west := func(name string) service.ResourceID {
		return service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: name}
	}
	spec := service.Spec{Location: "westus", CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: s1.ID().String()}}
	if _, err := f.s.Put(ctx, west("c1"), spec); err != nil {
		t.Fatal(err)
	}
	r := f.waitCopy(t, west("c1"))
	if r.Copy.Error == nil || r.Copy.Error.ErrorCode != "CopyFailed" || !strings.Contains(r.Copy.Error.ErrorMessage, "westus") {
		t.Fatalf("copy into a full zone: %+v, want CopyFailed naming the zone", r.Copy)
	}
	if f.zones["westus"].Fired() != 1 {
		t.Fatal("the fault never fired")
	}
	got := make([]byte, len(data))
	if err := f.e.ReadAt(ctx, s1.Image, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the source reads differently after the failed copy (%v)", err)
	}
	if _, err := f.s.Put(ctx, west("c2"), spec); err != nil {
		t.Fatalf("a new copy after the failed one: %v", err)
	}
	c2 := f.waitCopy(t, west("c2"))
	if c2.Copy.Error != nil {
		t.Fatalf("copy with the zone back: %+v", *c2.Copy.Error)
	}
	if err := f.e.ReadAt(ctx, c2.Image, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the copy reads differently from its source (%v)", err)
	}
}

// TestCopyStartWithinRegion: CopyStart into another resource group of the
// source's own region works as across regions: the copies read as their
// sources, form a family of their own (diffs between them work), and are
// placed in the region's zones by their sku.
func TestCopyStartWithinRegion(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	stop := f.s.StartCopier(ctx, engineTransport{f.e})
	defer stop()
	if _, _, err := f.s.PutGroup(ctx, sub, "backup", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	d := f.disk(t, diskID("d"), 1)
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{5, 6}, engine.BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	s1, err := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{7}, engine.BlockSize), 9*engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Second)
	s2, err := f.snapshot(t, snapID("s2"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	backup := func(name string) service.ResourceID {
		return service.ResourceID{Subscription: sub, Group: "backup", Kind: service.KindSnapshot, Name: name}
	}
	var copies []*service.Resource
	for i, src := range []*service.Resource{s1, s2} {
		id := backup(fmt.Sprintf("c%d", i+1))
		if _, err := f.s.Put(ctx, id, service.Spec{Location: "eastus",
			CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: src.ID().String()}}); err != nil {
			t.Fatal(err)
		}
		c := f.waitCopy(t, id)
		if c.Copy.Error != nil || c.Sku != "Standard_ZRS" || c.FamilyID == src.FamilyID {
			t.Fatalf("copy of %s within eastus: error %+v, sku %s, family %s (source's %s)", src.Name, c.Copy.Error, c.Sku, c.FamilyID, src.FamilyID)
		}
		want, got := make([]byte, 16*engine.BlockSize), make([]byte, 16*engine.BlockSize)
		if err := f.e.ReadAt(ctx, src.Image, want, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.e.ReadAt(ctx, c.Image, got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("copy %s reads differently from %s (%v)", c.Name, src.Name, err)
		}
		copies = append(copies, c)
	}
	diff, err := f.e.Diff(ctx, copies[0].Image, copies[1].Image)
	if err != nil || len(diff) != 1 || diff[0].Offset != 9*engine.BlockSize {
		t.Fatalf("diff between the copies = %v, %v; want the one changed block", diff, err)
	}
}

// corruptingTransport damages one byte of what it reads.
type corruptingTransport struct{ engineTransport }

func (t corruptingTransport) Read(ctx context.Context, src *service.Resource, p []byte, off int64) error {
	if err := t.engineTransport.Read(ctx, src, p, off); err != nil {
		return err
	}
	p[len(p)/2] ^= 0x40
	return nil
}

// TestCopyVerification: a copy whose bytes arrive damaged fails
// CopyVerificationFailed rather than completing.
func TestCopyVerification(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	stop := f.s.StartCopier(ctx, corruptingTransport{engineTransport{f.e}})
	defer stop()
	d := f.disk(t, diskID("d"), 1)
	if err := f.e.WriteAt(ctx, d.Image, bytes.Repeat([]byte{8}, engine.BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	s1, err := f.snapshot(t, snapID("s1"), d.ID().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	id := service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: "c1"}
	if _, err := f.s.Put(ctx, id, service.Spec{Location: "westus",
		CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: s1.ID().String()}}); err != nil {
		t.Fatal(err)
	}
	if c := f.waitCopy(t, id); c.Copy.Error == nil || c.Copy.Error.ErrorCode != "CopyVerificationFailed" || c.Image != 0 {
		t.Fatalf("copy of damaged bytes: %+v, want CopyVerificationFailed and no data", c.Copy)
	}
}
