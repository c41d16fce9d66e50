package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Extent is a run of 512-byte-aligned bytes of an image.
type Extent struct {
	Offset int64
	Length int64
	// Cleared marks a run that became zero (a diff's ClearRange); other
	// runs hold data.
	Cleared bool
}

// blockVal is a block's resolved content.
type blockVal struct {
	b   uint64
	val value
}

// decided lists, for blocks in [b0, b1), the value of every block that
// lineage l or its bases hold an entry for at generation g (zero entries
// included, so that they hide the base), in block order.
func (r *txReader) decided(l LineageID, g Generation, b0, b1 uint64) ([]blockVal, error) {
	var own []blockVal
	last, have := uint64(0), false
	err := r.tx.Scan(mapBlockPrefix(l, b0), mapBlockPrefix(l, b1), func(k, v []byte) error {
		_, b, eg, err := decodeMapKey(k)
		if err != nil {
			return err
		}
		if eg > g || (have && b == last) {
			return nil
		}
		val, err := decodeValue(v)
		if err != nil {
			return err
		}
		own = append(own, blockVal{b: b, val: val})
		last, have = b, true
		return nil
	})
	if err != nil {
		return nil, err
	}
	rec, err := r.lineage(l)
	if err != nil {
		return nil, err
	}
	baseEnd := uint64(rec.BaseSize / BlockSize)
	if rec.Base == 0 || b0 >= baseEnd {
		return own, nil
	}
	base, err := r.decided(rec.Base, rec.BaseGen, b0, min(b1, baseEnd))
	if err != nil {
		return nil, err
	}
	// Merge: the lineage's own entries hide its base's.
	out := make([]blockVal, 0, len(own)+len(base))
	i, j := 0, 0
	for i < len(own) || j < len(base) {
		switch {
		case j == len(base) || (i < len(own) && own[i].b < base[j].b):
			out = append(out, own[i])
			i++
		case i == len(own) || base[j].b < own[i].b:
			out = append(out, base[j])
			j++
		default:
			out = append(out, own[i])
			i++
			j++
		}
	}
	return out, nil
}

// allocated lists the non-zero blocks of [b0, b1) at generation g.
func (r *txReader) allocated(l LineageID, g Generation, b0, b1 uint64) ([]blockVal, error) {
	d, err := r.decided(l, g, b0, b1)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(d, func(bv blockVal) bool { return !bv.val.nonZero }), nil
}

// windowBlocks bounds the blocks one allocation scan covers (4 GiB), so
// walking a huge image holds one window's entries in memory at a time.
const windowBlocks = 1 << 16

// Allocated returns the runs of an image that hold data (Azure's page
// ranges), in order. Its cost is proportional to the map entries of the
// image's lineage and bases, not to the image's size.
func (e *Engine) Allocated(ctx context.Context, id ID) ([]Extent, error) {
	var out []Extent
	err := e.walkAllocated(ctx, id, func(bv blockVal) error {
		out = appendExtent(out, bv.b, false)
		return nil
	})
	return out, err
}

// walkAllocated calls fn for each non-zero block of an image, in order,
// one window per transaction.
func (e *Engine) walkAllocated(ctx context.Context, id ID, fn func(blockVal) error) error {
	var size int64
	if err := e.meta.View(ctx, func(tx meta.Tx) error {
		v, err := openView(tx, id)
		size = v.size
		return err
	}); err != nil {
		return err
	}
	return e.walkRange(ctx, id, 0, uint64(size/BlockSize), fn)
}

// walkRange calls fn for each non-zero block in [b0, b1) of an image.
func (e *Engine) walkRange(ctx context.Context, id ID, b0, b1 uint64, fn func(blockVal) error) error {
	for w := b0; w < b1; w += windowBlocks {
		var win []blockVal
		err := e.meta.View(ctx, func(tx meta.Tx) error {
			v, err := openView(tx, id)
			if err != nil {
				return err
			}
			win, err = newTxReader(tx).allocated(v.lin, v.gen, w, min(w+windowBlocks, b1))
			return err
		})
		if err != nil {
			return err
		}
		for _, bv := range win {
			if err := fn(bv); err != nil {
				return err
			}
		}
	}
	return nil
}

func appendExtent(out []Extent, b uint64, cleared bool) []Extent {
	off := int64(b) * BlockSize
	if n := len(out); n > 0 && out[n-1].Cleared == cleared && out[n-1].Offset+out[n-1].Length == off {
		out[n-1].Length += BlockSize
		return out
	}
	return append(out, Extent{Offset: off, Length: BlockSize, Cleared: cleared})
}

// Diff returns the runs that differ between from and to, two images of one
// lineage with from no newer than to: runs with new data, and runs that
// became zero (Cleared). A zero from means "an empty image": the result is
// then to's allocated runs. Its cost is proportional to the blocks changed
// in the generations between the two, never to the image's size.
func (e *Engine) Diff(ctx context.Context, from, to ID) ([]Extent, error) {
	if from == 0 {
		return e.Allocated(ctx, to)
	}
	var out []Extent
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		out = nil
		a, err := openView(tx, from)
		if err != nil {
			return err
		}
		b, err := openView(tx, to)
		if err != nil {
			return err
		}
		if a.lin != b.lin {
			return fmt.Errorf("%w: image %d is of lineage %d, image %d of lineage %d", ErrNotSameLineage, from, a.lin, to, b.lin)
		}
		if a.gen > b.gen {
			return fmt.Errorf("%w: image %d (generation %d) is newer than image %d (generation %d)", ErrOrder, from, a.gen, to, b.gen)
		}
		changed, err := changedBetween(tx, a.lin, a.gen, b.gen)
		if err != nil {
			return err
		}
		r := newTxReader(tx)
		aBlocks := uint64(a.size / BlockSize)
		for _, blk := range changed {
			va := value{}
			if blk < aBlocks {
				if va, err = r.value(a.lin, a.gen, blk); err != nil {
					return err
				}
			}
			vb, err := r.value(b.lin, b.gen, blk)
			if err != nil {
				return err
			}
			if va != vb {
				out = appendExtent(out, blk, !vb.nonZero)
			}
		}
		return nil
	})
	return out, err
}

// changedBetween returns the sorted, distinct blocks in the changed sets of
// generations (ga, gb] of lineage l.
func changedBetween(tx meta.Tx, l LineageID, ga, gb Generation) ([]uint64, error) {
	var blocks []uint64
	err := tx.Scan(changedGenPrefix(l, ga+1), changedGenPrefix(l, gb+1), func(k, _ []byte) error {
		_, _, b, err := decodeChangedKey(k)
		blocks = append(blocks, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(blocks)
	return slices.Compact(blocks), nil
}

// Fingerprint digests the first size bytes of an image (a multiple of the
// block size) from its block map: the size, then each block holding data
// with its chunk's BLAKE3 ref. Images with equal bytes have equal
// fingerprints whatever their history, since refs are content hashes and
// zero blocks are left out; its cost is O(blocks holding data), not
// O(size), so verifying a copy of a large sparse disk reads no data.
func (e *Engine) Fingerprint(ctx context.Context, id ID, size int64) ([32]byte, error) {
	if size%BlockSize != 0 || size < 0 {
		return [32]byte{}, fmt.Errorf("%w: fingerprint of %d bytes (a multiple of %d)", ErrUnaligned, size, BlockSize)
	}
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(size)))
	var rec [8 + len(chunks.Ref{})]byte
	err := e.walkRange(ctx, id, 0, uint64(size/BlockSize), func(bv blockVal) error {
		binary.BigEndian.PutUint64(rec[:8], bv.b)
		copy(rec[8:], bv.val.ref[:])
		h.Write(rec[:])
		return nil
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}
