package engine_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// hookStore runs its hook once, right after the first View called directly
// by a function whose name ends in caller: a fixed point at which to slip
// another operation into the engine's background work.
type hookStore struct {
	meta.Store
	caller string
	hook   atomic.Pointer[func()]
}

func (h *hookStore) View(ctx context.Context, fn func(meta.Tx) error) error {
	err := h.Store.View(ctx, fn)
	pc, _, _, _ := runtime.Caller(1)
	if strings.HasSuffix(runtime.FuncForPC(pc).Name(), h.caller) {
		if f := h.hook.Swap(nil); f != nil {
			(*f)()
		}
	}
	return err
}

func newHookZoneEnv(t *testing.T, caller string) (*zoneEnv, *hookStore) {
	t.Helper()
	var hs *hookStore
	z := newZoneEnvWith(t, func(m meta.Store) meta.Store {
		hs = &hookStore{Store: m, caller: caller}
		return hs
	})
	return z, hs
}

// readsWithout reads an image with zone down failing every read, and
// fails the test unless it reads as want.
func (z *zoneEnv) readsWithout(t *testing.T, down string, id engine.ID, want []byte) {
	t.Helper()
	z.down[down].Store(true)
	defer z.down[down].Store(false)
	got := make([]byte, len(want))
	if err := z.e.ReadAt(t.Context(), id, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("image %d is not pending, yet without zone %s it reads: %v", id, down, err)
	}
}

// TestReplicationBaseDeletedMeanwhile: the earlier snapshot replication
// diffs against is deleted between choosing it and diffing; replication
// must then walk the whole image, not take the base's absence for its own
// and call the image done.
func TestReplicationBaseDeletedMeanwhile(t *testing.T) {
	ctx := t.Context()
	z, hs := newHookZoneEnv(t, "engine.(*Engine).replicateImage")
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1"))
	if err := z.e.WriteAt(ctx, vol, randomData(1, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	s1 := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	if _, err := z.e.Replicate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.e.WriteAt(ctx, vol, randomData(2, engine.BlockSize), 3*engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	s2 := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	want := read(t, z.e, s2, 1<<20)
	del := func() {
		if err := z.e.Delete(ctx, s1); err != nil {
			t.Error(err)
		}
	}
	hs.hook.Store(&del)
	if n, err := z.e.Replicate(ctx); n != 1 || err != nil {
		t.Fatalf("Replicate = %d, %v", n, err)
	}
	if hs.hook.Load() != nil {
		t.Fatal("the hook never ran")
	}
	z.readsWithout(t, "r-1", s2, want)
}

// TestReplicationChunkCollectedMeanwhile: a chunk of a replication batch
// is collected (its block overwritten, GC run) between the walk and the
// copy; the rest of the batch must still be copied.
func TestReplicationChunkCollectedMeanwhile(t *testing.T) {
	ctx := t.Context()
	z, hs := newHookZoneEnv(t, "engine.(*Engine).walkRange")
	src := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1"))
	if err := z.e.WriteAt(ctx, src, randomData(1, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	s0 := must[engine.ID](t)(z.e.Snapshot(ctx, src))
	clone := must[engine.ID](t)(z.e.Clone(ctx, s0, 1<<20, z.zones...))
	if err := z.e.WriteAt(ctx, clone, randomData(2, engine.BlockSize), 0); err != nil {
		t.Fatal(err)
	}
	overwrite := func() {
		if err := z.e.WriteAt(ctx, clone, randomData(3, engine.BlockSize), 0); err != nil {
			t.Error(err)
		}
		if _, err := z.e.GC(ctx, engine.DefaultGCOptions()); err != nil {
			t.Error(err)
		}
	}
	hs.hook.Store(&overwrite)
	if n, err := z.e.Replicate(ctx); n != 1 || err != nil {
		t.Fatalf("Replicate = %d, %v", n, err)
	}
	if hs.hook.Load() != nil {
		t.Fatal("the hook never ran")
	}
	z.readsWithout(t, "r-1", clone, read(t, z.e, clone, 1<<20))
}

// TestPlaceWidensAndWritesFollow: widening a volume's placement makes it
// pending until replicated, writes from then on go to every zone, and a
// write whose zones were read before the change commits into the new ones.
func TestPlaceWidensAndWritesFollow(t *testing.T) {
	ctx := t.Context()
	z, hs := newHookZoneEnv(t, "engine.(*Engine).storeMissing")
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 2<<20, "r-1"))
	if err := z.e.WriteAt(ctx, vol, randomData(4, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	// A write in flight has looked up which zones lack its chunks when
	// the placement widens and replication runs to its end; the write
	// must still land in every new zone.
	place := func() {
		if err := z.e.Place(ctx, vol, z.zones...); err != nil {
			t.Error(err)
		}
		if info, err := z.e.Stat(ctx, vol); err != nil || !info.Pending || len(info.Zones) != 3 {
			t.Errorf("after Place: %+v, %v; want pending in three zones", info, err)
		}
		if n, err := z.e.Replicate(ctx); n != 1 || err != nil {
			t.Errorf("Replicate = %d, %v", n, err)
		}
	}
	hs.hook.Store(&place)
	if err := z.e.WriteAt(ctx, vol, randomData(5, 1<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	if hs.hook.Load() != nil {
		t.Fatal("the hook never ran")
	}
	if info := must[engine.Info](t)(z.e.Stat(ctx, vol)); info.Pending {
		t.Fatalf("still pending: %+v", info)
	}
	checkClean(t, z.e, true)
	want := read(t, z.e, vol, 2<<20)
	for _, zone := range z.zones {
		z.down["r-1"].Store(zone != "r-1")
		z.down["r-2"].Store(zone != "r-2")
		z.down["r-3"].Store(zone != "r-3")
		if got := read(t, z.e, vol, 2<<20); !bytes.Equal(got, want) {
			t.Fatalf("zone %s alone does not hold the volume", zone)
		}
	}
	for _, zone := range z.zones {
		z.down[zone].Store(false)
	}
	if err := z.e.Place(ctx, 12345, "r-1"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Place of an unknown image = %v, want ErrNotFound", err)
	}
}
