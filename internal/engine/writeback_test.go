package engine_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
)

// TestWriteBackFlush: buffered writes read back through the WriteBack at
// once, reach the volume only when flushed, and a flush is one commit.
func TestWriteBackFlush(t *testing.T) {
	ctx := t.Context()
	env := newPlainEnv(t)
	const size = 1 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	old := bytes.Repeat([]byte{7}, size)
	if err := env.e.WriteAt(ctx, vol, old, 0); err != nil {
		t.Fatal(err)
	}
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 0))
	t.Cleanup(func() { wb.Close(context.Background()) })
	if _, err := env.e.OpenWriteBack(ctx, vol, 0); !errors.Is(err, engine.ErrWriteBackOpen) {
		t.Fatalf("second OpenWriteBack = %v, want ErrWriteBackOpen", err)
	}

	want := bytes.Clone(old)
	writes := []struct{ off, n int64 }{
		{512, 4096},                                  // inside a block
		{engine.BlockSize - 512, 1024},               // across two blocks
		{3 * engine.BlockSize, 2 * engine.BlockSize}, // whole blocks
		{512, 512},                                   // again into a buffered block
	}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(10 + i)}, int(w.n))
		if err := wb.WriteAt(ctx, p, w.off); err != nil {
			t.Fatal(err)
		}
		copy(want[w.off:], p)
	}
	got := make([]byte, size)
	if err := wb.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("WriteBack.ReadAt does not read the buffered writes")
	}
	if !bytes.Equal(read(t, env.e, vol, size), old) {
		t.Fatal("the volume changed before a flush")
	}
	if got, want := wb.Buffered(), int64(4*engine.BlockSize); got != want {
		t.Errorf("Buffered = %d, want %d (blocks 0, 1, 3, 4)", got, want)
	}

	before := env.counted.Counts()
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.counted.Counts().Updates - before.Updates; got != 1 {
		t.Errorf("a flush of 4 blocks committed %d transactions, want 1", got)
	}
	if !bytes.Equal(read(t, env.e, vol, size), want) {
		t.Fatal("the volume does not hold the writes after a flush")
	}
	if wb.Buffered() != 0 {
		t.Errorf("Buffered = %d after a flush, want 0", wb.Buffered())
	}
	before = env.counted.Counts()
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.counted.Counts().Updates - before.Updates; got != 0 {
		t.Errorf("a flush with nothing buffered committed %d transactions", got)
	}
	checkClean(t, env.e, true)
}

// TestWriteBackModel runs random writes, zeros, flushes and reads from
// several goroutines, each on its own sectors (a disk orders only
// overlapping writes), with flushes from another, and checks every read and
// the final volume against a model.
func TestWriteBackModel(t *testing.T) {
	t.Run("commit", func(t *testing.T) { testWriteBackModel(t, newEnv(t), false) })
	t.Run("journal", func(t *testing.T) { testWriteBackModel(t, newJournalEnv(t), true) })
}

func testWriteBackModel(t *testing.T, env *testEnv, journal bool) {
	ctx := t.Context()
	const size = 16 * engine.BlockSize
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 6*engine.BlockSize))
	t.Cleanup(func() { wb.Close(context.Background()) })

	// Writer k owns the sectors s with s % writers == k, so writers share
	// blocks (and their read-merge) but never bytes.
	const writers, sector = 4, 512
	model := make([]byte, size)
	var modelMu sync.Mutex
	stop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if err := wb.Flush(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for k := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(k), 1))
			for i := range 300 {
				// A run of the writer's sectors: every writers-th sector
				// from a start, each written separately.
				start := int64(rng.IntN(size/sector/writers))*writers + int64(k)
				count := 1 + rng.IntN(40)
				fill := byte(rng.IntN(255) + 1)
				last := start * sector
				for j := range count {
					off := (start + int64(j)*writers) * sector
					if off >= size {
						break
					}
					last = off
					p := bytes.Repeat([]byte{fill}, sector)
					if err := wb.WriteAt(ctx, p, off); err != nil {
						t.Error(err)
						return
					}
					modelMu.Lock()
					copy(model[off:], p)
					modelMu.Unlock()
				}
				// Read back a sector this writer owns: no one else writes it.
				off := start * sector
				if i%8 == 0 && !journal {
					// Once its own Flush returns, the engine holds it,
					// however many flushes ran meanwhile. (A journaled
					// flush leaves it in the journal: TestJournalPowerLoss
					// checks those.)
					if err := wb.Flush(ctx); err != nil {
						t.Error(err)
						return
					}
					got := make([]byte, sector)
					if err := env.e.ReadAt(ctx, vol, got, last); err != nil {
						t.Error(err)
						return
					}
					if want := bytes.Repeat([]byte{fill}, sector); !bytes.Equal(got, want) {
						t.Errorf("writer %d, round %d: after its Flush the volume's sector at %d holds %d, want %d", k, i, last, got[0], fill)
						return
					}
				}
				got := make([]byte, sector)
				if err := wb.ReadAt(ctx, got, off); err != nil {
					t.Error(err)
					return
				}
				modelMu.Lock()
				want := bytes.Clone(model[off : off+sector])
				modelMu.Unlock()
				if !bytes.Equal(got, want) {
					t.Errorf("writer %d, round %d: sector at %d reads %d, want %d", k, i, off, got[0], want[0])
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flusher.Wait()

	// A zero across blocks commits with the buffer.
	if err := wb.WriteAt(ctx, bytes.Repeat([]byte{9}, sector), 5*engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	copy(model[5*engine.BlockSize:], bytes.Repeat([]byte{9}, sector))
	if err := wb.Zero(ctx, 2*engine.BlockSize+sector, 3*engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	clear(model[2*engine.BlockSize+sector : 5*engine.BlockSize+sector])
	got := make([]byte, size)
	if err := wb.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("WriteBack reads differ from the model")
	}
	if err := wb.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, env.e, vol, size), model) {
		t.Fatal("the volume after Close differs from the model")
	}
	if err := wb.WriteAt(ctx, make([]byte, sector), 0); !errors.Is(err, engine.ErrWriteBackClosed) {
		t.Fatalf("WriteAt after Close = %v, want ErrWriteBackClosed", err)
	}
	checkClean(t, env.e, true)
}

// TestWriteBackBound: a buffer at its bound commits before taking more, so
// the volume holds the writes without a flush.
func TestWriteBackBound(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	const size = 1 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 2*engine.BlockSize))
	t.Cleanup(func() { wb.Close(context.Background()) })
	data := bytes.Repeat([]byte{3}, 2*engine.BlockSize)
	if err := wb.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	// The fold runs in the background.
	for deadline := time.Now().Add(time.Minute); wb.Buffered() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("Buffered = %d a minute after filling the buffer, want 0 (committed)", wb.Buffered())
		}
		time.Sleep(time.Millisecond)
	}
	if got := read(t, env.e, vol, 2*engine.BlockSize); !bytes.Equal(got, data) {
		t.Fatal("a full buffer did not commit")
	}
	// A writer that finds the buffer full while a fold runs waits for it:
	// the buffer never holds more than twice the bound and the blocks of
	// the writes in flight.
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Go(func() {
			for i := range 40 {
				off := int64((k*40+i)%16) * engine.BlockSize
				if err := wb.WriteAt(ctx, data[:engine.BlockSize], off); err != nil {
					t.Error(err)
					return
				}
				if b := wb.Buffered(); b > (4+8)*engine.BlockSize {
					t.Errorf("Buffered = %d, more than twice the bound of %d and 8 writes", b, 2*engine.BlockSize)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestWriteBackHold: a snapshot taken under Hold holds every write made
// through the WriteBack before it, and writes made during the hold wait.
func TestWriteBackHold(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	const size = 1 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 0))
	t.Cleanup(func() { wb.Close(context.Background()) })
	first := bytes.Repeat([]byte{1}, 4096)
	if err := wb.WriteAt(ctx, first, 8192); err != nil {
		t.Fatal(err)
	}
	release, err := env.e.Hold(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- wb.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 8192) }()
	select {
	case err := <-wrote:
		t.Fatalf("a write during Hold returned (%v) before release", err)
	case <-time.After(50 * time.Millisecond):
	}
	snap := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want[8192:], first)
	if !bytes.Equal(read(t, env.e, snap, size), want) {
		t.Fatal("the snapshot taken under Hold misses a buffered write")
	}
	// Hold on a volume without a WriteBack holds nothing.
	other := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	rel, err := env.e.Hold(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	rel()
}

// TestWriteBackFlushFails: blocks a failed flush could not store stay
// buffered, read back, and commit with the next flush.
func TestWriteBackFlushFails(t *testing.T) {
	ctx := t.Context()
	faulty := chunkstest.Faulty(chunkstest.NewMem())
	env := newEnvOn(t, t.TempDir(), faulty)
	const size = 1 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	wb := must[*engine.WriteBack](t)(env.e.OpenWriteBack(ctx, vol, 0))
	t.Cleanup(func() { wb.Close(context.Background()) })
	data := bytes.Repeat([]byte{5}, 4096)
	if err := wb.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	faulty.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: syscall.ENOSPC})
	if err := wb.Flush(ctx); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full store = %v, want ENOSPC", err)
	}
	if err := wb.WriteAt(ctx, data, 8192); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want, data)
	copy(want[8192:], data)
	got := make([]byte, size)
	if err := wb.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after a failed flush the buffer reads differently (%v)", err)
	}
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, env.e, vol, size), want) {
		t.Fatal("the flush after a failed one did not commit the writes")
	}

	// Writes to a block while a fold of it fails: the block keeps both,
	// the newer sectors over the older.
	if err := wb.WriteAt(ctx, bytes.Repeat([]byte{6}, 1024), 2*engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	copy(want[2*engine.BlockSize:], bytes.Repeat([]byte{6}, 1024))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	faulty.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: syscall.ENOSPC, Match: func(string) bool {
		once.Do(func() { // the first Put waits: the fold is under way
			close(entered)
			<-release
		})
		return true
	}})
	flushed := make(chan error, 1)
	go func() { flushed <- wb.Flush(ctx) }()
	<-entered
	for _, w := range []struct {
		off int64
		b   byte
	}{{2*engine.BlockSize + 512, 7}, {2*engine.BlockSize + 4096, 8}} {
		p := bytes.Repeat([]byte{w.b}, 1024)
		if err := wb.WriteAt(ctx, p, w.off); err != nil {
			t.Fatal(err)
		}
		copy(want[w.off:], p)
	}
	close(release)
	if err := <-flushed; !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full store = %v, want ENOSPC", err)
	}
	if err := wb.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after a fold failed under writes the buffer reads differently (%v)", err)
	}
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, env.e, vol, size), want) {
		t.Fatal("the flush after a fold failed under writes lost some of them")
	}
	checkClean(t, env.e, true)
}
