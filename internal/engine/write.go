package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// writeBatchBlocks bounds the blocks one metadata transaction of WriteAt
// or Zero commits. A write of up to 4 MiB that does not start on a block
// boundary touches 65 blocks, so that is the bound: every such write is
// atomic, and larger ones commit in steps of about 4 MiB.
const writeBatchBlocks = 4<<20/BlockSize + 1

// maxGuardedBlocks bounds the blocks a guarded write (WriteAtIf, ZeroIf)
// changes, all in one commit: 256 MiB of blocks, far more than a Put Page
// (4 MiB), while a transaction this size stays well within what the stores
// handle at once. Zeroing touches only blocks that hold data, so ZeroIf
// fits any range with data in fewer blocks than this.
const maxGuardedBlocks = 4096

// blockWrite is the new content of one whole block.
type blockWrite struct {
	b    uint64
	data []byte // nil for zero
	val  value
	// A partial block is read, merged and written back; the commit checks
	// that the block still holds what was read (expect), else the merge is
	// redone. [lo, hi) are the image offsets of the new bytes.
	partial bool
	lo, hi  int64
	expect  value
}

// errChunkVanished: a chunk seen in the index before the pack write was
// collected before the commit; the write starts over and stores it.
var errChunkVanished = errors.New("engine: chunk collected during write")

// errPlacementChanged: the volume's zones changed before the write
// committed; its chunks are stored into the new zones and it commits again.
var errPlacementChanged = errors.New("engine: placement changed during write")

// errBlockChanged: a block read for a partial write changed before the
// write committed; the read-modify-write is redone.
var errBlockChanged = errors.New("engine: block changed during read-modify-write")

// maxAttempts bounds the retries of a commit that met a concurrent change.
const maxAttempts = 16

// WriteAt writes p at off into a volume. off and len(p) must be multiples
// of 512 and inside the volume. When WriteAt returns nil the data and its
// metadata are durable; a write of up to 4 MiB is atomic.
func (e *Engine) WriteAt(ctx context.Context, id ID, p []byte, off int64) error {
	return e.WriteAtIf(ctx, id, p, off, nil)
}

// Zero sets [off, off+n) of a volume to zeros. Blocks it covers whole become
// zero entries, which cost no chunk storage, and only blocks that hold data
// are touched, so zeroing a large sparse range is cheap. As for WriteAt, a
// Zero of up to 4 MiB is atomic: a write that commits while it runs is
// cleared whole or not at all.
func (e *Engine) Zero(ctx context.Context, id ID, off, n int64) error {
	return e.ZeroIf(ctx, id, off, n, nil)
}

// WriteAtIf is [Engine.WriteAt] on condition: guard runs inside the
// transaction that commits the write's metadata, and the whole write
// becomes visible in that one commit, together with whatever guard wrote.
// guard may read and write keys of its own (the caller's record of the
// disk, its version) but must not touch the engine's; like any closure
// given to [meta.Store.Update] it may run more than once and must have no
// effect outside tx. If guard returns an error, nothing of the write is
// visible (chunks already stored are left to GC, as any orphan) and
// WriteAtIf returns that error unchanged. A write that changes more blocks
// than one commit holds (far more than 4 MiB) is refused with
// [ErrTooLarge], and nothing of it or of the guard commits. A nil guard
// means WriteAt.
func (e *Engine) WriteAtIf(ctx context.Context, id ID, p []byte, off int64, guard func(meta.Tx) error) error {
	return e.modify(ctx, id, off, int64(len(p)), p, guard)
}

// ZeroIf is [Engine.Zero] on condition, as [Engine.WriteAtIf] is WriteAt.
// Only blocks that hold data count towards [ErrTooLarge], so a large sparse
// range fits in one commit. The blocks to clear are found in that commit,
// so a write that commits before it is cleared whole. A nil guard means
// Zero.
func (e *Engine) ZeroIf(ctx context.Context, id ID, off, n int64, guard func(meta.Tx) error) error {
	return e.modify(ctx, id, off, n, nil, guard)
}

// inCommit is what a write does in its commit besides its batch: a guard's
// check (or a write-back fold's journal mark), and a run of whole blocks to
// zero.
type inCommit struct {
	check func(meta.Tx) error // nil: nothing
	// [zeroFrom, zeroTo) is a run of whole blocks to zero, resolved inside
	// the commit rather than by a walk before it: a block written in
	// between would keep its data, so a concurrent write would survive in
	// part and the two would not be one after the other.
	zeroFrom, zeroTo uint64
}

// tooLarge is ErrTooLarge for the write at [off, off+n).
func tooLarge(off, n int64) error {
	return fmt.Errorf("%w: the write at offset %d of %d bytes changes more than %d blocks", ErrTooLarge, off, n, maxGuardedBlocks)
}

// modify writes src (or zeros when src is nil) over [off, off+n) of a volume.
// It takes no lock: whole blocks commit as they are, and partial blocks are
// merged optimistically, so concurrent writers to one volume share packs
// and never wait for each other's I/O. With a guard, everything commits at
// once with it, even a write that changes nothing: the guard's own writes
// (a new version, say) are due all the same.
func (e *Engine) modify(ctx context.Context, id ID, off, n int64, src []byte, guard func(meta.Tx) error) error {
	v, err := e.volumeView(ctx, id)
	if err != nil {
		return err
	}
	if err := checkRange(off, n, v.size); err != nil {
		return err
	}
	var g *inCommit
	limit := writeBatchBlocks
	if guard != nil {
		g, limit = &inCommit{check: guard}, maxGuardedBlocks
	}
	var batch []blockWrite
	flush := func() error {
		err := e.commitBatch(ctx, v, off, n, src, batch, g)
		batch = batch[:0]
		return err
	}
	add := func(w blockWrite) error {
		if len(batch) == limit {
			if guard != nil {
				return tooLarge(off, n)
			}
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, w)
		return nil
	}
	end := off + n
	for pos := off; pos < end; {
		b := uint64(pos / BlockSize)
		bs := int64(b) * BlockSize
		hi := min(bs+BlockSize, end)
		switch {
		case pos == bs && hi == bs+BlockSize && src != nil:
			if err := add(blockWrite{b: b, data: src[pos-off : hi-off]}); err != nil {
				return err
			}
		case pos == bs && hi == bs+BlockSize:
			// A run of whole blocks to zero: only those holding data
			// need an entry.
			bEnd := uint64(end / BlockSize)
			hi = int64(bEnd) * BlockSize
			if guard != nil || bEnd-b <= writeBatchBlocks {
				// One commit holds it: zero it there. At most one
				// partial block follows, so this is the last batch.
				if g == nil {
					g = &inCommit{}
				}
				g.zeroFrom, g.zeroTo = b, bEnd
				break
			}
			err := e.walkRange(ctx, id, b, bEnd, func(bv blockVal) error {
				return add(blockWrite{b: bv.b})
			})
			if err != nil {
				return err
			}
		default:
			if err := add(blockWrite{b: b, partial: true, lo: pos, hi: hi}); err != nil {
				return err
			}
		}
		pos = hi
	}
	if len(batch) > 0 || g != nil {
		return flush()
	}
	return nil
}

// commitBatch merges the batch's partial blocks and commits it. Partial
// blocks are held under striped locks, so that writers of one block in this
// process take turns; the commit's check catches any other change (a
// whole-block write, another process) and the merge is redone.
func (e *Engine) commitBatch(ctx context.Context, v view, off, n int64, src []byte, batch []blockWrite, g *inCommit) error {
	lin, id := v.lin, v.id
	var stripes []int
	for _, w := range batch {
		if w.partial {
			stripes = append(stripes, int((uint64(lin)*0x9e3779b97f4a7c15^w.b)%uint64(len(e.stripes))))
		}
	}
	slices.Sort(stripes)
	for _, i := range slices.Compact(stripes) {
		e.stripes[i].Lock()
		defer e.stripes[i].Unlock()
	}
	for attempt := 1; ; attempt++ {
		for i := range batch {
			if w := &batch[i]; w.partial {
				if err := e.merge(ctx, id, w, off, src); err != nil {
					return err
				}
			}
		}
		err := e.commit(ctx, id, v.zones, off, n, batch, g)
		if err == nil && e.cache != nil {
			// A block written in part is likely written in part again
			// soon (small random writes), and its next merge reads it.
			for _, w := range batch {
				if w.partial && w.val.nonZero {
					e.cache.add(ctx, w.val.ref, w.data)
				}
			}
		}
		if !errors.Is(err, errBlockChanged) || attempt == maxAttempts {
			return err
		}
	}
}

// merge reads a partial block's present content and overlays the new bytes.
func (e *Engine) merge(ctx context.Context, id ID, w *blockWrite, off int64, src []byte) error {
	plan, err := e.plan(ctx, id, w.b, w.b+1, func(view) error { return nil })
	if err != nil {
		return err
	}
	buf := make([]byte, BlockSize)
	if br := plan[0]; br.val.nonZero {
		// Through the cache: small writes to one block read it again and
		// again. A chunk moved since the plan is read as export reads it.
		var scratch []byte
		err := e.readBlock(ctx, br, buf, 0, &scratch)
		if errors.Is(err, chunks.ErrNotFound) {
			buf, err = e.getBlock(ctx, id, br, buf[:0])
		}
		if err != nil {
			return err
		}
	}
	bs := int64(w.b) * BlockSize
	if src != nil {
		copy(buf[w.lo-bs:w.hi-bs], src[w.lo-off:])
	} else {
		clear(buf[w.lo-bs : w.hi-bs])
	}
	w.data, w.expect, w.val = buf, plan[0].val, value{}
	return nil
}

func (e *Engine) volumeView(ctx context.Context, id ID) (view, error) {
	var v view
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		var err error
		v, err = openView(tx, id)
		if err == nil && v.kind != KindVolume {
			err = fmt.Errorf("%w: image %d", ErrReadOnly, id)
		}
		return err
	})
	return v, err
}

// commit makes a batch of block writes durable: new chunks into packs
// first, then one metadata transaction pointing the head at them, in which
// a guard's check runs first, so that the caller's rules decide
// before the engine's. zones is the volume's placement as the caller saw
// it; should Place have changed it before the transaction, the chunks go
// to the new zones and the commit is tried again, so no write commits into
// a stale placement.
func (e *Engine) commit(ctx context.Context, id ID, zones []zoneID, off, n int64, batch []blockWrite, g *inCommit) error {
	for i := range batch {
		w := &batch[i]
		if w.data != nil && !isZero(w.data) {
			w.val = value{nonZero: true, ref: chunks.Sum(w.data)}
		}
	}
	for attempt := 1; ; attempt++ {
		fresh, err := e.storeMissing(ctx, zones, batch)
		if err != nil {
			return err
		}
		err = e.meta.Update(ctx, func(tx meta.Tx) error {
			if g != nil && g.check != nil {
				if err := g.check(tx); err != nil {
					return err
				}
			}
			v, err := openView(tx, id)
			if err != nil {
				return err
			}
			if v.kind != KindVolume {
				return fmt.Errorf("%w: image %d", ErrReadOnly, id)
			}
			if err := checkRange(off, n, v.size); err != nil {
				return err
			}
			if !slices.Equal(v.zones, zones) {
				zones = v.zones
				return errPlacementChanged
			}
			r := newTxReader(tx)
			for _, w := range batch {
				if err := setBlock(r, v.lin, v.gen, zones, w, fresh); err != nil {
					return err
				}
			}
			if g != nil {
				return g.zeroRun(r, v, len(batch), off, n)
			}
			return nil
		})
		if (errors.Is(err, errChunkVanished) || errors.Is(err, errPlacementChanged)) && attempt < maxAttempts {
			continue
		}
		return err
	}
}

// zeroRun clears the blocks of the zero run that hold data,
// n blocks having been written already; window by window, so that a run
// over too many is refused before all of it is read.
func (g *inCommit) zeroRun(r *txReader, v view, n int, off, size int64) error {
	for w := g.zeroFrom; w < g.zeroTo; w += windowBlocks {
		win, err := r.allocated(v.lin, v.gen, w, min(w+windowBlocks, g.zeroTo))
		if err != nil {
			return err
		}
		if n += len(win); n > maxGuardedBlocks {
			return tooLarge(off, size)
		}
		for _, bv := range win {
			// A zero value needs no chunk, so no zone is asked for one.
			if err := setBlock(r, v.lin, v.gen, nil, blockWrite{b: bv.b}, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// storeMissing writes each chunk of the batch into every zone of the
// placement whose copy the index lacks, and returns the new locations.
func (e *Engine) storeMissing(ctx context.Context, zones []zoneID, batch []blockWrite) (map[zoneID]map[chunks.Ref]chunks.Location, error) {
	want := make(map[zoneID][]chunks.Chunk)
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		clear(want)
		seen := make(map[chunks.Ref]bool)
		for _, w := range batch {
			if !w.val.nonZero || seen[w.val.ref] {
				continue
			}
			seen[w.val.ref] = true
			ce, _, err := getChunk(tx, w.val.ref)
			if err != nil {
				return err
			}
			for _, z := range zones {
				if !ce.hasZone(z) {
					want[z] = append(want[z], chunks.Chunk{Ref: w.val.ref, Data: w.data})
				}
			}
		}
		return nil
	})
	if err != nil || len(want) == 0 {
		return nil, err
	}
	return e.putZones(ctx, want)
}

// setBlock points a block of lineage l's head generation at its new value.
func setBlock(r *txReader, l LineageID, head Generation, zones []zoneID, w blockWrite, fresh map[zoneID]map[chunks.Ref]chunks.Location) error {
	b, val := w.b, w.val
	cur, eg, ok, err := r.entry(l, b, head)
	if err != nil {
		return err
	}
	if !ok {
		if cur, err = r.value(l, head, b); err != nil {
			return err
		}
	}
	if w.partial && cur != w.expect {
		return errBlockChanged
	}
	if cur == val {
		return nil // no change: keeps diffs exact and costs nothing
	}
	if ok && eg == head {
		if err := decref(r.tx, cur); err != nil {
			return err
		}
	} else if err := r.tx.Put(changedKey(l, head, b), nil); err != nil {
		return err
	}
	if err := incref(r.tx, val, zones, fresh); err != nil {
		return err
	}
	return r.tx.Put(mapKey(l, b, head), val.encode())
}

// incref adds a reference to a chunk and makes sure the index lists a copy
// in every zone of need, taking new copies from fresh. A copy neither
// indexed nor fresh means the index changed since the chunks were stored
// (GC dropped the entry): errChunkVanished, and the write starts over.
func incref(tx meta.Tx, v value, need []zoneID, fresh map[zoneID]map[chunks.Ref]chunks.Location) error {
	if !v.nonZero {
		return nil
	}
	ce, ok, err := getChunk(tx, v.ref)
	if err != nil {
		return err
	}
	if !ok && len(need) == 0 {
		return fmt.Errorf("%w: chunk %s is referenced but not indexed", ErrCorrupt, v.ref)
	}
	for _, z := range need {
		if ce.hasZone(z) {
			continue
		}
		loc, have := fresh[z][v.ref]
		if !have {
			return errChunkVanished
		}
		ce.Locations = append(ce.Locations, zoneLocation{Zone: z, Location: loc})
	}
	ce.Refs++
	return tx.Put(chunkKey(v.ref), ce.marshal())
}

// decref drops one reference; a chunk at zero stays indexed until GC.
func decref(tx meta.Tx, v value) error {
	if !v.nonZero {
		return nil
	}
	ce, ok, err := getChunk(tx, v.ref)
	if err != nil {
		return err
	}
	if !ok || ce.Refs == 0 {
		return fmt.Errorf("%w: chunk %s released more often than referenced", ErrCorrupt, v.ref)
	}
	ce.Refs--
	return tx.Put(chunkKey(v.ref), ce.marshal())
}
