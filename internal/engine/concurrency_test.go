package engine_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
)

// TestConcurrentPartialWrites: writers of distinct sectors of the same
// blocks run at once; every sector must land (the read-modify-write of a
// partial block must not lose a concurrent writer's bytes).
func TestConcurrentPartialWrites(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 1<<20))
	const writers = 2 * engine.BlockSize / engine.SectorSize // every sector of blocks 0 and 1
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(i%251 + 1)}, engine.SectorSize)
			errs <- env.e.WriteAt(ctx, vol, p, int64(i*engine.SectorSize))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := read(t, env.e, vol, 2*engine.BlockSize)
	for i := range writers {
		if s := got[i*engine.SectorSize : (i+1)*engine.SectorSize]; !bytes.Equal(s, bytes.Repeat([]byte{byte(i%251 + 1)}, engine.SectorSize)) {
			t.Fatalf("sector %d lost a concurrent write: %x...", i, s[:8])
		}
	}
	checkClean(t, env.e, true)
}

// slowBackend makes every pack write take a while, as a real disk's fsync
// does, so that writers arriving meanwhile queue behind it.
type slowBackend struct{ chunks.Backend }

func (b slowBackend) Put(ctx context.Context, name string, data []byte) error {
	time.Sleep(20 * time.Millisecond)
	return b.Backend.Put(ctx, name, data)
}

// TestConcurrentWritersSharePacks: whole-block writers of one volume do not
// serialise on each other, so their chunks share packs (group commit).
func TestConcurrentWritersSharePacks(t *testing.T) {
	ctx := t.Context()
	env := newEnvOn(t, t.TempDir(), slowBackend{chunkstest.NewMem()})
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 8<<20))
	const writers = 64
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(i + 1), 7}, engine.BlockSize/2)
			if err := env.e.WriteAt(ctx, vol, p, int64(i)*engine.BlockSize); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	packs := 0
	_ = env.store.ListPacks(ctx, func(string, int64) error { packs++; return nil })
	t.Logf("%d concurrent single-block writes made %d packs", writers, packs)
	if packs > writers/4 {
		t.Errorf("%d writes made %d packs: concurrent writers of one volume do not share packs", writers, packs)
	}
	for i := range writers {
		got := make([]byte, engine.BlockSize)
		if err := env.e.ReadAt(ctx, vol, got, int64(i)*engine.BlockSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1), 7}, engine.BlockSize/2)) {
			t.Fatalf("block %d reads wrong", i)
		}
	}
}
