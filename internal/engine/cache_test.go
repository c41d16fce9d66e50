package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
)

// cacheEntry returns the i-th test ref and its contents (size bytes, a
// function of the ref, so that any wrong copy shows).
func cacheEntry(i, size int) (chunks.Ref, []byte) {
	ref := chunks.Sum(fmt.Appendf(nil, "entry %d", i))
	data := make([]byte, size)
	for j := range data {
		data[j] = ref[j%len(ref)] ^ byte(j/len(ref))
	}
	return ref, data
}

// loadOf returns a load for entry i that counts its calls.
func loadOf(i, size int, calls *atomic.Int64) func() ([]byte, error) {
	return func() ([]byte, error) {
		calls.Add(1)
		_, data := cacheEntry(i, size)
		return data, nil
	}
}

// has reports whether ref is cached, without marking it used.
func (c *blockCache) has(ref chunks.Ref) bool {
	s := c.shard(ref)
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.index[ref]
	return ok
}

// checkInvariants checks every shard's index against its slots.
func (c *blockCache) checkInvariants(t *testing.T) {
	t.Helper()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		if len(s.index) != s.n || s.n > len(s.slots) {
			t.Errorf("shard %d: %d indexed, %d filled, %d slots", i, len(s.index), s.n, len(s.slots))
		}
		for ref, k := range s.index {
			if k >= s.n || s.slots[k].ref != ref || len(s.slots[k].data) != c.size {
				t.Errorf("shard %d: index says %s is in slot %d, which holds %s (%d bytes)", i, ref, k, s.slots[k].ref, len(s.slots[k].data))
			}
		}
		s.mu.RUnlock()
	}
}

func TestCacheCapacity(t *testing.T) {
	tests := []struct {
		bytes         int64
		size          int
		entries, shds int
	}{
		{0, 64, 0, 0},
		{63, 64, 0, 0},
		{64, 64, 1, 1},
		{64*7 + 63, 64, 7, 1},
		{64 * 100, 64, 100, 8},
		{64 << 20, BlockSize, 1024, 16},
	}
	for _, tc := range tests {
		c := newBlockCache(tc.bytes, tc.size)
		if tc.entries == 0 {
			if c != nil {
				t.Errorf("newBlockCache(%d, %d) = a cache, want nil", tc.bytes, tc.size)
			}
			continue
		}
		total := 0
		for i := range c.shards {
			total += len(c.shards[i].slots)
		}
		if total != tc.entries || len(c.shards) != tc.shds {
			t.Errorf("newBlockCache(%d, %d): %d slots in %d shards, want %d in %d", tc.bytes, tc.size, total, len(c.shards), tc.entries, tc.shds)
		}
	}
}

// TestCacheBound: under random reads, skewed and uniform, of more entries
// than fit, the cache never holds more than its bound, always returns the
// right bytes, and ends full.
func TestCacheBound(t *testing.T) {
	const size, entries, universe = 64, 37, 200
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0))
			c := newBlockCache(entries*size+size-1, size)
			var calls atomic.Int64
			for op := range 20000 {
				i := r.IntN(universe)
				if op%2 == 0 {
					i = int(r.ExpFloat64()*10) % universe // a hot set
				}
				at := r.IntN(size)
				dst := make([]byte, r.IntN(size-at+1))
				if err := c.read(t.Context(), mustRef(i, size), dst, at, loadOf(i, size, &calls)); err != nil {
					t.Fatal(err)
				}
				if _, data := cacheEntry(i, size); !bytes.Equal(dst, data[at:at+len(dst)]) {
					t.Fatalf("op %d: read(entry %d, at %d) returned wrong bytes", op, i, at)
				}
				if st := c.stats(); st.Entries > entries || st.Bytes > entries*size {
					t.Fatalf("op %d: %d entries, %d bytes; bound %d entries", op, st.Entries, st.Bytes, entries)
				}
			}
			c.checkInvariants(t)
			st := c.stats()
			if st.Entries != entries || st.Bytes != entries*size {
				t.Errorf("after 20000 reads: %d entries, %d bytes, want %d, %d", st.Entries, st.Bytes, entries, entries*size)
			}
			if st.Misses != uint64(calls.Load()) || st.Hits+st.Misses != 20000 {
				t.Errorf("stats %+v, %d loads: misses must equal loads, hits+misses the reads", st, calls.Load())
			}
			if st.Hits == 0 {
				t.Error("no hits on a skewed workload")
			}
		})
	}
}

func mustRef(i, size int) chunks.Ref {
	ref, _ := cacheEntry(i, size)
	return ref
}

// TestCacheClock: entries read again get a second chance; once-read ones
// are evicted first, so a scan does not flush a hot entry.
func TestCacheClock(t *testing.T) {
	const size = 8
	c := newBlockCache(4*size, size) // one shard of 4
	var calls atomic.Int64
	get := func(i int) {
		t.Helper()
		if err := c.read(t.Context(), mustRef(i, size), make([]byte, size), 0, loadOf(i, size, &calls)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		get(i)
	}
	get(0) // hits: 0 and 1 are used
	get(1)
	get(4) // the hand passes 0 and 1, evicts 2
	for i, want := range []bool{true, true, false, true, true} {
		if got := c.has(mustRef(i, size)); got != want {
			t.Errorf("after reading 0-3, 0, 1, 4: entry %d cached = %v, want %v", i, got, want)
		}
	}

	// A scan of once-read entries, with entry 0 read again now and then.
	for i := 100; i < 200; i++ {
		get(i)
		if i%2 == 0 {
			get(0)
		}
	}
	if !c.has(mustRef(0, size)) {
		t.Error("a hot entry was evicted by a scan of once-read entries")
	}
	if c.has(mustRef(1, size)) {
		t.Error("an entry not read since the scan began survived it")
	}
	c.checkInvariants(t)
}

// TestCacheConcurrent reads random entries from several goroutines; run
// with -race. Every read must return its entry's bytes.
func TestCacheConcurrent(t *testing.T) {
	const size, universe = 256, 64
	c := newBlockCache(16*size, size)
	var calls atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				i := r.IntN(universe)
				at := r.IntN(size)
				dst := make([]byte, size-at)
				if err := c.read(t.Context(), mustRef(i, size), dst, at, loadOf(i, size, &calls)); err != nil {
					t.Error(err)
					return
				}
				if _, data := cacheEntry(i, size); !bytes.Equal(dst, data[at:]) {
					t.Errorf("entry %d at %d: wrong bytes", i, at)
					return
				}
			}
		})
	}
	wg.Wait()
	c.checkInvariants(t)
	if st := c.stats(); st.Entries > 16 || st.Hits+st.Misses != 8*2000 {
		t.Errorf("stats %+v after 16000 reads into 16 entries", st)
	}
}

// TestCacheSingleFlight: concurrent misses of one entry load it once.
func TestCacheSingleFlight(t *testing.T) {
	const size, readers = 64, 8
	c := newBlockCache(4*size, size)
	var calls atomic.Int64
	release := make(chan struct{})
	load := func() ([]byte, error) {
		calls.Add(1)
		<-release
		_, data := cacheEntry(1, size)
		return data, nil
	}
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			dst := make([]byte, size)
			if err := c.read(t.Context(), mustRef(1, size), dst, 0, load); err != nil {
				t.Error(err)
			}
			if _, data := cacheEntry(1, size); !bytes.Equal(dst, data) {
				t.Error("wrong bytes")
			}
		})
	}
	// Give the readers time to pile up behind the first load. Whatever
	// the timing, only one load may happen: a reader comes before the
	// load (and waits for it) or after it (and hits).
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d concurrent reads of one entry loaded it %d times, want 1", readers, n)
	}
	if st := c.stats(); st.Misses != 1 || st.Hits != readers-1 {
		t.Errorf("stats %+v, want 1 miss and %d hits", st, readers-1)
	}
}

// TestCacheKeepsOnlyLoaded: a load that fails, or returns a wrong size,
// adds nothing; readers waiting on a failed load load for themselves; a
// waiter whose ctx ends stops waiting.
func TestCacheKeepsOnlyLoaded(t *testing.T) {
	const size = 64
	ctx := t.Context()
	ref, data := cacheEntry(1, size)
	errBad := errors.New("bad chunk")
	c := newBlockCache(4*size, size)
	dst := make([]byte, size)

	if err := c.read(ctx, ref, dst, 0, func() ([]byte, error) { return nil, errBad }); !errors.Is(err, errBad) {
		t.Fatalf("read with a failing load = %v, want %v", err, errBad)
	}
	if err := c.read(ctx, ref, dst[:8], 0, func() ([]byte, error) { return data[:8], nil }); err != nil {
		t.Fatal(err)
	}
	if c.has(ref) || c.stats().Entries != 0 {
		t.Fatal("a failed or short load entered the cache")
	}

	// A failing first load with a waiter behind it.
	started, release := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- c.read(ctx, ref, make([]byte, size), 0, func() ([]byte, error) {
			close(started)
			<-release
			return nil, errBad
		})
	}()
	<-started
	waiterCtx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.read(waiterCtx, ref, dst, 0, func() ([]byte, error) { return data, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a cancelled ctx: %v, want context.Canceled", err)
	}
	var waiterLoads atomic.Int64
	waited := make(chan error, 1)
	go func() { waited <- c.read(ctx, ref, dst, 0, loadOf(1, size, &waiterLoads)) }()
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-errc; !errors.Is(err, errBad) {
		t.Errorf("failing leader: %v, want %v", err, errBad)
	}
	if err := <-waited; err != nil || !bytes.Equal(dst, data) {
		t.Errorf("waiter behind a failed load: %v (bytes equal: %v), want its own load's bytes", err, bytes.Equal(dst, data))
	}
	if waiterLoads.Load() != 1 || !c.has(ref) {
		t.Errorf("waiter loaded %d times, cached %v; want 1 and cached", waiterLoads.Load(), c.has(ref))
	}
}

// cacheEnv is an engine over bolt and an in-memory pack backend that can
// corrupt reads, counted.
type cacheEnv struct {
	e       *Engine
	backend *chunkstest.CountingBackend
	faulty  *chunkstest.FaultyBackend
}

func newCacheEnv(t *testing.T, cacheBytes int64) *cacheEnv {
	t.Helper()
	bcfg := bolt.DefaultConfig()
	bcfg.Path = filepath.Join(t.TempDir(), "meta.db")
	db, err := bolt.Open(t.Context(), bcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	env := &cacheEnv{faulty: chunkstest.Faulty(chunkstest.NewMem())}
	env.backend = chunkstest.Counting(env.faulty)
	scfg := chunks.DefaultConfig()
	scfg.Backend = env.backend
	store, err := chunks.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Meta, cfg.Zones, cfg.CacheBytes = db, []Zone{{Name: "z1", Store: store}}, cacheBytes
	if env.e, err = Open(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return env
}

// readAts runs read and returns the backend reads it took.
func (env *cacheEnv) readAts(t *testing.T, id ID, p []byte, off int64) int64 {
	t.Helper()
	before := env.backend.Stats().ReadAts
	if err := env.e.ReadAt(t.Context(), id, p, off); err != nil {
		t.Fatalf("ReadAt(%d, %d bytes at %d): %v", id, len(p), off, err)
	}
	return env.backend.Stats().ReadAts - before
}

func randomBlock(seed uint64) []byte {
	p := make([]byte, BlockSize)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(p)
	return p
}

// TestReadCache: a block read twice reads storage once; after the block is
// overwritten (a partial write, so through the write path's merge) the
// volume reads the new bytes and a snapshot still reads the old ones, from
// the cache.
func TestReadCache(t *testing.T) {
	ctx := t.Context()
	env := newCacheEnv(t, DefaultConfig().CacheBytes)
	vol, err := env.e.CreateVolume(ctx, SizeUnit)
	if err != nil {
		t.Fatal(err)
	}
	old := randomBlock(1)
	const off = 3 * BlockSize
	if err := env.e.WriteAt(ctx, vol, old, off); err != nil {
		t.Fatal(err)
	}
	snap, err := env.e.Snapshot(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}

	p := make([]byte, 4096)
	if n := env.readAts(t, vol, p, off+8192); n != 1 || !bytes.Equal(p, old[8192:8192+4096]) {
		t.Fatalf("first read: %d backend reads (want 1), bytes equal %v", n, bytes.Equal(p, old[8192:8192+4096]))
	}
	if n := env.readAts(t, vol, p, off+20480); n != 0 || !bytes.Equal(p, old[20480:20480+4096]) {
		t.Errorf("second read of the block: %d backend reads (want 0), bytes equal %v", n, bytes.Equal(p, old[20480:20480+4096]))
	}
	if st := env.e.CacheStats(); st.Hits != 1 || st.Misses != 1 || st.Entries != 1 || st.Bytes != BlockSize {
		t.Errorf("CacheStats() = %+v, want 1 hit, 1 miss, 1 entry of %d bytes", st, BlockSize)
	}

	patch := bytes.Repeat([]byte{0xab}, 4096)
	if err := env.e.WriteAt(ctx, vol, patch, off+4096); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(old)
	copy(want[4096:], patch)
	got := make([]byte, BlockSize)
	env.readAts(t, vol, got, off)
	if !bytes.Equal(got, want) {
		t.Error("after a partial overwrite the volume reads stale bytes")
	}
	if n := env.readAts(t, snap, got, off); n != 0 || !bytes.Equal(got, old) {
		t.Errorf("snapshot read of the old block: %d backend reads (want 0: cached), bytes equal %v", n, bytes.Equal(got, old))
	}
}

// TestReadCacheOnlyVerified: a read whose chunk fails verification fails
// and caches nothing; once storage returns good bytes they are cached.
func TestReadCacheOnlyVerified(t *testing.T) {
	ctx := t.Context()
	env := newCacheEnv(t, DefaultConfig().CacheBytes)
	vol, err := env.e.CreateVolume(ctx, SizeUnit)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlock(2)
	if err := env.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	env.faulty.Inject(chunkstest.Fault{Op: chunkstest.OpReadAt, Times: 1, Corrupt: func(p []byte, _ int64) { p[len(p)/2] ^= 1 }})
	p := make([]byte, BlockSize)
	if err := env.e.ReadAt(ctx, vol, p, 0); !errors.Is(err, chunks.ErrCorrupt) {
		t.Fatalf("ReadAt of a corrupted chunk = %v, want chunks.ErrCorrupt", err)
	}
	if env.faulty.Fired() != 1 {
		t.Fatal("the corruption did not fire")
	}
	if st := env.e.CacheStats(); st.Entries != 0 {
		t.Fatalf("after a corrupted read CacheStats() = %+v, want no entry", st)
	}
	if n := env.readAts(t, vol, p, 0); n != 1 || !bytes.Equal(p, data) {
		t.Errorf("read after the corruption: %d backend reads (want 1), bytes equal %v", n, bytes.Equal(p, data))
	}
	if n := env.readAts(t, vol, p, 0); n != 0 || !bytes.Equal(p, data) {
		t.Errorf("third read: %d backend reads (want 0), bytes equal %v", n, bytes.Equal(p, data))
	}
}

// TestReadCacheDisabled: CacheBytes 0 reads storage every time.
func TestReadCacheDisabled(t *testing.T) {
	ctx := t.Context()
	env := newCacheEnv(t, 0)
	vol, err := env.e.CreateVolume(ctx, SizeUnit)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBlock(3)
	if err := env.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, BlockSize)
	for range 2 {
		if n := env.readAts(t, vol, p, 0); n != 1 || !bytes.Equal(p, data) {
			t.Errorf("uncached read: %d backend reads (want 1), bytes equal %v", n, bytes.Equal(p, data))
		}
	}
	if st := env.e.CacheStats(); st != (CacheStats{}) {
		t.Errorf("CacheStats() = %+v with the cache disabled, want zero", st)
	}
	cfg := DefaultConfig()
	cfg.Meta, cfg.Zones, cfg.CacheBytes = env.e.meta, []Zone{{Name: "z", Store: env.e.zones.stores[0]}}, -1
	if err := cfg.Validate(); err == nil {
		t.Error("Validate with CacheBytes -1 = nil, want an error")
	}
}

// TestPartialWritesReadCache: the read-modify-write of small writes reads
// the block through the cache, so repeated small writes to one block read
// storage once.
func TestPartialWritesReadCache(t *testing.T) {
	env := newCacheEnv(t, 1<<20)
	ctx := t.Context()
	id, err := env.e.CreateVolume(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := randomBlock(1)
	if err := env.e.WriteAt(ctx, id, want, 0); err != nil {
		t.Fatal(err)
	}
	before := env.backend.Stats().ReadAts
	for i := range 8 {
		p := randomBlock(uint64(10 + i))[:SectorSize]
		off := int64(i) * 4096
		if err := env.e.WriteAt(ctx, id, p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	if got := env.backend.Stats().ReadAts - before; got > 1 {
		t.Errorf("8 small writes to one block read storage %d times, want at most 1 (the cache serves the rest)", got)
	}
	got := make([]byte, BlockSize)
	if err := env.e.ReadAt(ctx, id, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after the small writes the block reads wrong (%v)", err)
	}
}
