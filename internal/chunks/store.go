package chunks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Config configures a [Store].
type Config struct {
	// Backend holds the packs. Required.
	Backend Backend
	// Compress stores chunks as s2 on the write path; a chunk whose s2 form
	// is not smaller is stored raw. Reads handle both whatever this says.
	Compress bool
	// MaxPackSize bounds a pack in bytes: a pack is closed before a record
	// would take it past this, so one Put may spread over several packs. A
	// chunk too large for an empty pack gets a pack of its own. Zero means
	// 16 MiB. The Store buffers a pack in memory while writing it.
	MaxPackSize int
	// Now is the clock whose time pack names carry. Nil means time.Now.
	Now func() time.Time
	// Logger gets debug lines for pack writes. Nil discards.
	Logger *slog.Logger
}

const (
	defaultMaxPackSize = 16 << 20
	minPackSize        = 4 << 10
	maxPackSizeLimit   = 1 << 30
)

// DefaultConfig returns the defaults: s2 compression, 16 MiB packs. The
// caller sets Backend.
func DefaultConfig() Config {
	return Config{Compress: true, MaxPackSize: defaultMaxPackSize, Now: time.Now}
}

// Validate reports whether c can make a Store. Zero MaxPackSize, Now and
// Logger are valid and mean their defaults.
func (c Config) Validate() error {
	if c.Backend == nil {
		return errors.New("chunks: config: no Backend")
	}
	if c.MaxPackSize != 0 && (c.MaxPackSize < minPackSize || c.MaxPackSize > maxPackSizeLimit) {
		return fmt.Errorf("chunks: config: MaxPackSize %d outside [%d, %d]", c.MaxPackSize, minPackSize, maxPackSizeLimit)
	}
	return nil
}

// Store writes chunks into packs on a Backend and reads them back, checking
// every chunk against its Ref. It keeps no index: callers record the
// Location that Put returns. A Store is safe for concurrent use.
type Store struct {
	cfg Config

	mu       sync.Mutex
	pending  []*request // Puts waiting for the next batch
	flushing bool       // a flush goroutine is running
	buf      []byte     // pack buffer, used by the flush goroutine only

	scratch sync.Pool // *[]byte for compressed bytes in Get
	bufs    bufPool   // request buffers
}

// New returns a Store over cfg.Backend.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPackSize == 0 {
		cfg.MaxPackSize = defaultMaxPackSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{cfg: cfg}, nil
}

// A request is one Put's chunks, encoded as records back to back in buf by
// the caller's goroutine, so compression runs in parallel and the flush
// goroutine only copies.
type request struct {
	buf  []byte
	bp   *[]byte // buf's holder in Store.bufs, given back by release
	recs []span
	locs []Location
	done chan struct{} // closed when locs or err is final

	// Guarded by Store.mu.
	batch    *batch // the batch writing it, nil while pending or when done
	lastPack int    // index in the batch of the last pack holding its records
	err      error
}

// span is one encoded record inside request.buf.
type span struct {
	off, n int // record bytes, header included
	stored uint32
	codec  Codec
}

// A batch is the requests one flush round writes. Its context is cancelled
// once none of its requests has a caller waiting, so an abandoned write does
// not hold the Store up.
type batch struct {
	live   int // requests still waited for
	cancel context.CancelFunc
}

// Put writes the chunks durably and returns their locations in order. When
// it returns nil the packs holding them are durable (Backend.Put returned).
//
// Concurrent Puts share packs (group commit): at most one pack write is in
// flight per Store, and Puts arriving meanwhile are batched into the next,
// so N concurrent small writers cost far fewer than N pack writes. Put
// returns ctx's error as soon as ctx is done, even if its chunks are being
// written; such chunks may land in a pack that nothing references, which
// GC collects. On any error no location is returned.
//
// Put does not deduplicate: storing a chunk twice stores two copies.
func (s *Store) Put(ctx context.Context, chunks []Chunk) ([]Location, error) {
	if err := ctx.Err(); err != nil || len(chunks) == 0 {
		return nil, err
	}
	r, err := s.encode(chunks)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.pending = append(s.pending, r)
	if !s.flushing {
		s.flushing = true
		go s.flush()
	}
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.abandon(r) })
	select {
	case <-r.done:
		stop()
		if r.err != nil {
			return nil, r.err
		}
		return r.locs, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// encode builds the request for chunks.
func (s *Store) encode(chunks []Chunk) (*request, error) {
	size, slack := 0, 0
	for i, c := range chunks {
		if len(c.Data) > MaxChunkSize {
			return nil, fmt.Errorf("chunk %d (%s) has %d bytes, limit %d: %w", i, c.Ref, len(c.Data), MaxChunkSize, ErrTooLarge)
		}
		if invariants && Sum(c.Data) != c.Ref {
			panic(fmt.Sprintf("chunks: Put: chunk %d has Ref %s, its data hashes to %s", i, c.Ref, Sum(c.Data)))
		}
		size += recordHeaderSize + len(c.Data)
		slack = max(slack, encodeSlack(len(c.Data), s.cfg.Compress))
	}
	bp := s.bufs.get(size + slack)
	r := &request{
		buf:  (*bp)[:0],
		bp:   bp,
		recs: make([]span, len(chunks)),
		locs: make([]Location, len(chunks)),
		done: make(chan struct{}),
	}
	for i, c := range chunks {
		off := len(r.buf)
		var sp span
		r.buf, sp.stored, sp.codec = appendRecord(r.buf, c, s.cfg.Compress)
		sp.off, sp.n = off, len(r.buf)-off
		r.recs[i] = sp
	}
	return r, nil
}

// abandon forgets r when its caller stops waiting.
func (s *Store) abandon(r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.batch == nil {
		if i := slices.Index(s.pending, r); i >= 0 {
			s.pending = slices.Delete(s.pending, i, i+1)
			s.release(r) // no flush will read it
		}
		return
	}
	s.leave(r)
}

// leave takes r out of its batch. s.mu must be held.
func (s *Store) leave(r *request) {
	b := r.batch
	r.batch = nil
	if b.live--; b.live == 0 {
		b.cancel()
	}
}

// release gives r's buffer back for another Put, once no flush will read
// it. s.mu must be held.
func (s *Store) release(r *request) {
	*r.bp = r.buf[:0]
	s.bufs.put(r.bp)
	r.buf, r.bp = nil, nil
}

// bufPool recycles request buffers by size class. Every byte a Put stores
// is copied into one, so a fresh buffer per Put costs more than the copy:
// the runtime zeroes it and the kernel maps and zeroes new pages, about
// 0.5 CPU-seconds per GiB of 4 MiB Put Pages (BenchmarkUploadCPU), where
// copying into warm memory costs a tenth of that. A class is a multiple of
// an eighth of the power of two below it, so a buffer is at most an eighth
// larger than asked for; larger than maxPooled, buffers are not kept.
type bufPool struct {
	classes [bufClasses]sync.Pool // *[]byte of cap bufClassSize(i)
}

const (
	minPooledShift = 12 // 4 KiB: the smallest class
	maxPooledShift = 25 // 32 MiB: the largest class
	bufClasses     = (maxPooledShift-minPooledShift)*8 + 1
)

// bufClass returns the class of the buffers that hold n bytes and their
// capacity, or false if n is too large to pool.
func bufClass(n int) (class, size int, ok bool) {
	switch {
	case n <= 1<<minPooledShift:
		return 0, 1 << minPooledShift, true
	case n > 1<<maxPooledShift:
		return 0, 0, false
	}
	shift := bits.Len(uint(n-1)) - 1 // 1<<shift < n <= 2<<shift
	step := 1 << (shift - 3)
	k := (n - 1<<shift + step - 1) / step // 1..8
	return (shift-minPooledShift)*8 + k, 1<<shift + k*step, true
}

// get returns a buffer of length 0 and capacity at least n.
func (p *bufPool) get(n int) *[]byte {
	class, size, ok := bufClass(n)
	if !ok {
		b := make([]byte, 0, n)
		return &b
	}
	if bp, _ := p.classes[class].Get().(*[]byte); bp != nil {
		*bp = (*bp)[:0]
		return bp
	}
	b := make([]byte, 0, size)
	return &b
}

// put keeps *bp for a later get if it is a class's size.
func (p *bufPool) put(bp *[]byte) {
	if class, size, ok := bufClass(cap(*bp)); ok && size == cap(*bp) {
		p.classes[class].Put(bp)
	}
}

// flush writes batches until no Put is pending. One flush goroutine runs
// at a time, which is what makes waiting Puts pile up into one batch.
func (s *Store) flush() {
	for {
		s.mu.Lock()
		reqs := s.pending
		s.pending = nil
		if len(reqs) == 0 {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		// The batch outlives any one caller's context; it is cancelled
		// when every caller has gone.
		ctx, cancel := context.WithCancel(context.Background())
		b := &batch{live: len(reqs), cancel: cancel}
		for _, r := range reqs {
			r.batch = b
		}
		s.mu.Unlock()

		s.writeBatch(ctx, reqs)
		cancel()
	}
}

// packPlan is one pack of a batch: where its bytes come from.
type packPlan struct {
	name  string
	size  int
	count int
	parts []part     // byte ranges of request buffers, in pack order
	reqs  []*request // the requests with records in it
}

type part struct {
	r        *request
	from, to int
}

// writeBatch lays reqs out into packs, writes them one at a time, and
// completes each request when the last pack holding its records is written.
func (s *Store) writeBatch(ctx context.Context, reqs []*request) {
	now := s.cfg.Now()
	var plans []*packPlan
	var cur *packPlan
	for _, r := range reqs {
		for i, sp := range r.recs {
			if cur == nil || cur.count > 0 && cur.size+sp.n > s.cfg.MaxPackSize {
				cur = &packPlan{name: newPackName(now), size: packHeaderSize}
				plans = append(plans, cur)
			}
			r.locs[i] = Location{Pack: cur.name, Offset: int64(cur.size + recordHeaderSize), Length: sp.stored, Codec: sp.codec}
			if k := len(cur.parts) - 1; k >= 0 && cur.parts[k].r == r && cur.parts[k].to == sp.off {
				cur.parts[k].to += sp.n
			} else {
				cur.parts = append(cur.parts, part{r: r, from: sp.off, to: sp.off + sp.n})
			}
			if k := len(cur.reqs) - 1; k < 0 || cur.reqs[k] != r {
				cur.reqs = append(cur.reqs, r)
			}
			cur.size += sp.n
			cur.count++
			r.lastPack = len(plans) - 1
		}
	}

	for i, p := range plans {
		err := s.writePack(ctx, p)
		s.mu.Lock()
		for _, r := range p.reqs {
			if err != nil && r.err == nil {
				r.err = err
			}
			if r.lastPack == i {
				if r.batch != nil {
					s.leave(r)
				}
				close(r.done)
				s.release(r) // the flush has copied all of it
			}
		}
		s.mu.Unlock()
	}
}

// writePack assembles p in the pack buffer and stores it.
func (s *Store) writePack(ctx context.Context, p *packPlan) error {
	if cap(s.buf) < p.size || cap(s.buf) > 2*s.cfg.MaxPackSize {
		s.buf = make([]byte, 0, max(p.size, s.cfg.MaxPackSize))
	}
	buf := s.buf[:packHeaderSize]
	putPackHeader(buf, p.size, p.count)
	for _, pt := range p.parts {
		buf = append(buf, pt.r.buf[pt.from:pt.to]...)
	}
	start := time.Now()
	if err := s.cfg.Backend.Put(ctx, p.name, buf); err != nil {
		return fmt.Errorf("chunks: write pack %s: %w", p.name, err)
	}
	s.cfg.Logger.Debug("chunks: wrote pack", "pack", p.name, "bytes", len(buf), "chunks", p.count, "puts", len(p.reqs), "dur", time.Since(start))
	return nil
}

// Get reads one chunk, decodes it and verifies it against ref. dst is an
// optional buffer to reuse; the result uses it if it is large enough.
// Stored bytes that do not decode or verify are a *CorruptError naming ref
// and the pack, never wrong bytes. A missing pack is ErrNotFound (wrapped,
// naming the pack). Get reads exactly the stored range.
func (s *Store) Get(ctx context.Context, ref Ref, loc Location, dst []byte) ([]byte, error) {
	if loc.Length > MaxChunkSize || loc.Offset < packHeaderSize+recordHeaderSize || (loc.Codec != CodecRaw && loc.Codec != CodecS2) {
		return nil, &CorruptError{Ref: ref, Pack: loc.Pack, Err: fmt.Errorf("invalid location %+v", loc)}
	}
	n := int(loc.Length)
	if loc.Codec == CodecRaw {
		out := slices.Grow(dst[:0], n)[:n]
		if err := s.readAt(ctx, ref, loc, out); err != nil {
			return nil, err
		}
		if err := verify(ref, out); err != nil {
			return nil, &CorruptError{Ref: ref, Pack: loc.Pack, Err: err}
		}
		return out, nil
	}

	bp, _ := s.scratch.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.scratch.Put(bp)
	stored := slices.Grow((*bp)[:0], n)[:n]
	*bp = stored
	if err := s.readAt(ctx, ref, loc, stored); err != nil {
		return nil, err
	}
	out, err := decodeS2(dst, stored, -1)
	if err == nil {
		err = verify(ref, out)
	}
	if err != nil {
		return nil, &CorruptError{Ref: ref, Pack: loc.Pack, Err: err}
	}
	return out, nil
}

func (s *Store) readAt(ctx context.Context, ref Ref, loc Location, p []byte) error {
	if err := s.cfg.Backend.ReadAt(ctx, loc.Pack, p, loc.Offset); err != nil {
		return fmt.Errorf("chunks: read chunk %s from pack %s: %w", ref, loc.Pack, err)
	}
	return nil
}

// ListPacks calls fn for each pack with its size in bytes, in the caller's
// goroutine, in no particular order. Objects under PackPrefix whose names
// are not pack names are skipped. It stops at fn's first error and returns
// it.
func (s *Store) ListPacks(ctx context.Context, fn func(name string, size int64) error) error {
	return s.cfg.Backend.List(ctx, PackPrefix, func(name string, size int64) error {
		if _, ok := PackTime(name); !ok {
			return nil
		}
		return fn(name, size)
	})
}

// DeletePack deletes a pack. Deleting an absent pack is not an error; a name
// that is not a pack name is.
func (s *Store) DeletePack(ctx context.Context, name string) error {
	if _, ok := PackTime(name); !ok {
		return fmt.Errorf("chunks: delete %q: not a pack name", name)
	}
	if err := s.cfg.Backend.Delete(ctx, name); err != nil {
		return fmt.Errorf("chunks: delete pack %s: %w", name, err)
	}
	return nil
}

// ScanPack reads a whole pack, checks its framing (header and per-record
// checksums, lengths, codecs) and then calls fn for each chunk record in
// pack order. It does not decode or hash the chunks (ReadPack does). Bad
// framing is a *CorruptError, returned before fn is called at all; a
// missing pack is ErrNotFound. It stops at fn's first error and returns it.
func (s *Store) ScanPack(ctx context.Context, name string, fn func(ref Ref, loc Location) error) error {
	_, recs, err := s.readPack(ctx, name)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := fn(r.ref, r.location(name)); err != nil {
			return err
		}
	}
	return nil
}

// ReadPack is ScanPack that also decodes and verifies every chunk, for
// scrub and compaction. fn gets each chunk's plaintext, valid only until fn
// returns, or, for a chunk that does not decode or verify, nil data and a
// *CorruptError, after which the walk goes on if fn returns nil.
func (s *Store) ReadPack(ctx context.Context, name string, fn func(ref Ref, loc Location, data []byte, err error) error) error {
	p, recs, err := s.readPack(ctx, name)
	if err != nil {
		return err
	}
	var buf []byte
	for _, r := range recs {
		stored := p[r.off : r.off+r.stored]
		data := stored
		var err error
		if r.codec == CodecS2 {
			if data, err = decodeS2(buf, stored, r.raw); err == nil {
				buf = data
			}
		}
		if err == nil {
			err = verify(r.ref, data)
		}
		if err != nil {
			data, err = nil, &CorruptError{Ref: r.ref, Pack: name, Err: err}
		}
		if err := fn(r.ref, r.location(name), data, err); err != nil {
			return err
		}
	}
	return nil
}

// readPack reads a whole pack and checks its framing. The header comes
// first since it holds the pack's length, which no Backend call reports.
func (s *Store) readPack(ctx context.Context, name string) ([]byte, []record, error) {
	h := make([]byte, packHeaderSize)
	if err := s.cfg.Backend.ReadAt(ctx, name, h, 0); err != nil {
		return nil, nil, fmt.Errorf("chunks: read pack %s: %w", name, err)
	}
	n, _, err := parsePackHeader(h)
	if err != nil {
		return nil, nil, &CorruptError{Pack: name, Err: err}
	}
	p := make([]byte, n)
	copy(p, h)
	if err := s.cfg.Backend.ReadAt(ctx, name, p[packHeaderSize:], packHeaderSize); err != nil {
		return nil, nil, fmt.Errorf("chunks: read pack %s: %w", name, err)
	}
	recs, err := parsePack(name, p)
	return p, recs, err
}

func (r record) location(pack string) Location {
	return Location{Pack: pack, Offset: int64(r.off), Length: uint32(r.stored), Codec: r.codec}
}
