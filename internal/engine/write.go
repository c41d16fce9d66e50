package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// writeBatchBlocks bounds the blocks one metadata transaction commits, so a
// WriteAt of up to 4 MiB is atomic and larger ones commit in 4 MiB steps.
const writeBatchBlocks = 64

// blockWrite is the new content of one whole block.
type blockWrite struct {
	b    uint64
	data []byte // nil for zero
	val  value
}

// errChunkVanished: a chunk seen in the index before the pack write was
// collected before the commit; the write starts over and stores it.
var errChunkVanished = errors.New("engine: chunk collected during write")

// WriteAt writes p at off into a volume. off and len(p) must be multiples
// of 512 and inside the volume. When WriteAt returns nil the data and its
// metadata are durable; a write of up to 4 MiB is atomic.
func (e *Engine) WriteAt(ctx context.Context, id ID, p []byte, off int64) error {
	return e.modify(ctx, id, off, int64(len(p)), p)
}

// Zero sets [off, off+n) of a volume to zeros. Blocks it covers whole become
// zero entries, which cost no chunk storage, and only blocks that hold data
// are touched, so zeroing a large sparse range is cheap.
func (e *Engine) Zero(ctx context.Context, id ID, off, n int64) error {
	return e.modify(ctx, id, off, n, nil)
}

// modify writes src (or zeros when src is nil) over [off, off+n) of a volume.
func (e *Engine) modify(ctx context.Context, id ID, off, n int64, src []byte) error {
	v, err := e.volumeView(ctx, id)
	if err != nil {
		return err
	}
	if err := checkRange(off, n, v.size); err != nil {
		return err
	}
	unlock := e.lock(v.lin)
	defer unlock()

	var batch []blockWrite
	add := func(w blockWrite) error {
		batch = append(batch, w)
		if len(batch) < writeBatchBlocks {
			return nil
		}
		err := e.commit(ctx, id, off, n, batch)
		batch = batch[:0]
		return err
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
			err := e.walkRange(ctx, id, b, bEnd, func(bv blockVal) error {
				return add(blockWrite{b: bv.b})
			})
			if err != nil {
				return err
			}
			hi = int64(bEnd) * BlockSize
		default:
			// Read-modify-write of a partial block; the lineage lock
			// keeps the block from changing underneath.
			buf := make([]byte, BlockSize)
			if err := e.ReadAt(ctx, id, buf, bs); err != nil {
				return err
			}
			if src != nil {
				copy(buf[pos-bs:hi-bs], src[pos-off:])
			} else {
				clear(buf[pos-bs : hi-bs])
			}
			if err := add(blockWrite{b: b, data: buf}); err != nil {
				return err
			}
		}
		pos = hi
	}
	if len(batch) > 0 {
		return e.commit(ctx, id, off, n, batch)
	}
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
// first, then one metadata transaction pointing the head at them.
func (e *Engine) commit(ctx context.Context, id ID, off, n int64, batch []blockWrite) error {
	for i := range batch {
		w := &batch[i]
		if w.data != nil && !isZero(w.data) {
			w.val = value{nonZero: true, ref: chunks.Sum(w.data)}
		}
	}
	for attempt := 0; ; attempt++ {
		locs, err := e.storeMissing(ctx, batch)
		if err != nil {
			return err
		}
		err = e.meta.Update(ctx, func(tx meta.Tx) error {
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
			r := newTxReader(tx)
			for _, w := range batch {
				if err := setBlock(r, v.lin, v.gen, w.b, w.val, locs); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, errChunkVanished) && attempt < 3 {
			continue
		}
		return err
	}
}

// storeMissing writes the chunks of the batch that the index does not hold
// yet and returns their new locations.
func (e *Engine) storeMissing(ctx context.Context, batch []blockWrite) (map[chunks.Ref]chunks.Location, error) {
	var missing []chunks.Chunk
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		missing = missing[:0]
		seen := make(map[chunks.Ref]bool)
		for _, w := range batch {
			if !w.val.nonZero || seen[w.val.ref] {
				continue
			}
			seen[w.val.ref] = true
			_, ok, err := getChunk(tx, w.val.ref)
			if err != nil {
				return err
			}
			if !ok {
				missing = append(missing, chunks.Chunk{Ref: w.val.ref, Data: w.data})
			}
		}
		return nil
	})
	if err != nil || len(missing) == 0 {
		return nil, err
	}
	locs, err := e.chunks.Put(ctx, missing)
	if err != nil {
		return nil, err
	}
	out := make(map[chunks.Ref]chunks.Location, len(missing))
	for i, c := range missing {
		out[c.Ref] = locs[i]
	}
	return out, nil
}

// setBlock points block b of lineage l's head generation at val.
func setBlock(r *txReader, l LineageID, head Generation, b uint64, val value, fresh map[chunks.Ref]chunks.Location) error {
	cur, eg, ok, err := r.entry(l, b, head)
	if err != nil {
		return err
	}
	if !ok {
		if cur, err = r.value(l, head, b); err != nil {
			return err
		}
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
	if err := incref(r.tx, val, fresh); err != nil {
		return err
	}
	return r.tx.Put(mapKey(l, b, head), val.encode())
}

func incref(tx meta.Tx, v value, fresh map[chunks.Ref]chunks.Location) error {
	if !v.nonZero {
		return nil
	}
	ce, ok, err := getChunk(tx, v.ref)
	if err != nil {
		return err
	}
	if !ok {
		loc, have := fresh[v.ref]
		if !have {
			return errChunkVanished
		}
		ce.Locations = []zoneLocation{{Zone: 0, Location: loc}}
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
