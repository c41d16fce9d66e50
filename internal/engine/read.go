package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// value is what a block holds: zero, or the chunk with ref.
type value struct {
	nonZero bool
	ref     chunks.Ref
}

func (v value) encode() []byte {
	if !v.nonZero {
		return []byte{}
	}
	return append([]byte(nil), v.ref[:]...)
}

func decodeValue(b []byte) (value, error) {
	switch len(b) {
	case 0:
		return value{}, nil
	case len(chunks.Ref{}):
		v := value{nonZero: true}
		copy(v.ref[:], b)
		return v, nil
	}
	return value{}, fmt.Errorf("%w: block map value of %d bytes", ErrCorrupt, len(b))
}

var errStop = errors.New("stop")

// txReader answers block lookups in one transaction, caching lineage records.
type txReader struct {
	tx   meta.Tx
	lins map[LineageID]lineageRecord
}

func newTxReader(tx meta.Tx) *txReader {
	return &txReader{tx: tx, lins: make(map[LineageID]lineageRecord)}
}

func (r *txReader) lineage(l LineageID) (lineageRecord, error) {
	if rec, ok := r.lins[l]; ok {
		return rec, nil
	}
	rec, err := getLineage(r.tx, l)
	if err == nil {
		r.lins[l] = rec
	}
	return rec, err
}

// entry returns the newest map entry of block b in lineage l at or below
// generation g, if there is one: a single forward seek.
func (r *txReader) entry(l LineageID, b uint64, g Generation) (v value, eg Generation, ok bool, err error) {
	err = r.tx.Scan(mapKey(l, b, g), mapBlockPrefix(l, b+1), func(k, val []byte) error {
		_, _, eg, err = decodeMapKey(k)
		if err != nil {
			return err
		}
		v, err = decodeValue(val)
		if err != nil {
			return err
		}
		ok = true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return v, eg, ok, err
}

// value resolves block b of lineage l at generation g, falling through to
// the base lineage for blocks this one never wrote.
func (r *txReader) value(l LineageID, g Generation, b uint64) (value, error) {
	for {
		v, _, ok, err := r.entry(l, b, g)
		if err != nil || ok {
			return v, err
		}
		rec, err := r.lineage(l)
		if err != nil {
			return value{}, err
		}
		if rec.Base == 0 || int64(b) >= rec.BaseSize/BlockSize {
			return value{}, nil
		}
		l, g = rec.Base, rec.BaseGen
	}
}

// locations returns where the chunk's copies lie, one per zone holding it.
func (r *txReader) locations(ref chunks.Ref) ([]zoneLocation, error) {
	e, ok, err := getChunk(r.tx, ref)
	if err != nil {
		return nil, err
	}
	if !ok || len(e.Locations) == 0 {
		return nil, fmt.Errorf("%w: chunk %s is referenced but not stored", ErrCorrupt, ref)
	}
	return e.Locations, nil
}

// blockRead is one block of a read plan: zero, or a chunk and its copies.
type blockRead struct {
	b    uint64
	val  value
	locs []zoneLocation
}

// plan resolves blocks [b0, b1) of an image in one consistent view.
func (e *Engine) plan(ctx context.Context, id ID, b0, b1 uint64, check func(view) error) ([]blockRead, error) {
	var out []blockRead
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		out = out[:0]
		v, err := openView(tx, id)
		if err != nil {
			return err
		}
		if err := check(v); err != nil {
			return err
		}
		r := newTxReader(tx)
		for b := b0; b < b1; b++ {
			val, err := r.value(v.lin, v.gen, b)
			if err != nil {
				return err
			}
			br := blockRead{b: b, val: val}
			if val.nonZero {
				if br.locs, err = r.locations(val.ref); err != nil {
					return err
				}
			}
			out = append(out, br)
		}
		return nil
	})
	return out, err
}

// readBlocksMax bounds the blocks one ReadAt resolves per transaction.
const readBlocksMax = 64

// ReadAt reads len(p) bytes at off from a volume or snapshot. Both must be
// multiples of 512 and inside the image.
func (e *Engine) ReadAt(ctx context.Context, id ID, p []byte, off int64) error {
	n := int64(len(p))
	for done := int64(0); done < n; {
		pos := off + done
		b0 := uint64(pos / BlockSize)
		end := min(off+n, (int64(b0)+readBlocksMax)*BlockSize)
		if err := e.readSpan(ctx, id, p[done:done+(end-pos)], pos); err != nil {
			return err
		}
		done += end - pos
	}
	if n == 0 {
		// Still report a bad ID, alignment or range for empty reads.
		return e.readSpan(ctx, id, p, off)
	}
	return nil
}

func (e *Engine) readSpan(ctx context.Context, id ID, p []byte, off int64) error {
	n := int64(len(p))
	b0, b1 := uint64(off/BlockSize), uint64((off+n+BlockSize-1)/BlockSize)
	// A compaction may move a chunk between planning and reading; the
	// second plan sees its new location.
	for attempt := 0; ; attempt++ {
		plan, err := e.plan(ctx, id, b0, b1, func(v view) error { return checkRange(off, n, v.size) })
		if err != nil {
			return err
		}
		err = e.fill(ctx, plan, p, off)
		if errors.Is(err, chunks.ErrNotFound) && attempt < 2 {
			continue
		}
		return err
	}
}

// fill copies the planned blocks' bytes for [off, off+len(p)) into p.
func (e *Engine) fill(ctx context.Context, plan []blockRead, p []byte, off int64) error {
	var buf []byte
	for _, br := range plan {
		bs := int64(br.b) * BlockSize
		lo, hi := max(bs, off), min(bs+BlockSize, off+int64(len(p)))
		dst := p[lo-off : hi-off]
		if !br.val.nonZero {
			clear(dst)
			continue
		}
		if err := e.readBlock(ctx, br, dst, int(lo-bs), &buf); err != nil {
			return fmt.Errorf("block %d: %w", br.b, err)
		}
	}
	return nil
}

// readBlock copies bytes [at, at+len(dst)) of a planned non-zero block
// into dst: from the block cache, or from the chunk's copies (which then
// enter the cache). scratch is a buffer for whole chunks, kept across
// calls.
func (e *Engine) readBlock(ctx context.Context, br blockRead, dst []byte, at int, scratch *[]byte) error {
	load := func() ([]byte, error) {
		buf, err := e.readChunk(ctx, br.val.ref, br.locs, (*scratch)[:0])
		if err != nil {
			return nil, err
		}
		*scratch = buf
		if len(buf) != BlockSize {
			return nil, fmt.Errorf("%w: chunk %s holds %d bytes, want %d", ErrCorrupt, br.val.ref, len(buf), BlockSize)
		}
		return buf, nil
	}
	if e.cache == nil {
		buf, err := load()
		if err != nil {
			return err
		}
		copy(dst, buf[at:])
		return nil
	}
	return e.cache.read(ctx, br.val.ref, dst, at, load)
}

var zeroBlock = make([]byte, BlockSize)

func isZero(p []byte) bool {
	for len(p) >= BlockSize {
		if !bytes.Equal(p[:BlockSize], zeroBlock) {
			return false
		}
		p = p[BlockSize:]
	}
	return bytes.Equal(p, zeroBlock[:len(p)])
}
