package engine_test

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

func TestBadInput(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	e := env.e
	vol := must[engine.ID](t)(e.CreateVolume(ctx, 4<<20))
	snap := must[engine.ID](t)(e.Snapshot(ctx, vol))
	other := must[engine.ID](t)(e.CreateVolume(ctx, 1<<20))
	otherSnap := must[engine.ID](t)(e.Snapshot(ctx, other))
	buf := make([]byte, 4096)
	tests := []struct {
		name string
		err  error
		run  func() error
	}{
		{"unaligned write offset", engine.ErrUnaligned, func() error { return e.WriteAt(ctx, vol, buf, 100) }},
		{"unaligned write length", engine.ErrUnaligned, func() error { return e.WriteAt(ctx, vol, buf[:700], 0) }},
		{"unaligned read", engine.ErrUnaligned, func() error { return e.ReadAt(ctx, vol, buf, 513) }},
		{"write past the end", engine.ErrOutOfRange, func() error { return e.WriteAt(ctx, vol, buf, 4<<20-512) }},
		{"read past the end", engine.ErrOutOfRange, func() error { return e.ReadAt(ctx, snap, buf, 4<<20) }},
		{"negative offset", engine.ErrOutOfRange, func() error { return e.ReadAt(ctx, vol, buf, -4096) }},
		{"zero past the end", engine.ErrOutOfRange, func() error { return e.Zero(ctx, vol, 0, 8<<20) }},
		{"unknown volume", engine.ErrNotFound, func() error { return e.WriteAt(ctx, 999, buf, 0) }},
		{"unknown image read", engine.ErrNotFound, func() error { return e.ReadAt(ctx, 999, buf, 0) }},
		{"unknown snapshot delete", engine.ErrNotFound, func() error { return e.Delete(ctx, 999) }},
		{"write to a snapshot", engine.ErrReadOnly, func() error { return e.WriteAt(ctx, snap, buf, 0) }},
		{"grow a snapshot", engine.ErrReadOnly, func() error { return e.Grow(ctx, snap, 8<<20) }},
		{"snapshot of a snapshot", engine.ErrWrongKind, func() error { _, err := e.Snapshot(ctx, snap); return err }},
		{"shrink", engine.ErrBadSize, func() error { return e.Grow(ctx, vol, 2<<20) }},
		{"size not a MiB multiple", engine.ErrBadSize, func() error { _, err := e.CreateVolume(ctx, 1<<20+512); return err }},
		{"zero size", engine.ErrBadSize, func() error { _, err := e.CreateVolume(ctx, 0); return err }},
		{"clone smaller than source", engine.ErrBadSize, func() error { _, err := e.Clone(ctx, snap, 1<<20); return err }},
		{"diff across lineages", engine.ErrNotSameLineage, func() error { _, err := e.Diff(ctx, snap, otherSnap); return err }},
		{"diff newer to older", engine.ErrOrder, func() error { _, err := e.Diff(ctx, vol, snap); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
	// Nothing above changed anything.
	checkClean(t, e, true)
	if got := read(t, e, vol, 4<<20); !bytes.Equal(got, make([]byte, 4<<20)) {
		t.Errorf("volume changed by refused operations")
	}
}

// TestCorruptChunk: a damaged pack byte is an error naming the chunk, never
// wrong bytes, and the consistency check reports it.
func TestCorruptChunk(t *testing.T) {
	ctx := t.Context()
	mem := chunkstest.NewMem()
	env := newEnvOn(t, t.TempDir(), mem)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
	data := bytes.Repeat([]byte("deltadisk"), engine.BlockSize/9+1)[:engine.BlockSize]
	if err := env.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	var packs []string
	if err := mem.List(ctx, "", func(name string, _ int64) error { packs = append(packs, name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(packs) != 1 {
		t.Fatalf("%d packs after one write, want 1", len(packs))
	}
	var size int64
	_ = mem.List(ctx, packs[0], func(_ string, n int64) error { size = n; return nil })
	raw := make([]byte, size)
	if err := mem.ReadAt(ctx, packs[0], raw, 0); err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-10] ^= 0xff // inside the chunk's stored bytes
	if err := mem.Put(ctx, packs[0], raw); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, engine.BlockSize)
	err := env.e.ReadAt(ctx, vol, p, 0)
	if !errors.Is(err, chunks.ErrCorrupt) {
		t.Fatalf("ReadAt of a corrupt chunk = %v, want chunks.ErrCorrupt", err)
	}
	if ref := chunks.Sum(data).String(); !strings.Contains(err.Error(), ref) {
		t.Errorf("error %q does not name the chunk %s", err, ref)
	}
	rep, err := env.e.Check(ctx, engine.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rep.Err(), engine.ErrCorrupt) || len(rep.Problems) != 1 {
		t.Errorf("Check = %v, want one problem", rep.Problems)
	}
}

// TestNoSpace: a full chunk store fails the write with an error wrapping
// ENOSPC and changes nothing; the next write, with space, succeeds.
func TestNoSpace(t *testing.T) {
	ctx := t.Context()
	faulty := chunkstest.Faulty(chunkstest.NewMem(), chunkstest.Fault{Op: chunkstest.OpPut, Skip: 1, Times: 1, Err: syscall.ENOSPC})
	env := newEnvOn(t, t.TempDir(), faulty)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
	first := bytes.Repeat([]byte{1}, engine.BlockSize)
	if err := env.e.WriteAt(ctx, vol, first, 0); err != nil {
		t.Fatal(err)
	}
	second := bytes.Repeat([]byte{2}, 2*engine.BlockSize)
	if err := env.e.WriteAt(ctx, vol, second, 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt on a full store = %v, want ENOSPC", err)
	}
	want := append(append([]byte(nil), first...), make([]byte, 1<<20-engine.BlockSize)...)
	if got := read(t, env.e, vol, 1<<20); !bytes.Equal(got, want) {
		t.Fatalf("a refused write changed the volume")
	}
	checkClean(t, env.e, true)
	if err := env.e.WriteAt(ctx, vol, second, 0); err != nil {
		t.Fatalf("WriteAt after space returned: %v", err)
	}
	copy(want, second)
	if got := read(t, env.e, vol, 1<<20); !bytes.Equal(got, want) {
		t.Fatalf("volume does not read the write made after space returned")
	}
}

// TestUnknownFormat: a store written by a newer format is refused with a
// message that says so, and is not modified.
func TestUnknownFormat(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	env := newEnvOn(t, dir, chunkstest.NewMem())
	if err := env.meta.Update(ctx, func(tx meta.Tx) error {
		return tx.Put([]byte("F"), []byte(`{"version":99,"blockSize":65536,"hash":"blake3-256"}`))
	}); err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.Meta, cfg.Zones = env.meta, []engine.Zone{{Name: "z1", Store: env.store}}
	_, err := engine.Open(ctx, cfg)
	if !errors.Is(err, engine.ErrFormat) || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("Open of a version-99 store = %v, want ErrFormat naming version 99", err)
	}
}

// TestDeleteUnderClones: deleting the snapshot and the volume a clone reads
// through leaves the clone reading the same; deleting the clone then frees
// everything.
func TestDeleteUnderClones(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	e := env.e
	vol := must[engine.ID](t)(e.CreateVolume(ctx, 2<<20))
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i * 7 / 512)
	}
	if err := e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(e.Snapshot(ctx, vol))
	clone := must[engine.ID](t)(e.Clone(ctx, snap, 4<<20))
	if err := e.WriteAt(ctx, vol, make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []engine.ID{snap, vol} {
		if err := e.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	want := append(bytes.Clone(data), make([]byte, 2<<20)...)
	if got := read(t, e, clone, 4<<20); !bytes.Equal(got, want) {
		t.Fatalf("clone reads differently after its source was deleted")
	}
	checkClean(t, e, true)
	if err := e.Delete(ctx, clone); err != nil {
		t.Fatal(err)
	}
	env.now = env.now.Add(time.Hour)
	if _, err := e.GC(ctx, engine.DefaultGCOptions()); err != nil {
		t.Fatal(err)
	}
	rep, err := e.Check(ctx, engine.CheckOptions{})
	if err != nil || rep.Err() != nil {
		t.Fatal(err, rep.Err())
	}
	if rep.Lineages+rep.MapEntries+rep.Chunks+rep.Packs != 0 {
		t.Errorf("after deleting every image: %+v, want an empty store", rep)
	}
}

// TestForeignStore: a metadata store with keys but no format record is
// refused rather than adopted.
func TestForeignStore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	b := openBolt(t, dir)
	defer b.Close()
	if err := b.Update(ctx, func(tx meta.Tx) error { return tx.Put([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.Meta = b
	cfg.Zones = []engine.Zone{{Name: "z1", Store: newEnv(t).store}}
	if _, err := engine.Open(ctx, cfg); !errors.Is(err, engine.ErrFormat) {
		t.Fatalf("Open of a foreign store = %v, want ErrFormat", err)
	}
}

// TestMissingPack: a pack deleted behind the engine's back is reported by
// the check, and reads of its chunks fail instead of returning zeros.
func TestMissingPack(t *testing.T) {
	ctx := t.Context()
	mem := chunkstest.NewMem()
	env := newEnvOn(t, t.TempDir(), mem)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
	if err := env.e.WriteAt(ctx, vol, bytes.Repeat([]byte{3, 1}, engine.BlockSize/2), 0); err != nil {
		t.Fatal(err)
	}
	var packs []string
	_ = mem.List(ctx, "", func(name string, _ int64) error { packs = append(packs, name); return nil })
	for _, p := range packs {
		if err := mem.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := env.e.Check(ctx, engine.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "is missing") {
		t.Errorf("Check = %v, want one missing pack", rep.Problems)
	}
	if err := env.e.ReadAt(ctx, vol, make([]byte, 512), 0); !errors.Is(err, chunks.ErrNotFound) {
		t.Errorf("ReadAt of a chunk whose pack is gone = %v, want ErrNotFound", err)
	}
}

// TestZoneWriteFaults: a zone store that is full or refuses writes fails
// the write with its cause, not as ErrZoneUnavailable (which tells clients
// to retry); any other failure is ErrZoneUnavailable. Every error names
// the zone.
func TestZoneWriteFaults(t *testing.T) {
	tests := []struct {
		name                          string
		err                           error
		noSpace, notWritable, unavail bool
	}{
		{"full", &fs.PathError{Op: "write", Path: "/zones/z1/p", Err: syscall.ENOSPC}, true, false, false},
		{"quota", syscall.EDQUOT, true, false, false},
		{"permission", &fs.PathError{Op: "open", Path: "/zones/z1/p", Err: syscall.EACCES}, false, true, false},
		{"read-only", syscall.EROFS, false, true, false},
		{"lost", syscall.ENOTDIR, false, false, true},
		{"io", syscall.EIO, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			faulty := chunkstest.Faulty(chunkstest.NewMem(), chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: tc.err})
			env := newEnvOn(t, t.TempDir(), faulty)
			vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
			err := env.e.WriteAt(ctx, vol, bytes.Repeat([]byte{7}, engine.BlockSize), 0)
			if err == nil {
				t.Fatal("WriteAt on a failing zone succeeded")
			}
			if engine.NoSpace(err) != tc.noSpace || engine.NotWritable(err) != tc.notWritable || errors.Is(err, engine.ErrZoneUnavailable) != tc.unavail {
				t.Errorf("WriteAt = %v: NoSpace %t, NotWritable %t, ErrZoneUnavailable %t; want %t, %t, %t", err,
					engine.NoSpace(err), engine.NotWritable(err), errors.Is(err, engine.ErrZoneUnavailable), tc.noSpace, tc.notWritable, tc.unavail)
			}
			if !strings.Contains(err.Error(), "zone z1") {
				t.Errorf("WriteAt = %v, want the zone named", err)
			}
		})
	}
}
