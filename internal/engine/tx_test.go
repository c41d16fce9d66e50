package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// callerKey stands for a record the service writes beside the engine's
// metadata; lower-case keys are outside every engine key space.
var callerKey = []byte("t/record")

var errAbort = errors.New("test: caller aborts its transaction")

// dump returns every key and value in the store. Chunk index values hold
// pack names, which differ between otherwise equal stores, so keepChunks
// false keeps only their keys.
func dump(t *testing.T, s meta.Store, keepChunks bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.View(t.Context(), func(tx meta.Tx) error {
		clear(out)
		return tx.Scan(nil, nil, func(k, v []byte) error {
			if k[0] == 'K' && !keepChunks {
				v = nil
			}
			out[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func getKey(t *testing.T, s meta.Store, k []byte) ([]byte, bool) {
	t.Helper()
	var v []byte
	err := s.View(t.Context(), func(tx meta.Tx) error {
		var err error
		v, err = tx.Get(k)
		return err
	})
	if errors.Is(err, meta.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// txOp runs one Tx form and reports how to see that it took effect.
type txOp struct {
	name string
	run  func(e *engine.Engine, tx meta.Tx, vol, snap engine.ID) (check func(t *testing.T), err error)
}

func txOps() []txOp {
	stat := func(e *engine.Engine, id engine.ID, want func(engine.Info, error) error) func(t *testing.T) {
		return func(t *testing.T) {
			t.Helper()
			info, err := e.Stat(t.Context(), id)
			if err := want(info, err); err != nil {
				t.Error(err)
			}
		}
	}
	exists := func(info engine.Info, err error) error { return err }
	return []txOp{
		{"create", func(e *engine.Engine, tx meta.Tx, _, _ engine.ID) (func(*testing.T), error) {
			id, err := e.CreateVolumeTx(tx, 1<<20, "r-2")
			return stat(e, id, exists), err
		}},
		{"snapshot", func(e *engine.Engine, tx meta.Tx, vol, _ engine.ID) (func(*testing.T), error) {
			id, err := e.SnapshotTx(tx, vol, "r-1", "r-2")
			return stat(e, id, exists), err
		}},
		{"clone", func(e *engine.Engine, tx meta.Tx, _, snap engine.ID) (func(*testing.T), error) {
			id, err := e.CloneTx(tx, snap, 2<<20)
			return stat(e, id, exists), err
		}},
		{"freeze", func(e *engine.Engine, tx meta.Tx, vol, _ engine.ID) (func(*testing.T), error) {
			id, err := e.FreezeTx(tx, vol)
			return stat(e, id, exists), err
		}},
		{"grow", func(e *engine.Engine, tx meta.Tx, vol, _ engine.ID) (func(*testing.T), error) {
			return stat(e, vol, func(info engine.Info, err error) error {
				if err == nil && info.Size != 4<<20 {
					err = fmt.Errorf("size after GrowTx = %d, want %d", info.Size, 4<<20)
				}
				return err
			}), e.GrowTx(tx, vol, 4<<20)
		}},
		{"place", func(e *engine.Engine, tx meta.Tx, vol, _ engine.ID) (func(*testing.T), error) {
			return stat(e, vol, func(info engine.Info, err error) error {
				if err == nil && !slices.Equal(info.Zones, []string{"r-3"}) {
					err = fmt.Errorf("zones after PlaceTx = %v, want [r-3]", info.Zones)
				}
				return err
			}), e.PlaceTx(tx, vol, "r-3")
		}},
		{"delete", func(e *engine.Engine, tx meta.Tx, _, snap engine.ID) (func(*testing.T), error) {
			r, err := e.DeleteTx(tx, snap)
			gone := stat(e, snap, func(_ engine.Info, err error) error {
				if !errors.Is(err, engine.ErrNotFound) {
					return fmt.Errorf("Stat after DeleteTx = %v, want ErrNotFound", err)
				}
				return nil
			})
			return func(t *testing.T) {
				t.Helper()
				gone(t)
				if err := e.Collect(t.Context(), r); err != nil {
					t.Error(err)
				}
			}, err
		}},
	}
}

// TestTxFormsComposeWithCaller: each Tx form and the caller's own write
// commit together, or, when the caller's closure fails after both,
// neither leaves a trace: the store is byte for byte as before.
func TestTxFormsComposeWithCaller(t *testing.T) {
	for _, op := range txOps() {
		t.Run(op.name, func(t *testing.T) {
			ctx := t.Context()
			z := newZoneEnv(t)
			vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 2<<20))
			data := randomData(3, 3*engine.BlockSize)
			if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
				t.Fatal(err)
			}
			snap := must[engine.ID](t)(z.e.Snapshot(ctx, vol))
			before := dump(t, z.env.meta, true)

			err := z.env.meta.Update(ctx, func(tx meta.Tx) error {
				if err := tx.Put(callerKey, []byte("aborted")); err != nil {
					return err
				}
				if _, err := op.run(z.e, tx, vol, snap); err != nil {
					return err
				}
				return errAbort
			})
			if !errors.Is(err, errAbort) {
				t.Fatalf("Update = %v, want the caller's error", err)
			}
			if after := dump(t, z.env.meta, true); !maps.Equal(before, after) {
				t.Fatalf("an aborted %s left the store changed: %d keys before, %d after", op.name, len(before), len(after))
			}
			checkClean(t, z.e, false)

			var check func(*testing.T)
			err = z.env.meta.Update(ctx, func(tx meta.Tx) error {
				if err := tx.Put(callerKey, []byte("committed")); err != nil {
					return err
				}
				var err error
				check, err = op.run(z.e, tx, vol, snap)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			check(t)
			if v, ok := getKey(t, z.env.meta, callerKey); string(v) != "committed" {
				t.Errorf("caller's key after commit = %q, %v; want committed", v, ok)
			}
			if got := read(t, z.e, vol, int64(len(data))); !bytes.Equal(got, data) {
				t.Error("the volume reads differently after the operation")
			}
			if _, err := z.e.Replicate(ctx); err != nil {
				t.Fatal(err)
			}
			checkClean(t, z.e, true)
		})
	}
}

// TestDeleteTxCollectEqualsDelete: DeleteTx committed and then Collect
// leave the store as Delete does, for a volume, a snapshot, and a snapshot
// a clone still reads through.
func TestDeleteTxCollectEqualsDelete(t *testing.T) {
	// history builds the same images in any env: a volume with data, two
	// snapshots, and a clone of the second.
	history := func(t *testing.T, env *testEnv) (vol, s1, s2 engine.ID) {
		ctx := t.Context()
		vol = must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
		for round := range 3 {
			if err := env.e.WriteAt(ctx, vol, randomData(uint64(round), 2*engine.BlockSize), int64(round)*engine.BlockSize); err != nil {
				t.Fatal(err)
			}
			id := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
			switch round {
			case 0:
				s1 = id
			case 1:
				s2 = id
			}
		}
		must[engine.ID](t)(env.e.Clone(ctx, s2, 1<<20))
		return vol, s1, s2
	}
	tests := []struct {
		name string
		pick func(vol, s1, s2 engine.ID) engine.ID
	}{
		{"volume", func(vol, _, _ engine.ID) engine.ID { return vol }},
		{"snapshot", func(_, s1, _ engine.ID) engine.ID { return s1 }},
		{"snapshot-read-by-clone", func(_, _, s2 engine.ID) engine.ID { return s2 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			plain, split := newEnv(t), newEnv(t)
			id := tc.pick(history(t, plain))
			if got := tc.pick(history(t, split)); got != id {
				t.Fatalf("the two histories gave IDs %d and %d", id, got)
			}
			if err := plain.e.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			var r engine.Release
			err := split.meta.Update(ctx, func(tx meta.Tx) error {
				var err error
				r, err = split.e.DeleteTx(tx, id)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := split.e.Collect(ctx, r); err != nil {
				t.Fatal(err)
			}
			want, got := dump(t, plain.meta, false), dump(t, split.meta, false)
			if !maps.Equal(want, got) {
				t.Errorf("DeleteTx+Collect left %d keys, Delete %d; the stores differ", len(got), len(want))
			}
			checkClean(t, split.e, true)
			// Collecting again, or a Release whose transaction
			// rolled back, changes nothing.
			if err := split.e.Collect(ctx, r); err != nil {
				t.Fatal(err)
			}
			other := must[[]engine.Info](t)(split.e.List(ctx))[0].ID
			err = split.meta.Update(ctx, func(tx meta.Tx) error {
				var err error
				if r, err = split.e.DeleteTx(tx, other); err != nil {
					return err
				}
				return errAbort
			})
			if !errors.Is(err, errAbort) {
				t.Fatalf("Update = %v, want the caller's error", err)
			}
			if err := split.e.Collect(ctx, r); err != nil {
				t.Fatal(err)
			}
			if after := dump(t, split.meta, false); !maps.Equal(got, after) {
				t.Error("Collect of a Release whose transaction rolled back changed the store")
			}
			checkClean(t, split.e, true)
		})
	}
}

// TestGuardedWrite: a guard that refuses leaves the volume reading as
// before and its own writes absent; one that accepts commits its writes
// with the blocks, even when the write changes no block.
func TestGuardedWrite(t *testing.T) {
	errRefused := errors.New("test: guard refuses")
	tests := []struct {
		name   string
		off, n int64
		zero   bool
	}{
		{"whole-blocks", engine.BlockSize, 2 * engine.BlockSize, false},
		{"partial-blocks", 512, engine.BlockSize + 1024, false},
		{"put-page-max-unaligned", 512, 4 << 20, false},
		{"zero", 0, 8 << 20, true},
		{"zero-partial", 1024, engine.BlockSize, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			env := newEnv(t)
			const size = 8 << 20
			vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
			old := randomData(1, size)
			if err := env.e.WriteAt(ctx, vol, old, 0); err != nil {
				t.Fatal(err)
			}
			p := randomData(2, int(tc.n))
			write := func(guard func(meta.Tx) error) error {
				if tc.zero {
					return env.e.ZeroIf(ctx, vol, tc.off, tc.n, guard)
				}
				return env.e.WriteAtIf(ctx, vol, p, tc.off, guard)
			}
			err := write(func(tx meta.Tx) error {
				if err := tx.Put(callerKey, []byte("refused")); err != nil {
					return err
				}
				return fmt.Errorf("grant revoked: %w", errRefused)
			})
			if !errors.Is(err, errRefused) {
				t.Fatalf("refused write = %v, want the guard's error", err)
			}
			if got := read(t, env.e, vol, size); !bytes.Equal(got, old) {
				t.Fatal("a refused write changed the volume")
			}
			if v, ok := getKey(t, env.meta, callerKey); ok {
				t.Fatalf("a refused guard's write is visible: %q", v)
			}
			checkClean(t, env.e, false)

			if err := write(func(tx meta.Tx) error { return tx.Put(callerKey, []byte("accepted")) }); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(old)
			if tc.zero {
				clear(want[tc.off : tc.off+tc.n])
			} else {
				copy(want[tc.off:], p)
			}
			if got := read(t, env.e, vol, size); !bytes.Equal(got, want) {
				t.Fatal("an accepted guarded write does not read back")
			}
			if v, _ := getKey(t, env.meta, callerKey); string(v) != "accepted" {
				t.Fatalf("the guard's key = %q, want accepted", v)
			}
			// Zeroing zeros again changes no block; the guard's
			// write commits all the same.
			if err := env.e.ZeroIf(ctx, vol, 0, size, func(tx meta.Tx) error { return tx.Put(callerKey, []byte("no-op")) }); err != nil {
				t.Fatal(err)
			}
			if err := env.e.ZeroIf(ctx, vol, 0, size, func(tx meta.Tx) error { return tx.Put(callerKey, []byte("again")) }); err != nil {
				t.Fatal(err)
			}
			if v, _ := getKey(t, env.meta, callerKey); string(v) != "again" {
				t.Fatalf("the guard's key after a write that changed nothing = %q, want again", v)
			}
			checkClean(t, env.e, true)
		})
	}
}

// TestGuardedWriteTooLarge: a guarded write beyond one commit's bound is
// refused before anything, guard included, runs.
func TestGuardedWriteTooLarge(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 512<<20))
	old := randomData(1, engine.BlockSize)
	if err := env.e.WriteAt(ctx, vol, old, 0); err != nil {
		t.Fatal(err)
	}
	// Untouched pages of a large zeroed slice cost no memory.
	p := make([]byte, 256<<20+engine.BlockSize)
	p[0] = 1
	err := env.e.WriteAtIf(ctx, vol, p, 0, func(tx meta.Tx) error { return tx.Put(callerKey, nil) })
	if !errors.Is(err, engine.ErrTooLarge) {
		t.Fatalf("WriteAtIf of %d bytes = %v, want ErrTooLarge", len(p), err)
	}
	if _, ok := getKey(t, env.meta, callerKey); ok {
		t.Error("the guard of a refused write committed")
	}
	if got := read(t, env.e, vol, engine.BlockSize); !bytes.Equal(got, old) {
		t.Error("a write refused as too large changed the volume")
	}
}

// TestPutPageCommitsOnce: a write of 4 MiB that does not start on a block
// boundary spans 65 blocks and still commits in one transaction (it took
// two, so a snapshot could see half of it), and so does each plain
// metadata operation over its Tx form.
func TestPutPageCommitsOnce(t *testing.T) {
	ctx := t.Context()
	env := newPlainEnv(t)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 8<<20))
	var snap, clone engine.ID
	ops := []struct {
		name string
		run  func() error
	}{
		{"write-4MiB-unaligned", func() error { return env.e.WriteAt(ctx, vol, randomData(1, 4<<20), 512) }},
		{"zero-4MiB-unaligned", func() error { return env.e.Zero(ctx, vol, 1024, 4<<20) }},
		{"guarded-write", func() error {
			return env.e.WriteAtIf(ctx, vol, randomData(2, 4<<20), 512, func(tx meta.Tx) error { return tx.Put(callerKey, nil) })
		}},
		{"create", func() error { _, err := env.e.CreateVolume(ctx, 1<<20); return err }},
		{"snapshot", func() (err error) { snap, err = env.e.Snapshot(ctx, vol); return err }},
		{"clone", func() (err error) { clone, err = env.e.Clone(ctx, snap, 8<<20); return err }},
		{"freeze", func() error { _, err := env.e.Freeze(ctx, snap); return err }},
		{"grow", func() error { return env.e.Grow(ctx, clone, 16<<20) }},
		{"place", func() error { return env.e.Place(ctx, clone, "z1") }},
	}
	for _, op := range ops {
		c := env.measure(t, op.run)
		if c.meta.Updates != 1 {
			t.Errorf("%s committed %d transactions, want 1", op.name, c.meta.Updates)
		}
	}
	checkClean(t, env.e, true)
}

// TestGuardedWritesAndSnapshotTx: guarded 4 MiB writers and snapshots in
// caller transactions race on one volume. Each write fills the same
// unaligned range with its own byte and its guard records that byte; each
// snapshot reads the record in its own transaction. Every snapshot must
// hold exactly the write its transaction saw last: all of it, nothing of
// any later one.
func TestGuardedWritesAndSnapshotTx(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	const (
		size    = 8 << 20
		off     = 512
		n       = 4 << 20
		writers = 3
		rounds  = 3
		snaps   = 8
	)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	type snapshot struct {
		id  engine.ID
		ver byte
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken []snapshot
	)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				ver := byte(1 + w*rounds + r)
				p := bytes.Repeat([]byte{ver}, n)
				err := env.e.WriteAtIf(ctx, vol, p, off, func(tx meta.Tx) error { return tx.Put(callerKey, []byte{ver}) })
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range snaps {
			var s snapshot
			err := env.meta.Update(ctx, func(tx meta.Tx) error {
				s = snapshot{}
				v, err := tx.Get(callerKey)
				switch {
				case errors.Is(err, meta.ErrNotFound):
				case err != nil:
					return err
				default:
					s.ver = v[0]
				}
				s.id, err = env.e.SnapshotTx(tx, vol)
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			taken = append(taken, s)
			mu.Unlock()
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, s := range taken {
		got := read(t, env.e, s.id, size)
		want := make([]byte, size)
		copy(want[off:off+n], bytes.Repeat([]byte{s.ver}, n))
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Errorf("snapshot %d taken after write %d reads %d at offset %d, want %d", s.id, s.ver, got[i], i, want[i])
		}
	}
	checkClean(t, env.e, true)
}

// TestZeroSeesLateWrite: a write that commits after a clear began but
// before its commit is cleared whole, by Zero and ZeroIf alike. The blocks
// to clear were found by a walk before the commit, which missed a block
// that held no data yet, so half of the write survived the clear.
func TestZeroSeesLateWrite(t *testing.T) {
	tests := []struct {
		name string
		zero func(e *engine.Engine, ctx context.Context, vol engine.ID, off, n int64) error
	}{
		{"Zero", (*engine.Engine).Zero},
		{"ZeroIf", func(e *engine.Engine, ctx context.Context, vol engine.ID, off, n int64) error {
			return e.ZeroIf(ctx, vol, off, n, func(tx meta.Tx) error { return tx.Put(callerKey, nil) })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			z, hook := newHookZoneEnv(t, ".storeMissing")
			vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20))
			if err := z.e.WriteAt(ctx, vol, randomData(1, 2*engine.BlockSize), 0); err != nil {
				t.Fatal(err)
			}
			// The clear's last look before its commit is storeMissing's.
			late := func() {
				// Blocks 1 and 2: one that held data before, one that did not.
				if err := z.e.WriteAt(ctx, vol, randomData(2, 2*engine.BlockSize), engine.BlockSize); err != nil {
					t.Error(err)
				}
			}
			hook.hook.Store(&late)
			const n = 4 * engine.BlockSize
			if err := tc.zero(z.e, ctx, vol, 0, n); err != nil {
				t.Fatal(err)
			}
			if hook.hook.Load() != nil {
				t.Fatal("the write meant to land before the clear's commit did not run")
			}
			if got := read(t, z.e, vol, n); !bytes.Equal(got, make([]byte, n)) {
				i := bytes.IndexFunc(got, func(r rune) bool { return r != 0 })
				t.Fatalf("after a clear of [0, %d), byte %d holds data: the write that committed before the clear survived in part", n, i)
			}
			checkClean(t, z.e, true)
		})
	}
}
