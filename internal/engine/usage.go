package engine

import (
	"context"
	"errors"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// Usage is an image's space accounting.
type Usage struct {
	// Size is the image's logical size.
	Size int64
	// Allocated is the bytes of blocks that hold data.
	Allocated int64
	// Changed is the bytes of blocks this generation changed from the
	// previous live one (for a volume, since its last snapshot).
	Changed int64
	// Exclusive is the bytes of blocks that deleting the image would drop
	// (nothing later reads them), and ExclusiveStored the chunk bytes that
	// would then be freed (chunks no other block holds).
	Exclusive       int64
	ExclusiveStored int64
}

// Usage returns an image's space accounting. Allocated costs a walk of the
// lineage's map entries; the rest costs the blocks of its own generation.
func (e *Engine) Usage(ctx context.Context, id ID) (Usage, error) {
	var u Usage
	err := e.walkAllocated(ctx, id, func(blockVal) error {
		u.Allocated += BlockSize
		return nil
	})
	if err != nil {
		return u, err
	}
	err = e.meta.View(ctx, func(tx meta.Tx) error {
		v, err := openView(tx, id)
		if err != nil {
			return err
		}
		u.Size = v.size
		shared := v.kind == KindSnapshot
		if shared {
			refs, _, err := getGenRefs(tx, v.lin, v.gen)
			if err != nil {
				return err
			}
			// Other snapshots or clones hold the generation: deleting this
			// one image frees nothing.
			shared = refs > 1
		}
		var next Generation
		hasNext := false
		if v.kind == KindSnapshot {
			if next, hasNext, err = nextLive(tx, v.lin, v.gen, v.rec); err != nil {
				return err
			}
		}
		return tx.Scan(changedGenPrefix(v.lin, v.gen), changedGenPrefix(v.lin, v.gen+1), func(k, _ []byte) error {
			_, _, b, err := decodeChangedKey(k)
			if err != nil {
				return err
			}
			u.Changed += BlockSize
			if shared {
				return nil
			}
			if hasNext {
				_, err := tx.Get(mapKey(v.lin, b, next))
				if errors.Is(err, meta.ErrNotFound) {
					return nil // the next generation inherits it
				}
				if err != nil {
					return err
				}
			}
			raw, err := tx.Get(mapKey(v.lin, b, v.gen))
			if err != nil {
				return err
			}
			val, err := decodeValue(raw)
			if err != nil || !val.nonZero {
				return err
			}
			u.Exclusive += BlockSize
			ce, ok, err := getChunk(tx, val.ref)
			if err != nil || !ok {
				return err
			}
			if ce.Refs == 1 && len(ce.Locations) > 0 {
				u.ExclusiveStored += int64(ce.Locations[0].Length)
			}
			return nil
		})
	})
	return u, err
}
