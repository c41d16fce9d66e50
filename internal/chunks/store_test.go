package chunks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t testing.TB, b chunks.Backend, compress bool, maxPack int) *chunks.Store {
	t.Helper()
	cfg := chunks.DefaultConfig()
	cfg.Backend, cfg.Compress, cfg.MaxPackSize = b, compress, maxPack
	s, err := chunks.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return s
}

func chunkOf(data []byte) chunks.Chunk { return chunks.Chunk{Ref: chunks.Sum(data), Data: data} }

func put(t testing.TB, s *chunks.Store, cs ...chunks.Chunk) []chunks.Location {
	t.Helper()
	locs, err := s.Put(t.Context(), cs)
	if err != nil {
		t.Fatalf("Put(%d chunks) = %v", len(cs), err)
	}
	if len(locs) != len(cs) {
		t.Fatalf("Put(%d chunks) returned %d locations", len(cs), len(locs))
	}
	return locs
}

func get(t testing.TB, s *chunks.Store, c chunks.Chunk, loc chunks.Location) {
	t.Helper()
	got, err := s.Get(t.Context(), c.Ref, loc, nil)
	if err != nil {
		t.Fatalf("Get(%s, %+v) = %v", c.Ref, loc, err)
	}
	if !bytes.Equal(got, c.Data) {
		t.Fatalf("Get(%s, %+v) returned other bytes than were put", c.Ref, loc)
	}
}

// object reads a whole object from m.
func object(t testing.TB, m chunks.Backend, name string) []byte {
	t.Helper()
	size := int64(-1)
	m.List(t.Context(), name, func(n string, s int64) error {
		if n == name {
			size = s
		}
		return nil
	})
	if size < 0 {
		t.Fatalf("object %s not found", name)
	}
	p := make([]byte, size)
	if err := m.ReadAt(t.Context(), name, p, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		compress  bool
		data      []byte
		wantCodec chunks.Codec
	}{
		{"raw/random", false, randomBytes(1, 64<<10), chunks.CodecRaw},
		{"raw/semi", false, semiBytes(1, 64<<10), chunks.CodecRaw},
		{"s2/semi", true, semiBytes(2, 64<<10), chunks.CodecS2},
		{"s2/repeated", true, bytes.Repeat([]byte("deltadisk"), 7000), chunks.CodecS2},
		{"s2/incompressible stored raw", true, randomBytes(2, 64<<10), chunks.CodecRaw},
		{"s2/empty", true, []byte{}, chunks.CodecRaw},
		{"s2/one byte", true, []byte{7}, chunks.CodecRaw},
		{"s2/largest", true, semiBytes(3, chunks.MaxChunkSize), chunks.CodecS2},
		{"raw/largest", false, randomBytes(3, chunks.MaxChunkSize), chunks.CodecRaw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, chunkstest.NewMem(), tc.compress, 0)
			c := chunkOf(tc.data)
			loc := put(t, s, c)[0]
			if loc.Codec != tc.wantCodec {
				t.Errorf("Put stored codec %v, want %v", loc.Codec, tc.wantCodec)
			}
			if stored := int(loc.Length); tc.wantCodec == chunks.CodecRaw && stored != len(tc.data) || tc.wantCodec == chunks.CodecS2 && stored >= len(tc.data) {
				t.Errorf("Put stored %d bytes of %d as %v", stored, len(tc.data), loc.Codec)
			}
			get(t, s, c, loc)

			dst := make([]byte, 0, len(tc.data)+10)
			got, err := s.Get(t.Context(), c.Ref, loc, dst)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("Get with a buffer = %v or other bytes", err)
			}
			if len(got) > 0 && &got[:1][0] != &dst[:1][0] {
				t.Errorf("Get did not reuse a large enough buffer")
			}
		})
	}
}

func TestPutSameChunkTwice(t *testing.T) {
	s := newStore(t, chunkstest.NewMem(), true, 0)
	c := chunkOf(semiBytes(4, 10000))
	l1 := put(t, s, c, c)
	l2 := put(t, s, c)
	for _, loc := range append(l1, l2...) {
		get(t, s, c, loc)
	}
	if l1[0] == l1[1] || l1[0] == l2[0] {
		t.Errorf("Put of the same chunk gave equal locations %+v %+v %+v; Put does not deduplicate", l1[0], l1[1], l2[0])
	}
}

func TestPutManyScanPack(t *testing.T) {
	m := chunkstest.Counting(chunkstest.NewMem())
	s := newStore(t, m, true, 0)
	var cs []chunks.Chunk
	for i := range 10 {
		if i%2 == 0 {
			cs = append(cs, chunkOf(semiBytes(uint64(i), 1000*i)))
		} else {
			cs = append(cs, chunkOf(randomBytes(uint64(i), 1000*i)))
		}
	}
	locs := put(t, s, cs...)
	if got := m.Stats().Puts; got != 1 {
		t.Errorf("Put of 10 small chunks wrote %d packs, want 1", got)
	}
	for i, c := range cs {
		get(t, s, c, locs[i])
	}

	type entry struct {
		Ref chunks.Ref
		Loc chunks.Location
	}
	var want, scanned, read []entry
	for i, c := range cs {
		want = append(want, entry{c.Ref, locs[i]})
	}
	err := s.ScanPack(t.Context(), locs[0].Pack, func(ref chunks.Ref, loc chunks.Location) error {
		scanned = append(scanned, entry{ref, loc})
		return nil
	})
	if err != nil {
		t.Fatalf("ScanPack = %v", err)
	}
	if diff := cmp.Diff(want, scanned); diff != "" {
		t.Errorf("ScanPack records (-want +got):\n%s", diff)
	}
	err = s.ReadPack(t.Context(), locs[0].Pack, func(ref chunks.Ref, loc chunks.Location, data []byte, err error) error {
		if err != nil || chunks.Sum(data) != ref {
			t.Errorf("ReadPack gave %s: %v, or data that does not hash to it", ref, err)
		}
		read = append(read, entry{ref, loc})
		return nil
	})
	if err != nil {
		t.Fatalf("ReadPack = %v", err)
	}
	if diff := cmp.Diff(want, read); diff != "" {
		t.Errorf("ReadPack records (-want +got):\n%s", diff)
	}

	stop := errors.New("stop")
	n := 0
	if err := s.ScanPack(t.Context(), locs[0].Pack, func(chunks.Ref, chunks.Location) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("ScanPack with fn failing = %v after %d calls, want %v after 1", err, n, stop)
	}
}

func TestPutSplitsPacks(t *testing.T) {
	const maxPack = 4 << 10
	m := chunkstest.Counting(chunkstest.NewMem())
	s := newStore(t, m, false, maxPack)
	var cs []chunks.Chunk
	for i := range 10 {
		cs = append(cs, chunkOf(randomBytes(uint64(i), 1500)))
	}
	big := chunkOf(randomBytes(99, 10000))
	cs = append(cs[:5], append([]chunks.Chunk{big}, cs[5:]...)...)
	locs := put(t, s, cs...)
	for i, c := range cs {
		get(t, s, c, locs[i])
	}
	// Two 1500-byte records fit in 4 KiB with the headers, three do not;
	// the big chunk, sixth, gets a pack of its own: 2 2 1 big 2 2 1.
	if got, want := m.Stats().Puts, int64(7); got != want {
		t.Errorf("Put wrote %d packs, want %d", got, want)
	}
	sizes := map[string]int64{}
	if err := s.ListPacks(t.Context(), func(name string, size int64) error { sizes[name] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	for name, size := range sizes {
		if size > maxPack && name != locs[5].Pack {
			t.Errorf("pack %s has %d bytes, over MaxPackSize %d", name, size, maxPack)
		}
	}
	if n := len(sizes); n != 7 {
		t.Errorf("ListPacks found %d packs, want 7", n)
	}
}

func TestPutTooLarge(t *testing.T) {
	m := chunkstest.Counting(chunkstest.NewMem())
	s := newStore(t, m, true, 0)
	_, err := s.Put(t.Context(), []chunks.Chunk{chunkOf([]byte("ok")), chunkOf(make([]byte, chunks.MaxChunkSize+1))})
	if !errors.Is(err, chunks.ErrTooLarge) {
		t.Errorf("Put of a chunk over MaxChunkSize = %v, want ErrTooLarge", err)
	}
	if got := m.Stats().Puts; got != 0 {
		t.Errorf("a refused Put wrote %d packs", got)
	}
}

// TestCorruptAnyByte flips each byte of a pack in turn. Get returns the
// right bytes or a CorruptError naming the chunk, never wrong bytes; every
// flip in a chunk's stored bytes is caught by Get, every flip in the framing
// by ScanPack, and every flip at all by ReadPack.
func TestCorruptAnyByte(t *testing.T) {
	m := chunkstest.NewMem()
	s := newStore(t, m, true, 0)
	cs := []chunks.Chunk{chunkOf(semiBytes(1, 600)), chunkOf(randomBytes(2, 300)), chunkOf(semiBytes(3, 500))}
	locs := put(t, s, cs...)
	if locs[0].Codec != chunks.CodecS2 || locs[1].Codec != chunks.CodecRaw {
		t.Fatalf("test wants an s2 and a raw record, got %v and %v", locs[0].Codec, locs[1].Codec)
	}
	pack := locs[0].Pack
	orig := object(t, m, pack)
	owner := func(off int) int { // the chunk whose stored bytes hold off, or -1
		for i, l := range locs {
			if int64(off) >= l.Offset && int64(off) < l.Offset+int64(l.Length) {
				return i
			}
		}
		return -1
	}

	for off := range orig {
		bad := bytes.Clone(orig)
		bad[off] ^= 1 << (off % 8)
		if err := m.Put(t.Context(), pack, bad); err != nil {
			t.Fatal(err)
		}
		hit := owner(off)
		for i, c := range cs {
			got, err := s.Get(t.Context(), c.Ref, locs[i], nil)
			var ce *chunks.CorruptError
			switch {
			case err == nil && !bytes.Equal(got, c.Data):
				t.Fatalf("flip at %d: Get(chunk %d) returned wrong bytes", off, i)
			case err == nil && i == hit:
				t.Errorf("flip at %d in chunk %d: Get succeeded", off, i)
			case err != nil && !errors.As(err, &ce):
				t.Errorf("flip at %d: Get(chunk %d) = %v, want a CorruptError", off, i, err)
			case err != nil && (ce.Ref != c.Ref || ce.Pack != pack || !errors.Is(err, chunks.ErrCorrupt)):
				t.Errorf("flip at %d: Get(chunk %d) = %v, want it to name %s in %s", off, i, err, c.Ref, pack)
			}
		}

		err := s.ScanPack(t.Context(), pack, func(chunks.Ref, chunks.Location) error { return nil })
		if hit < 0 && !errors.Is(err, chunks.ErrCorrupt) {
			t.Errorf("flip at %d in the framing: ScanPack = %v, want ErrCorrupt", off, err)
		}
		if hit >= 0 && err != nil {
			t.Errorf("flip at %d in chunk %d's bytes: ScanPack = %v, want nil (it does not read them)", off, hit, err)
		}

		caught := false
		err = s.ReadPack(t.Context(), pack, func(ref chunks.Ref, loc chunks.Location, data []byte, err error) error {
			if err != nil {
				caught = true
				if !errors.Is(err, chunks.ErrCorrupt) || ref != cs[hit].Ref {
					t.Errorf("flip at %d: ReadPack reported %s: %v, want chunk %d", off, ref, err, hit)
				}
			} else if chunks.Sum(data) != ref {
				t.Fatalf("flip at %d: ReadPack gave wrong bytes for %s", off, ref)
			}
			return nil
		})
		if err != nil {
			caught = errors.Is(err, chunks.ErrCorrupt)
		}
		if !caught {
			t.Errorf("flip at %d: ReadPack = %v and reported no chunk", off, err)
		}
	}
}

func TestTruncatedPack(t *testing.T) {
	m := chunkstest.NewMem()
	s := newStore(t, m, true, 0)
	cs := []chunks.Chunk{chunkOf(semiBytes(1, 5000)), chunkOf(randomBytes(2, 5000))}
	locs := put(t, s, cs...)
	pack := locs[0].Pack
	orig := object(t, m, pack)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"part of the header", orig[:10]},
		{"header only", orig[:24]},
		{"half", orig[:len(orig)/2]},
		{"last byte missing", orig[:len(orig)-1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.Put(t.Context(), pack, tc.data); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(t.Context(), cs[1].Ref, locs[1], nil); err == nil {
				t.Errorf("Get of the last chunk = nil error")
			}
			if err := s.ScanPack(t.Context(), pack, func(chunks.Ref, chunks.Location) error { return nil }); err == nil {
				t.Errorf("ScanPack = nil error")
			}
			if err := s.ReadPack(t.Context(), pack, func(chunks.Ref, chunks.Location, []byte, error) error { return nil }); err == nil {
				t.Errorf("ReadPack = nil error")
			}
		})
	}
}

func TestMissingPack(t *testing.T) {
	m := chunkstest.NewMem()
	s := newStore(t, m, true, 0)
	c := chunkOf([]byte("gone"))
	loc := put(t, s, c)[0]
	if err := s.DeletePack(t.Context(), loc.Pack); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(t.Context(), c.Ref, loc, nil)
	if !errors.Is(err, chunks.ErrNotFound) || !strings.Contains(err.Error(), loc.Pack) {
		t.Errorf("Get from a deleted pack = %v, want ErrNotFound naming %s", err, loc.Pack)
	}
	err = s.ScanPack(t.Context(), loc.Pack, func(chunks.Ref, chunks.Location) error { return nil })
	if !errors.Is(err, chunks.ErrNotFound) || !strings.Contains(err.Error(), loc.Pack) {
		t.Errorf("ScanPack of a deleted pack = %v, want ErrNotFound naming %s", err, loc.Pack)
	}
}

func TestGetInvalidLocation(t *testing.T) {
	s := newStore(t, chunkstest.NewMem(), true, 0)
	c := chunkOf(semiBytes(1, 1000))
	good := put(t, s, c)[0]
	bad := func(f func(*chunks.Location)) chunks.Location { l := good; f(&l); return l }
	tests := []struct {
		name string
		loc  chunks.Location
	}{
		{"unknown codec", bad(func(l *chunks.Location) { l.Codec = 9 })},
		{"other codec", bad(func(l *chunks.Location) { l.Codec = chunks.CodecRaw })},
		{"huge length", bad(func(l *chunks.Location) { l.Length = 1 << 31 })},
		{"offset in the header", bad(func(l *chunks.Location) { l.Offset = 3 })},
		{"shifted", bad(func(l *chunks.Location) { l.Offset++; l.Length-- })},
	}
	for _, tc := range tests {
		if _, err := s.Get(t.Context(), c.Ref, tc.loc, nil); !errors.Is(err, chunks.ErrCorrupt) {
			t.Errorf("%s: Get(%+v) = %v, want ErrCorrupt", tc.name, tc.loc, err)
		}
	}
	if _, err := s.Get(t.Context(), chunks.Sum([]byte("other")), good, nil); !errors.Is(err, chunks.ErrCorrupt) {
		t.Errorf("Get with another chunk's ref = %v, want ErrCorrupt", err)
	}
}

func TestPutENOSPC(t *testing.T) {
	tests := []struct {
		name  string
		skip  int // pack writes that succeed first
		count int // chunks in the Put, each filling a pack
	}{
		{"first pack", 0, 1},
		{"second pack of a Put", 1, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := chunkstest.NewMem()
			f := chunkstest.Faulty(m, chunkstest.Fault{Op: chunkstest.OpPut, Skip: tc.skip, Times: 1, Err: syscall.ENOSPC})
			s := newStore(t, f, false, 4<<10)
			var cs []chunks.Chunk
			for i := range tc.count {
				cs = append(cs, chunkOf(randomBytes(uint64(i), 3000)))
			}
			locs, err := s.Put(t.Context(), cs)
			if !errors.Is(err, syscall.ENOSPC) || locs != nil {
				t.Fatalf("Put with the disk full = %v, %v; want ENOSPC and no locations", locs, err)
			}
			if f.Fired() != 1 {
				t.Fatalf("fault fired %d times, want 1", f.Fired())
			}
			locs = put(t, s, cs...)
			for i, c := range cs {
				get(t, s, c, locs[i])
			}
		})
	}
}

// gate is a Backend whose first Put blocks until release is closed (or its
// context is done), so a test can pile up Puts behind it.
type gate struct {
	chunks.Backend
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGate(b chunks.Backend) *gate {
	return &gate{Backend: b, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) Put(ctx context.Context, name string, data []byte) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Backend.Put(ctx, name, data)
}

// waitPending waits until n Puts are queued behind the one in flight.
func waitPending(t *testing.T, s *chunks.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for chunks.PendingPuts(s) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Puts pending, want %d", chunks.PendingPuts(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommit(t *testing.T) {
	const writers = 64
	m := chunkstest.Counting(chunkstest.NewMem())
	g := newGate(m)
	s := newStore(t, g, true, 0)
	cs := make([]chunks.Chunk, writers)
	locs := make([]chunks.Location, writers)
	errs := make([]error, writers)
	for i := range cs {
		cs[i] = chunkOf(semiBytes(uint64(i), 64<<10))
	}
	var wg sync.WaitGroup
	putOne := func(i int) {
		var l []chunks.Location
		l, errs[i] = s.Put(t.Context(), cs[i:i+1])
		if errs[i] == nil {
			locs[i] = l[0]
		}
	}
	wg.Go(func() { putOne(0) })
	<-g.entered
	for i := 1; i < writers; i++ {
		wg.Go(func() { putOne(i) })
	}
	waitPending(t, s, writers-1)
	close(g.release)
	wg.Wait()

	for i, c := range cs {
		if errs[i] != nil {
			t.Fatalf("Put %d = %v", i, errs[i])
		}
		get(t, s, c, locs[i])
	}
	// One pack for the first writer, one for the 63 that queued behind it.
	if got := m.Stats().Puts; got != 2 {
		t.Errorf("%d concurrent Puts wrote %d packs, want 2", writers, got)
	}
}

func TestPutCancelledWhileQueued(t *testing.T) {
	m := chunkstest.Counting(chunkstest.NewMem())
	g := newGate(m)
	s := newStore(t, g, true, 0)
	first := chunkOf([]byte("first"))
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := s.Put(t.Context(), []chunks.Chunk{first}); err != nil {
			t.Errorf("first Put = %v", err)
		}
	})
	<-g.entered
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := s.Put(ctx, []chunks.Chunk{chunkOf([]byte("second"))})
		done <- err
	}()
	waitPending(t, s, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("queued Put after cancel = %v, want context.Canceled", err)
	}
	waitPending(t, s, 0)
	close(g.release)
	wg.Wait()
	if got := m.Stats().Puts; got != 1 {
		t.Errorf("wrote %d packs, want 1: a Put cancelled while queued is not written", got)
	}
}

func TestPutCancelledInFlight(t *testing.T) {
	g := newGate(chunkstest.NewMem())
	s := newStore(t, g, true, 0)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := s.Put(ctx, []chunks.Chunk{chunkOf([]byte("abandoned"))})
		done <- err
	}()
	<-g.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Put cancelled while writing = %v, want context.Canceled", err)
	}
	// The abandoned write is cancelled too (the gate returns), and the
	// Store goes on: TestMain's leak check fails if its goroutine hangs.
	c := chunkOf([]byte("next"))
	get(t, s, c, put(t, s, c)[0])
}

func TestConcurrentPutGet(t *testing.T) {
	s := newStore(t, chunkstest.NewMem(), true, 64<<10)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 20 {
				var cs []chunks.Chunk
				for j := range 1 + i%4 {
					seed := uint64(w*1000 + i*10 + j)
					cs = append(cs, chunkOf(semiBytes(seed, int(seed%40000))))
				}
				locs, err := s.Put(t.Context(), cs)
				if err != nil {
					t.Errorf("Put = %v", err)
					return
				}
				for k, c := range cs {
					if got, err := s.Get(t.Context(), c.Ref, locs[k], nil); err != nil || !bytes.Equal(got, c.Data) {
						t.Errorf("Get(%s) = %v or other bytes", c.Ref, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestPackNames(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC)
	cfg := chunks.DefaultConfig()
	cfg.Backend, cfg.Now = chunkstest.NewMem(), func() time.Time { return now }
	s, err := chunks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	locs := put(t, s, chunkOf([]byte("a")))
	locs = append(locs, put(t, s, chunkOf([]byte("b")))...)
	if locs[0].Pack == locs[1].Pack {
		t.Errorf("two packs made at the same time share the name %s", locs[0].Pack)
	}
	for _, l := range locs {
		if got, ok := chunks.PackTime(l.Pack); !ok || !got.Equal(now) {
			t.Errorf("PackTime(%s) = %v, %v; want %v, true", l.Pack, got, ok, now)
		}
	}
	for _, name := range []string{
		"", "packs/", "18a3b2c4d5e6f708-0123456789abcdef", "other/18a3b2c4d5e6f708-0123456789abcdef",
		"packs/18a3b2c4d5e6f708_0123456789abcdef", "packs/18a3b2c4d5e6f70-0123456789abcdef",
		"packs/18a3b2c4d5e6f708-0123456789abcdef0", "packs/18a3b2c4d5e6f70g-0123456789abcdef",
		"packs/+8a3b2c4d5e6f708-0123456789abcdef",
	} {
		if _, ok := chunks.PackTime(name); ok {
			t.Errorf("PackTime(%q) = _, true; want false", name)
		}
	}
}

func TestListDeletePacks(t *testing.T) {
	m := chunkstest.NewMem()
	s := newStore(t, m, true, 0)
	for _, name := range []string{"packs/junk", "other/x"} {
		if err := m.Put(t.Context(), name, []byte("not a pack")); err != nil {
			t.Fatal(err)
		}
	}
	l1 := put(t, s, chunkOf([]byte("one")))[0]
	l2 := put(t, s, chunkOf(bytes.Repeat([]byte("two"), 100)))[0]
	list := func() map[string]int64 {
		got := map[string]int64{}
		if err := s.ListPacks(t.Context(), func(name string, size int64) error { got[name] = size; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := map[string]int64{l1.Pack: 24 + 48 + 3, l2.Pack: 24 + 48 + int64(l2.Length)}
	if diff := cmp.Diff(want, list()); diff != "" {
		t.Errorf("ListPacks (-want +got):\n%s", diff)
	}
	for range 2 {
		if err := s.DeletePack(t.Context(), l1.Pack); err != nil {
			t.Errorf("DeletePack(%s) = %v", l1.Pack, err)
		}
	}
	delete(want, l1.Pack)
	if diff := cmp.Diff(want, list()); diff != "" {
		t.Errorf("ListPacks after DeletePack (-want +got):\n%s", diff)
	}
	for _, name := range []string{"packs/junk", "other/x"} {
		if err := s.DeletePack(t.Context(), name); err == nil {
			t.Errorf("DeletePack(%s) = nil, want an error for a name that is not a pack", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	mem := chunkstest.NewMem()
	tests := []struct {
		name    string
		cfg     chunks.Config
		wantErr bool
	}{
		{"defaults", chunks.Config{Backend: mem}, false},
		{"default config", func() chunks.Config { c := chunks.DefaultConfig(); c.Backend = mem; return c }(), false},
		{"no backend", chunks.DefaultConfig(), true},
		{"tiny packs", chunks.Config{Backend: mem, MaxPackSize: 100}, true},
		{"negative packs", chunks.Config{Backend: mem, MaxPackSize: -1}, true},
		{"huge packs", chunks.Config{Backend: mem, MaxPackSize: 2 << 30}, true},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
			t.Errorf("%s: Validate() = %v, want error %v", tc.name, err, tc.wantErr)
		}
		if _, err := chunks.New(tc.cfg); (err != nil) != tc.wantErr {
			t.Errorf("%s: New() = %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestCorruptError(t *testing.T) {
	ref := chunks.Sum([]byte("x"))
	var err error = fmt.Errorf("wrapped: %w", &chunks.CorruptError{Ref: ref, Pack: "packs/p", Err: errors.New("bad")})
	if !errors.Is(err, chunks.ErrCorrupt) {
		t.Errorf("errors.Is(%v, ErrCorrupt) = false", err)
	}
	ce, ok := errors.AsType[*chunks.CorruptError](err)
	if !ok || ce.Ref != ref {
		t.Errorf("errors.AsType(%v) = %v, %v", err, ce, ok)
	}
	for _, want := range []string{ref.String(), "packs/p", "bad"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
}

func TestRefString(t *testing.T) {
	ref := chunks.Sum([]byte("abc"))
	// BLAKE3-256("abc"), from the reference implementation's test vectors.
	const want = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
	if got := ref.String(); got != want {
		t.Errorf("Sum(abc).String() = %s, want %s", got, want)
	}
}

// TestWorthCompressing: random data skips the compression attempt; data
// that is compressible anywhere the probes look is compressed.
func TestWorthCompressing(t *testing.T) {
	random := randomBytes(7, 64<<10)
	if chunks.WorthCompressing(random) {
		t.Errorf("random 64 KiB chunk judged compressible")
	}
	for _, at := range []int{0, 32 << 10, 62 << 10} {
		p := bytes.Clone(random)
		clear(p[at : at+2<<10])
		if !chunks.WorthCompressing(p) {
			t.Errorf("a zero run at %d was missed", at)
		}
	}
	if !chunks.WorthCompressing(random[:1024]) {
		t.Errorf("small chunks must always be tried")
	}
}
