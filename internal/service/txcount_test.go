package service_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// TestOneTransactionPerOperation: each domain operation is one metadata
// transaction, its rules and the engine's records together; a Put Page
// (WritePages) commits its blocks with its checks in one. (A delete is one
// too, but then frees its blocks in batched transactions of the engine's.)
func TestOneTransactionPerOperation(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)
	up, err := f.s.Put(ctx, diskID("up"), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Upload", UploadSizeBytes: 20<<20 + vhd.FooterSize}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := f.s.GrantAccess(ctx, up.ID(), service.AccessWrite, 3600)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 64<<10)
	page[0] = 1
	n := 0
	ops := []struct {
		name string
		run  func() error
	}{
		{"incremental snapshot", func() error {
			n++
			_, err := f.snapshot(t, snapID("s"+string(rune('a'+n))), d.ID().String(), true)
			return err
		}},
		{"full snapshot", func() error { _, err := f.snapshot(t, snapID("full"), d.ID().String(), false); return err }},
		{"disk from a snapshot", func() error {
			_, err := f.s.Put(ctx, diskID("clone"), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: snapID("sb").String()}})
			return err
		}},
		{"put page", func() error {
			_, err := f.s.WritePages(ctx, g, 0, int64(len(page)), page, func(*service.Resource) error { return nil })
			return err
		}},
		{"clear pages", func() error {
			_, err := f.s.WritePages(ctx, g, 0, int64(len(page)), nil, func(*service.Resource) error { return nil })
			return err
		}},
		{"grant", func() error { _, err := f.s.GrantAccess(ctx, snapID("sb"), service.AccessRead, 60); return err }},
		{"revoke", func() error { _, err := f.s.RevokeAccess(ctx, snapID("sb")); return err }},
		{"patch", func() error {
			_, err := f.s.Patch(ctx, d.ID(), service.Patch{Tags: map[string]string{"a": "b"}, DiskSizeGB: 2})
			return err
		}},
		{"attach", func() error { _, err := f.s.Attach(ctx, diskID("clone"), "test"); return err }},
		{"detach", func() error { _, err := f.s.Detach(ctx, diskID("clone")); return err }},
	}
	for _, op := range ops {
		f.counted.Reset()
		if err := op.run(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		if got := f.counted.Counts().Updates; got != 1 {
			t.Errorf("%s: %d metadata transactions that write, want 1", op.name, got)
		}
	}
}

// TestExpiredGrantLeavesNoKey: a grant that expires is settled away by the
// next change of its resource, and its key goes with it, whatever the
// change (a PATCH, a new grant, an attach, a move, a delete).
func TestExpiredGrantLeavesNoKey(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	changes := []struct {
		name string
		run  func(id service.ResourceID) error
	}{
		{"patch", func(id service.ResourceID) error {
			_, err := f.s.Patch(ctx, id, service.Patch{Tags: map[string]string{"a": "b"}})
			return err
		}},
		{"grant", func(id service.ResourceID) error {
			_, err := f.s.GrantAccess(ctx, id, service.AccessRead, 3600)
			return err
		}},
		{"attach", func(id service.ResourceID) error { _, err := f.s.Attach(ctx, id, "test"); return err }},
		{"move", func(id service.ResourceID) error {
			return f.s.Move(ctx, sub, "rg", service.GroupID(sub, "other"), []string{id.String()})
		}},
		{"delete", func(id service.ResourceID) error { _, err := f.s.Delete(ctx, id); return err }},
	}
	for i, c := range changes {
		id := diskID(fmt.Sprintf("d%d", i))
		f.disk(t, id, 1)
		if _, err := f.s.GrantAccess(ctx, id, service.AccessRead, 60); err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(2 * time.Minute)
		if err := c.run(id); err != nil {
			t.Fatalf("%s after the grant expired: %v", c.name, err)
		}
		rep, err := f.s.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) != 0 {
			t.Errorf("%s after the grant expired: check finds %v", c.name, rep.Problems)
		}
	}
}

// TestClearWholeDisk: a clear of a range holding more blocks of data than
// one commit takes (4096) goes through, in windows, and reads as zeros.
func TestClearWholeDisk(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	d := f.disk(t, diskID("d"), 1)
	buf := bytes.Repeat([]byte{7}, 4<<20) // one chunk, stored once
	for off := int64(0); off < 4200*engine.BlockSize; off += int64(len(buf)) {
		if err := f.e.WriteAt(ctx, d.Image, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	g, err := f.s.GrantAccess(ctx, d.ID(), service.AccessWrite, 3600)
	if err != nil {
		t.Fatal(err)
	}
	after, err := f.s.WritePages(ctx, g, 0, d.SizeBytes, nil, func(*service.Resource) error { return nil })
	if err != nil {
		t.Fatalf("clear of the whole disk: %v", err)
	}
	if after.Version == g.Version {
		t.Error("the clear did not move the disk's version")
	}
	ext, err := f.e.Allocated(ctx, d.Image)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 0 {
		t.Fatalf("after the clear the disk still holds data: %v…", ext[:min(len(ext), 3)])
	}
}
