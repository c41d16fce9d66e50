package engine

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
	"golang.org/x/sync/errgroup"
)

// Write-back. A volume used as a disk (attached over NBD) gets many small
// writes and, now and then, a flush; a write need only be durable once a
// flush that follows it is answered. Committing each write on its own costs
// a pack write and a metadata commit per write, and a whole 64 KiB chunk
// for every 4 KiB written. A WriteBack instead keeps written blocks in
// memory, whole, and commits all of them in one engine commit when asked to
// flush, when they reach its bound, or a little while after the first of
// them: a block written many times between flushes is stored once.
//
// With a journal (Config.JournalDir), a flush only appends the writes since
// the last one to the journal and fsyncs it; the blocks are committed
// ("folded") when the buffer or the journal reaches its bound, a little
// while after the first write, before a snapshot and at Close, while
// writes go on into a fresh buffer. See journal.go.
//
// Crash semantics: a fold is one commit, a journal record is one write,
// and a write is applied to the buffer in one step, so after a crash each
// write reads wholly old or wholly new, the writes that survive are the
// first ones, and everything before the last answered flush is there.
//
// Readers of sealed generations never see the buffer: [Engine.Hold] flushes
// it and holds writes while the caller seals (takes a snapshot), so a
// snapshot holds every write answered before it.

// ErrWriteBackOpen: a volume has at most one WriteBack at a time.
var ErrWriteBackOpen = errors.New("engine: the volume already has a write-back buffer")

// ErrWriteBackClosed: the WriteBack was closed (the disk was detached).
var ErrWriteBackClosed = errors.New("engine: the write-back buffer is closed")

// DefaultWriteBackBytes bounds the blocks a WriteBack holds before a write
// waits for them to commit: enough to absorb bursts between a guest's
// flushes, small enough that a flush (and a snapshot of an attached disk)
// stays short.
const DefaultWriteBackBytes = 64 << 20

// writeBackDelay is how long written blocks wait for a flush before the
// WriteBack commits them anyway, bounding what a crash can lose from a
// client that never flushes.
const writeBackDelay = 5 * time.Second

// maxReadRetries bounds how often a read starts over because a flush
// committed while it read the volume; then it reads with flushes held.
const maxReadRetries = 3

// WriteBack buffers writes to one volume in memory. Its methods are safe
// for concurrent use; concurrent writes to the same bytes land in some
// order, as on any disk.
type WriteBack struct {
	e     *Engine
	id    ID
	size  int64
	limit int // blocks held before a write waits for a flush

	// barrier: writes hold it shared; Zero and Hold exclusively, to commit
	// with no write half-way into the buffer.
	barrier sync.RWMutex
	// flushMu lets one fold (commit of the buffer) run at a time; a fold
	// asked for during another waits and then commits what was written
	// meanwhile.
	flushMu sync.Mutex
	// j is the write-ahead journal; nil without one, and then a flush is
	// a fold.
	j *wbJournal

	mu sync.Mutex
	// dirty holds the blocks written since the running fold (if any)
	// began, flushing the blocks that fold commits. The volume's content
	// is its committed content overlaid by the sectors flushing holds,
	// then by those dirty holds.
	dirty, flushing map[uint64]*wbBlock
	// epoch counts commits of this WriteBack (folds, zeros): a block read
	// from the engine is current only if no commit ended meanwhile.
	epoch uint64
	// seq counts the writes applied; flushed is the highest seq made
	// durable (by a fold or a journal sync). A flush that finds its
	// writes covered by a flush that ran while it waited has nothing to
	// do: clients that send flushes back to back (fio does) pay for one.
	seq, flushed uint64
	free         [][]byte // block buffers to reuse
	timer        *time.Timer
	delay        time.Duration // from a write to the fold that follows it
	closed       bool
}

// sectorsPerBlock is how many sectors a block has: a wbBlock's bitmap.
const sectorsPerBlock = BlockSize / SectorSize

// wbBlock is a buffered block: the sectors written to it, and which they
// are. A write does not read the rest of the block: a 4 KiB write to a
// 64 KiB block would read, decompress and verify 64 KiB for it. The fold
// reads the block once, whatever number of writes it took, and fills in
// the sectors not written.
type wbBlock struct {
	data  []byte
	valid [sectorsPerBlock / 64]uint64
	n     int // sectors valid; sectorsPerBlock when whole
}

func (b *wbBlock) has(s int64) bool { return b.valid[s/64]&(1<<(s%64)) != 0 }

// set marks sectors [from, to) of the block written.
func (b *wbBlock) set(from, to int64) {
	for s := from; s < to; s++ {
		if !b.has(s) {
			b.valid[s/64] |= 1 << (s % 64)
			b.n++
		}
	}
}

// copySectors copies the sectors of [lo, hi) (offsets in the block) that
// src holds from src to dst, in runs.
func (b *wbBlock) copySectors(dst []byte, lo, hi int64) {
	if b.n == sectorsPerBlock {
		copy(dst, b.data[lo:hi])
		return
	}
	for s := lo / SectorSize; s*SectorSize < hi; {
		if !b.has(s) {
			s++
			continue
		}
		r := s
		for r*SectorSize < hi && b.has(r) {
			r++
		}
		from, to := max(s*SectorSize, lo), min(r*SectorSize, hi)
		copy(dst[from-lo:to-lo], b.data[from:to])
		s = r
	}
}

// wbJournal is a WriteBack's journal.
type wbJournal struct {
	dir string
	inc uint64
	// free holds pending-record buffers to reuse (guarded by w.mu).
	free [][]byte
	// syncMu lets one sync run at a time. A fold takes it (after flushMu)
	// to drop segments; a sync never takes flushMu.
	syncMu sync.Mutex
	// segs are the segments not yet dropped, oldest first; the last
	// takes new records. Guarded by the WriteBack's mu.
	segs []*segment
}

func (j *wbJournal) newSegment(id ID, first uint64) *segment {
	return &segment{path: filepath.Join(j.dir, segmentName(id, j.inc, first)), first: first}
}

// errJournalBroken: a journal write failed; the flush folds instead.
var errJournalBroken = errors.New("engine: the write-back journal failed")

// OpenWriteBack starts buffering writes to volume id, holding at most
// limit bytes of written blocks (0 means [DefaultWriteBackBytes]). Until
// [WriteBack.Close], write the volume only through the WriteBack: writes
// made directly do not see its buffered blocks. Other readers of the
// volume see only what it has committed.
func (e *Engine) OpenWriteBack(ctx context.Context, id ID, limit int64) (*WriteBack, error) {
	v, err := e.volumeView(ctx, id)
	if err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = DefaultWriteBackBytes
	}
	blocks := int(limit / BlockSize)
	if blocks < 1 || blocks > maxGuardedBlocks {
		return nil, fmt.Errorf("engine: write-back bound %d: must hold 1 to %d blocks of %d bytes", limit, maxGuardedBlocks, BlockSize)
	}
	w := &WriteBack{e: e, id: id, size: v.size, limit: blocks, dirty: make(map[uint64]*wbBlock), delay: writeBackDelay}
	e.mu.Lock()
	if e.writeBacks[id] != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: image %d", ErrWriteBackOpen, id)
	}
	e.writeBacks[id] = w
	e.mu.Unlock()
	if e.journalDir != "" {
		// The incarnation is committed before any record of it is
		// written, so replay never mistakes its records for another's.
		j := &wbJournal{dir: e.journalDir, inc: rand.Uint64()}
		j.segs = []*segment{j.newSegment(id, 1)}
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			if _, err := openView(tx, id); err != nil {
				return err
			}
			return tx.Put(journalKey(id), journalMark{inc: j.inc}.encode())
		})
		if err != nil {
			e.mu.Lock()
			delete(e.writeBacks, id)
			e.mu.Unlock()
			return nil, err
		}
		w.j = j
	}
	return w, nil
}

// Hold flushes volume id's WriteBack, if it has one, and holds its writes
// until release is called, so that what the caller commits in between (a
// snapshot) sees every write answered before Hold. Without a WriteBack it
// holds nothing. release must be called exactly once.
func (e *Engine) Hold(ctx context.Context, id ID) (release func(), err error) {
	e.mu.Lock()
	w := e.writeBacks[id]
	e.mu.Unlock()
	if w == nil {
		return func() {}, nil
	}
	w.barrier.Lock()
	// A snapshot reads committed generations only: fold, not just sync.
	// A WriteBack closed meanwhile folded as it closed.
	w.flushMu.Lock()
	err = w.flushLocked(ctx)
	w.flushMu.Unlock()
	if err != nil && !errors.Is(err, ErrWriteBackClosed) {
		w.barrier.Unlock()
		return nil, err
	}
	return w.barrier.Unlock, nil
}

// Size is the volume's size in bytes when the WriteBack was opened.
func (w *WriteBack) Size() int64 { return w.size }

// Buffered returns the bytes of written blocks not yet committed.
func (w *WriteBack) Buffered() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(len(w.dirty)+len(w.flushing)) * BlockSize
}

// ReadAt reads the volume as written through w, flushed or not.
func (w *WriteBack) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := checkRange(off, int64(len(p)), w.size); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return ErrWriteBackClosed
		}
		if w.overlay(p, off, true) {
			w.mu.Unlock()
			return nil // every block is buffered
		}
		epoch := w.epoch
		w.mu.Unlock()

		if attempt == maxReadRetries {
			// Flushes keep committing under this read: hold them.
			w.flushMu.Lock()
			err := w.e.ReadAt(ctx, w.id, p, off)
			if err == nil {
				w.mu.Lock()
				w.overlay(p, off, false)
				w.mu.Unlock()
			}
			w.flushMu.Unlock()
			return err
		}
		if err := w.e.ReadAt(ctx, w.id, p, off); err != nil {
			return err
		}
		w.mu.Lock()
		// Unless a commit ended meanwhile, what the engine returned is the
		// committed content, or newer where flushing blocks landed, and
		// overlaying flushing and dirty gives the present content.
		if w.epoch == epoch {
			w.overlay(p, off, false)
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
	}
}

// overlay copies the buffered sectors of [off, off+len(p)) into p,
// flushing's then dirty's. With onlyIfAll it copies nothing unless every
// sector is buffered, and reports whether it copied. w.mu must be held.
func (w *WriteBack) overlay(p []byte, off int64, onlyIfAll bool) bool {
	end := off + int64(len(p))
	if onlyIfAll {
		for s := off / SectorSize; s*SectorSize < end; s++ {
			b, i := uint64(s*SectorSize/BlockSize), s%sectorsPerBlock
			if d := w.dirty[b]; d != nil && d.has(i) {
				continue
			}
			if f := w.flushing[b]; f != nil && f.has(i) {
				continue
			}
			return false
		}
	}
	for b := off / BlockSize; b*BlockSize < end; b++ {
		bs := b * BlockSize
		lo, hi := max(bs, off), min(bs+BlockSize, end)
		for _, blk := range []*wbBlock{w.flushing[uint64(b)], w.dirty[uint64(b)]} {
			if blk != nil {
				blk.copySectors(p[lo-off:hi-off], lo-bs, hi-bs)
			}
		}
	}
	return true
}

// WriteAt writes p at off into the buffer. It returns once the write is
// in the buffer (reads see it), not once it is durable: that is
// [WriteBack.Flush]. A write that fills the buffer starts a fold in the
// background; one that finds it full while a fold runs waits for it, so
// that the buffer holds at most twice its bound, plus the writes in
// flight.
// Writes larger than 32 MiB are applied in pieces of 32 MiB.
func (w *WriteBack) WriteAt(ctx context.Context, p []byte, off int64) error {
	if err := checkRange(off, int64(len(p)), w.size); err != nil {
		return err
	}
	for len(p) > 0 {
		n := min(len(p), maxJournalWrite)
		// Room first, then the write: writers in flight can take the
		// buffer past its bound by their own blocks, no further.
		if err := w.makeRoom(ctx); err != nil {
			return err
		}
		w.barrier.RLock()
		err := w.write(p[:n], off)
		w.barrier.RUnlock()
		if err != nil {
			return err
		}
		if err := w.makeRoom(ctx); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// makeRoom folds the buffer when it is full: in the background if no fold
// runs, so that the writer goes on, else after waiting for the running
// one, so that the buffer stays bounded.
func (w *WriteBack) makeRoom(ctx context.Context) error {
	if !w.full() {
		return nil
	}
	if w.flushMu.TryLock() {
		go func() {
			defer w.flushMu.Unlock()
			if !w.full() {
				return
			}
			if err := w.flushLocked(context.Background()); err != nil && !errors.Is(err, ErrWriteBackClosed) {
				w.e.log.Warn("engine: write-back fold failed; the blocks stay buffered", "image", w.id, "err", err)
			}
		}()
		return nil
	}
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.full() {
		return w.flushLocked(ctx)
	}
	return nil
}

// write applies p to the buffer in one step under w.mu, so that a fold
// commits all of it or none.
func (w *WriteBack) write(p []byte, off int64) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriteBackClosed
	}
	end := off + int64(len(p))
	for b := uint64(off / BlockSize); int64(b)*BlockSize < end; b++ {
		bs := int64(b) * BlockSize
		lo, hi := max(bs, off), min(bs+BlockSize, end)
		blk := w.dirty[b]
		if blk == nil {
			blk = &wbBlock{data: w.allocLocked()}
			w.dirty[b] = blk
		}
		copy(blk.data[lo-bs:hi-bs], p[lo-off:hi-off])
		blk.set((lo-bs)/SectorSize, (hi-bs)/SectorSize)
	}
	w.seq++
	if w.j != nil {
		seg := w.j.segs[len(w.j.segs)-1]
		seg.appendRecord(&w.j.free, w.j.inc, w.seq, off, p)
	}
	w.mu.Unlock()
	w.armTimer()
	return nil
}

// full reports whether the buffer, or the journal's current segment, has
// reached its bound: a journal as large as the buffer costs its replay
// time, and a fold starts a new segment.
func (w *WriteBack) full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.j != nil && w.j.segs[len(w.j.segs)-1].size >= int64(w.limit)*BlockSize {
		return true
	}
	return len(w.dirty) >= w.limit
}

// armTimer makes sure a flush follows within writeBackDelay.
func (w *WriteBack) armTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil || w.closed {
		return
	}
	w.timer = time.AfterFunc(w.delay, func() {
		w.mu.Lock()
		w.timer = nil
		w.mu.Unlock()
		w.flushMu.Lock()
		err := w.flushLocked(context.Background())
		w.flushMu.Unlock()
		if err != nil && !errors.Is(err, ErrWriteBackClosed) {
			w.e.log.Warn("engine: write-back fold failed; the blocks stay buffered", "image", w.id, "err", err)
		}
	})
}

// Zero makes [off, off+n) read as zeros. Unlike WriteAt it commits at once,
// with the buffer: a zeroed range is usually large (a trim), and the
// engine zeroes it without storing anything.
func (w *WriteBack) Zero(ctx context.Context, off, n int64) error {
	if err := checkRange(off, n, w.size); err != nil {
		return err
	}
	w.barrier.Lock()
	defer w.barrier.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if err := w.flushLocked(ctx); err != nil {
		return err
	}
	err := w.e.Zero(ctx, w.id, off, n)
	w.mu.Lock()
	w.epoch++ // even on error: part of the range may have committed
	w.mu.Unlock()
	return err
}

// Flush returns once every write made before it was called is durable:
// appended to the journal and fsynced, or, without a journal, committed in
// one engine commit. On error the writes stay buffered for the next flush.
func (w *WriteBack) Flush(ctx context.Context) error {
	if w.j != nil {
		err := w.syncJournal()
		if !errors.Is(err, errJournalBroken) {
			return err
		}
		w.e.log.Warn("engine: the write-back journal failed; flushes commit the blocks until a fold starts a new segment", "image", w.id, "err", err)
	}
	w.mu.Lock()
	target := w.seq
	w.mu.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	covered := w.flushed >= target && !w.closed
	w.mu.Unlock()
	if covered {
		return nil
	}
	return w.flushLocked(ctx)
}

// syncJournal writes the records of every write made before it was called
// to the journal and fsyncs them. It returns errJournalBroken (wrapped) if
// a segment cannot be written.
func (w *WriteBack) syncJournal() error {
	w.mu.Lock()
	target := w.seq
	w.mu.Unlock()
	w.j.syncMu.Lock()
	defer w.j.syncMu.Unlock()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriteBackClosed
	}
	if w.flushed >= target {
		w.mu.Unlock()
		return nil
	}
	var batch []segmentWrite
	for _, seg := range w.j.segs {
		if seg.broken {
			w.mu.Unlock()
			return errJournalBroken
		}
		if len(seg.pending) > 0 {
			batch = append(batch, segmentWrite{seg, seg.pending})
			seg.pending = nil
		}
	}
	upTo := w.seq
	w.mu.Unlock()

	if err := syncSegments(w.j.dir, batch); err != nil {
		w.mu.Lock()
		for _, sw := range batch {
			sw.seg.broken = true
		}
		w.mu.Unlock()
		return fmt.Errorf("%w: %w", errJournalBroken, err)
	}
	w.mu.Lock()
	w.flushed = max(w.flushed, upTo)
	for _, sw := range batch {
		recycle(&w.j.free, sw.data, w.limit*BlockSize/journalBuf)
	}
	w.mu.Unlock()
	return nil
}

// flushLocked folds: it commits the buffer in one engine commit (with the
// journal's mark) while writes go on into a fresh buffer and, with a
// journal, a fresh segment. w.flushMu must be held.
func (w *WriteBack) flushLocked(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriteBackClosed
	}
	if len(w.dirty) == 0 {
		w.flushed = w.seq // everything applied is committed
		w.mu.Unlock()
		return nil
	}
	w.flushing, w.dirty = w.dirty, make(map[uint64]*wbBlock, len(w.dirty))
	seq := w.seq
	var partial []uint64
	for b, blk := range w.flushing {
		if blk.n < sectorsPerBlock {
			partial = append(partial, b)
		}
	}
	var mark *journalMark
	if w.j != nil {
		w.j.segs = append(w.j.segs, w.j.newSegment(w.id, seq+1))
		mark = &journalMark{inc: w.j.inc, seq: seq}
	}
	w.mu.Unlock()

	err := w.fillPartial(ctx, partial)
	if err == nil {
		batch := make([]blockWrite, 0, len(w.flushing))
		for b, blk := range w.flushing { // no write changes flushing
			batch = append(batch, blockWrite{b: b, data: blk.data})
		}
		err = w.e.commitBlocks(ctx, w.id, batch, mark)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// Keep the blocks, under the sectors written again meanwhile.
		for b, blk := range w.flushing {
			newer := w.dirty[b]
			if newer == nil {
				w.dirty[b] = blk
				continue
			}
			newer.copySectors(blk.data, 0, BlockSize)
			for i := range blk.valid {
				blk.valid[i] |= newer.valid[i]
			}
			blk.n = 0
			for i := range blk.valid {
				blk.n += bits.OnesCount64(blk.valid[i])
			}
			w.dirty[b] = blk
			w.releaseLocked(newer.data)
		}
		w.flushing = nil
		return err
	}
	for _, blk := range w.flushing {
		w.releaseLocked(blk.data)
	}
	w.flushing = nil
	w.epoch++
	w.flushed = max(w.flushed, seq)
	if w.j != nil {
		// Segments the fold covers go; a sync may be writing to one.
		w.mu.Unlock()
		w.dropSegments(seq)
		w.mu.Lock()
	}
	return nil
}

// fillPartial reads the committed content of the flushing blocks that
// were written in part and fills in their other sectors, a few blocks at
// a time. Only the fold, under flushMu, commits to the volume, so what it
// reads is what the blocks' writes were made over.
func (w *WriteBack) fillPartial(ctx context.Context, blocks []uint64) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(w.e.readAhead)
	for _, b := range blocks {
		g.Go(func() error {
			base := w.alloc()
			defer w.release(base)
			if err := w.e.ReadAt(ctx, w.id, base, int64(b)*BlockSize); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			blk := w.flushing[b]
			for s := range int64(sectorsPerBlock) {
				if !blk.has(s) {
					copy(blk.data[s*SectorSize:(s+1)*SectorSize], base[s*SectorSize:])
				}
			}
			for i := range blk.valid {
				blk.valid[i] = ^uint64(0)
			}
			blk.n = sectorsPerBlock
			return nil
		})
	}
	return g.Wait()
}

// dropSegments removes the journal segments whose records are all at or
// below seq, which a fold has committed.
func (w *WriteBack) dropSegments(seq uint64) {
	w.j.syncMu.Lock()
	defer w.j.syncMu.Unlock()
	w.mu.Lock()
	var drop []*segment
	keep := w.j.segs[:0]
	for _, seg := range w.j.segs {
		if seg.first <= seq {
			drop = append(drop, seg)
			recycle(&w.j.free, seg.pending, w.limit*BlockSize/journalBuf) // folded: never written
			seg.pending = nil
		} else {
			keep = append(keep, seg)
		}
	}
	w.j.segs = keep
	w.mu.Unlock()
	for _, seg := range drop {
		removeSegment(w.e, seg)
	}
}

// removeSegment closes and removes a segment's file. A file that stays
// holds only folded records, which replay skips and removes.
func removeSegment(e *Engine, seg *segment) {
	if seg.f != nil {
		seg.f.Close()
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("engine: removing a folded journal segment", "path", seg.path, "err", err)
	}
}

// Close flushes what is buffered and ends the WriteBack; calls after it
// fail with ErrWriteBackClosed. If the flush fails, the WriteBack stays
// open (Close may be tried again) and nothing is lost.
func (w *WriteBack) Close(ctx context.Context) error {
	w.barrier.Lock()
	defer w.barrier.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if err := w.flushLocked(ctx); err != nil && !errors.Is(err, ErrWriteBackClosed) {
		return err
	}
	if w.j != nil && !w.isClosed() {
		// Everything is folded: the journal goes, key first (files
		// without a key are leftovers).
		if err := w.e.meta.Update(ctx, func(tx meta.Tx) error { return tx.Delete(journalKey(w.id)) }); err != nil {
			return err
		}
		w.j.syncMu.Lock()
		defer w.j.syncMu.Unlock()
	}
	w.mu.Lock()
	var segs []*segment
	if !w.closed {
		w.closed = true
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
		w.free = nil
		if w.j != nil {
			segs, w.j.segs = w.j.segs, nil
		}
	}
	w.mu.Unlock()
	for _, seg := range segs {
		removeSegment(w.e, seg)
	}
	w.e.mu.Lock()
	if w.e.writeBacks[w.id] == w {
		delete(w.e.writeBacks, w.id)
	}
	w.e.mu.Unlock()
	return nil
}

func (w *WriteBack) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

func (w *WriteBack) alloc() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.allocLocked()
}

func (w *WriteBack) allocLocked() []byte {
	if n := len(w.free); n > 0 {
		buf := w.free[n-1]
		w.free = w.free[:n-1]
		return buf
	}
	return make([]byte, BlockSize)
}

func (w *WriteBack) release(buf []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseLocked(buf)
}

// releaseLocked keeps buf for reuse, up to a bound: a flush frees as many
// blocks as the buffer holds, and the next fills them again.
func (w *WriteBack) releaseLocked(buf []byte) {
	if len(w.free) < w.limit && !w.closed {
		w.free = append(w.free, buf)
	}
}

// commitBlocks commits whole blocks of a volume in one transaction, with
// the journal mark if there is one.
func (e *Engine) commitBlocks(ctx context.Context, id ID, batch []blockWrite, mark *journalMark) error {
	v, err := e.volumeView(ctx, id)
	if err != nil {
		return err
	}
	var g *inCommit
	if mark != nil {
		g = &inCommit{check: func(tx meta.Tx) error { return tx.Put(journalKey(id), mark.encode()) }}
	}
	return e.commit(ctx, id, v.zones, 0, 0, batch, g)
}
