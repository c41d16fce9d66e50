package engine_test

import (
	"context"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
)

// cost is what one operation did at the seams.
type cost struct {
	meta    metatest.Counts
	backend chunkstest.Stats
}

func (env *testEnv) measure(t *testing.T, op func() error) cost {
	t.Helper()
	env.counted.Reset()
	env.backend.Reset()
	if err := op(); err != nil {
		t.Fatal(err)
	}
	return cost{meta: env.counted.Counts(), backend: env.backend.Stats()}
}

// chainOn builds, on a volume of size bytes, the same history whatever the
// size: writes into the first GiB, a snapshot, more writes, a snapshot,
// more writes. It returns the volume and its two snapshots.
func chainOn(t *testing.T, env *testEnv, size int64) (vol, s1, s2 engine.ID) {
	t.Helper()
	ctx := context.Background()
	vol = must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	block := make([]byte, engine.BlockSize)
	writeAt := func(round int, blocks ...int64) {
		for _, b := range blocks {
			block[0], block[1] = byte(round), byte(b)
			if err := env.e.WriteAt(ctx, vol, block, b*engine.BlockSize); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeAt(1, 0, 7, 100, 1000, 16000)
	s1 = must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	writeAt(2, 7, 8, 9, 5000)
	s2 = must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	writeAt(3, 9, 10, 16001)
	return vol, s1, s2
}

// TestCostIndependentOfSize makes DESIGN.md's cost table a check that can
// fail: snapshot, diff and deleting a snapshot in the middle of a chain
// must perform no more metadata or chunk operations on a 1 TiB sparse
// volume than on a 1 GiB one holding the same changes, and none of them
// may touch chunk storage.
func TestCostIndependentOfSize(t *testing.T) {
	ops := []struct {
		name string
		run  func(ctx context.Context, env *testEnv, vol, s1, s2 engine.ID) error
	}{
		{"snapshot", func(ctx context.Context, env *testEnv, vol, _, _ engine.ID) error {
			_, err := env.e.Snapshot(ctx, vol)
			return err
		}},
		{"diff", func(ctx context.Context, env *testEnv, _, s1, s2 engine.ID) error {
			_, err := env.e.Diff(ctx, s1, s2)
			return err
		}},
		{"diff-to-head", func(ctx context.Context, env *testEnv, vol, s1, _ engine.ID) error {
			_, err := env.e.Diff(ctx, s1, vol)
			return err
		}},
		{"delete-middle-snapshot", func(ctx context.Context, env *testEnv, vol, _, s2 engine.ID) error {
			// s2 sits between s1 and the head.
			return env.e.Delete(ctx, s2)
		}},
		{"clone", func(ctx context.Context, env *testEnv, _, s1, _ engine.ID) error {
			_, err := env.e.Clone(ctx, s1, 1<<40)
			return err
		}},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			var costs []cost
			for _, size := range []int64{1 << 30, 1 << 40} {
				env := newEnv(t)
				vol, s1, s2 := chainOn(t, env, size)
				costs = append(costs, env.measure(t, func() error { return op.run(t.Context(), env, vol, s1, s2) }))
			}
			small, large := costs[0], costs[1]
			if large.meta.Ops() > small.meta.Ops() {
				t.Errorf("%s: %d metadata operations on 1 TiB, %d on 1 GiB; want no growth with size (%+v vs %+v)",
					op.name, large.meta.Ops(), small.meta.Ops(), large.meta, small.meta)
			}
			if small.meta.Ops() == 0 {
				t.Errorf("%s: no metadata operations counted; the counter is not wired", op.name)
			}
			if b := large.backend; b.Puts+b.ReadAts+b.Deletes+b.Lists != 0 {
				t.Errorf("%s: touched chunk storage: %+v; want no chunk I/O", op.name, b)
			}
		})
	}
}

// TestDiffCostFollowsChanges: a diff over twice the changed blocks costs
// about twice the scanned keys, and a diff over generations that changed
// nothing costs a constant.
func TestDiffCostFollowsChanges(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<40))
	data := make([]byte, 64*engine.BlockSize)
	for i := range data {
		data[i] = byte(i / 512)
	}
	s0 := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	if err := env.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	s1 := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	data[0]++
	if err := env.e.WriteAt(ctx, vol, data, 1<<39); err != nil {
		t.Fatal(err)
	}
	s2 := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	s3 := must[engine.ID](t)(env.e.Snapshot(ctx, vol))

	one := env.measure(t, func() error { _, err := env.e.Diff(ctx, s0, s1); return err })
	two := env.measure(t, func() error { _, err := env.e.Diff(ctx, s0, s2); return err })
	none := env.measure(t, func() error { _, err := env.e.Diff(ctx, s2, s3); return err })
	if two.meta.ScanKeys < 2*one.meta.ScanKeys-4 || two.meta.ScanKeys > 2*one.meta.ScanKeys+4 {
		t.Errorf("diff over 128 changed blocks scanned %d keys, over 64 scanned %d; want about twice", two.meta.ScanKeys, one.meta.ScanKeys)
	}
	if none.meta.Ops() > 10 {
		t.Errorf("diff over an empty generation cost %d metadata operations (%+v); want a constant", none.meta.Ops(), none.meta)
	}
}

// TestReplicationCostIndependentOfOtherImages: replicating a snapshot that
// changed one block costs the same in a store with 100 other images as in
// one with 5: the earlier snapshot it diffs against comes from its own
// lineage's snapshot index, not a scan of every image.
func TestReplicationCostIndependentOfOtherImages(t *testing.T) {
	var costs []cost
	for _, others := range []int{5, 100} {
		ctx := t.Context()
		z := newZoneEnv(t)
		for range others {
			v := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20))
			must[engine.ID](t)(z.e.Snapshot(ctx, v))
		}
		vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<30, "r-1"))
		if err := z.e.WriteAt(ctx, vol, randomData(1, 1<<20), 0); err != nil {
			t.Fatal(err)
		}
		must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
		if _, err := z.e.Replicate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := z.e.WriteAt(ctx, vol, randomData(2, engine.BlockSize), 5*engine.BlockSize); err != nil {
			t.Fatal(err)
		}
		must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
		costs = append(costs, z.env.measure(t, func() error { _, err := z.e.Replicate(ctx); return err }))
	}
	few, many := costs[0], costs[1]
	if many.meta.Ops() > few.meta.Ops() {
		t.Errorf("replication cost %d metadata operations with 100 other images, %d with 5 (%+v vs %+v); want no growth",
			many.meta.Ops(), few.meta.Ops(), many.meta, few.meta)
	}
	if few.meta.Ops() == 0 {
		t.Error("no metadata operations counted; the counter is not wired")
	}
}
