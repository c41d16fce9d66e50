package engine_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
)

// TestJournalFlush: with a journal, a flush commits nothing to the
// metadata store and leaves the volume as it was; Hold folds the writes
// into the volume; Close removes the journal.
func TestJournalFlush(t *testing.T) {
	ctx := t.Context()
	env := newJournalEnv(t)
	jdir := filepath.Join(env.dir, "journal")
	const size = 1 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 0))
	t.Cleanup(func() { wb.Close(context.Background()) })
	engine.SetWriteBackDelay(wb, time.Hour)

	want := make([]byte, size)
	for i, off := range []int64{512, engine.BlockSize - 512, 5 * engine.BlockSize} {
		p := bytes.Repeat([]byte{byte(i + 1)}, 4096)
		if err := wb.WriteAt(ctx, p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	before := env.counted.Counts()
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.counted.Counts().Updates - before.Updates; got != 0 {
		t.Errorf("a journaled flush committed %d transactions, want 0", got)
	}
	files := journalSizes(t, jdir)
	var total int64
	for _, n := range files {
		total += n
	}
	if len(files) != 1 || total < 3*4096 {
		t.Errorf("journal files after a flush: %v; want one holding the 3 writes", files)
	}
	if !bytes.Equal(read(t, env.e, vol, size), make([]byte, size)) {
		t.Fatal("a journaled flush changed the committed volume")
	}
	got := make([]byte, size)
	if err := wb.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the WriteBack reads differently after a flush (%v)", err)
	}

	release, err := env.e.Hold(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	release()
	if !bytes.Equal(read(t, env.e, snap, size), want) {
		t.Fatal("a snapshot under Hold misses journaled writes")
	}
	if files := journalSizes(t, jdir); len(files) != 0 {
		t.Errorf("journal files after a fold: %v, want none", files)
	}
	if err := wb.WriteAt(ctx, want[:512], 0); err != nil {
		t.Fatal(err)
	}
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if files := journalSizes(t, jdir); len(files) != 0 {
		t.Errorf("journal files after Close: %v, want none", files)
	}
	if !bytes.Equal(read(t, env.e, vol, size), want) {
		t.Fatal("the volume after Close differs")
	}
	checkClean(t, env.e, true)
}

// TestJournalPowerLoss writes through a journaled WriteBack with a small
// buffer (so that folds run between flushes), then loses power in the
// middle of a flush: each journal file keeps what the last answered flush
// synced and a random part of what the interrupted one wrote, perhaps with
// a page of it lost. After reopening, the volume must hold exactly the
// first k writes for some k covering every write the answered flush
// covered.
func TestJournalPowerLoss(t *testing.T) {
	rounds := 25
	if testing.Short() {
		rounds = 8
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 15))
	var replayed int
	for round := range rounds {
		replayed += journalPowerLossRound(t, rng, round)
	}
	t.Logf("%d rounds, %d of them with writes replayed", rounds, replayed)
	if replayed == 0 {
		t.Fatal("no round replayed a write: the test checked nothing")
	}
}

func journalPowerLossRound(t *testing.T, rng *rand.Rand, round int) int {
	ctx := t.Context()
	const size = 2 << 20
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	backend := chunkstest.NewMem()
	open := func() (*engine.Engine, func()) {
		ms := openBolt(t, dir)
		cfg := chunks.DefaultConfig()
		cfg.Backend, cfg.Compress = backend, true
		cs, err := chunks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ecfg := engine.DefaultConfig()
		ecfg.Meta, ecfg.JournalDir = ms, jdir
		ecfg.Zones = []engine.Zone{{Name: "z1", Store: cs}}
		e, err := engine.Open(ctx, ecfg)
		if err != nil {
			ms.Close()
			t.Fatalf("round %d: opening: %v", round, err)
		}
		return e, func() { ms.Close() }
	}
	e, closeMeta := open()
	vol := must[engine.ID](t)(e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(e.OpenWriteBack(ctx, vol, int64(2+rng.IntN(8))*engine.BlockSize))
	engine.SetWriteBackDelay(wb, time.Hour)

	type write struct {
		off  int64
		data []byte
	}
	var writes []write
	flushed := 0
	var synced map[string]int64 // journal file sizes when the last flush returned
	do := func(n int) {
		for range n {
			p := make([]byte, (1+rng.IntN(256))*512)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			off := rng.Int64N((size-int64(len(p)))/512+1) * 512
			if err := wb.WriteAt(ctx, p, off); err != nil {
				t.Fatal(err)
			}
			writes = append(writes, write{off, p})
		}
	}
	for range 1 + rng.IntN(6) {
		do(rng.IntN(20))
		if err := wb.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		flushed = len(writes)
		synced = journalSizes(t, jdir)
	}
	// The interrupted flush: it ran, but only part of what it wrote
	// reached the disk.
	do(1 + rng.IntN(20))
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	engine.AbandonWriteBack(wb)
	for name, n := range journalSizes(t, jdir) {
		from := synced[name] // 0 for a file the last flush created
		if n == from {
			continue
		}
		cut := from + rng.Int64N(n-from+1)
		path := filepath.Join(jdir, name)
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		if pages := (cut - from) / 4096; pages > 0 && rng.IntN(2) == 0 {
			// A page written before the cut that never reached the disk.
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteAt(make([]byte, 4096), (from+4095)/4096*4096+rng.Int64N(pages)*4096)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	closeMeta()

	e, closeMeta = open()
	defer closeMeta()
	got := read(t, e, vol, size)
	if files := journalSizes(t, jdir); len(files) != 0 {
		t.Errorf("round %d: journal files after replay: %v, want none", round, files)
	}
	checkClean(t, e, true)
	state := make([]byte, size)
	for k := 0; k <= len(writes); k++ {
		if k > 0 {
			copy(state[writes[k-1].off:], writes[k-1].data)
		}
		if k >= flushed && bytes.Equal(got, state) {
			if k > flushed {
				return 1
			}
			return 0
		}
	}
	t.Fatalf("round %d: after the power loss the volume holds no prefix of the %d writes covering the %d flushed", round, len(writes), flushed)
	return 0
}

// journalSizes returns the size of each file in dir.
func journalSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	sizes := make(map[string]int64)
	for _, de := range entries {
		fi, err := de.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // a fold removed it meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes[de.Name()] = fi.Size()
	}
	return sizes
}
