package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Replication. An image whose placement names zones that may lack some of
// its chunks (a zone-redundant snapshot of a locally-redundant volume, say)
// is created at once with a pending mark; Replicate later copies the
// missing chunks and clears the mark. Writes never leave work behind: a
// volume's writes go to every zone of its placement before they commit.

func isPending(tx meta.Tx, id ID) (bool, error) {
	_, err := tx.Get(pendingKey(id))
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// markPending marks image id, made from src and placed in zones, as
// awaiting replication unless src guarantees that all of its chunks are in
// every one of those zones already.
func markPending(tx meta.Tx, src view, id ID, zones []zoneID) error {
	srcPending, err := isPending(tx, src.id)
	if err != nil {
		return err
	}
	if !srcPending && covers(src.zones, zones) {
		return nil
	}
	return tx.Put(pendingKey(id), nil)
}

// Place changes an image's placement. Zones it adds are filled in the
// background: the image is pending until every one of them holds all of
// its chunks, and a volume's writes go to the new zones from now on. Zones
// it drops keep their copies (they cost space, not correctness). It copies
// nothing itself.
func (e *Engine) Place(ctx context.Context, id ID, zones ...string) error {
	err := e.meta.Update(ctx, func(tx meta.Tx) error { return e.PlaceTx(tx, id, zones...) })
	if err == nil {
		e.Kick()
	}
	return err
}

// PlaceTx is [Engine.Place] inside the caller's transaction. It touches
// only tx, so the caller's closure may run it more than once; once tx has
// committed, the caller calls [Engine.Kick].
func (e *Engine) PlaceTx(tx meta.Tx, id ID, zones ...string) error {
	if len(zones) == 0 {
		return fmt.Errorf("%w: a placement names at least one zone", ErrNoZone)
	}
	v, err := openView(tx, id)
	if err != nil {
		return err
	}
	zs, err := e.zones.resolve(zones, nil)
	if err != nil {
		return err
	}
	if slices.Equal(zs, v.zones) {
		return nil
	}
	if v.kind == KindVolume {
		v.rec.Zones, v.rec.Rezoned = zs, true
		err = putJSON(tx, lineageKey(v.lin), v.rec)
	} else {
		var img imageRecord
		if img, err = getImage(tx, id); err == nil {
			img.Zones = zs
			err = putJSON(tx, imageKey(id), img)
		}
	}
	if err != nil {
		return err
	}
	return markPending(tx, v, id, zs)
}

// Kick wakes the replication loop (see [Engine.ReplicationNeeded]). Call it
// after committing a transaction in which SnapshotTx, CloneTx, FreezeTx or
// PlaceTx ran: it belongs after the commit because a closure may run more
// than once, and a kick for a transaction that then failed would only wake
// the loop for nothing. The plain forms kick by themselves.
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// ReplicationNeeded receives a value when an image has become pending, so
// that a background loop can call Replicate without polling.
func (e *Engine) ReplicationNeeded() <-chan struct{} { return e.kick }

// PendingImages counts the images awaiting replication.
func (e *Engine) PendingImages(ctx context.Context) (int, error) {
	n := 0
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		n = 0
		return tx.Scan([]byte{prefixPending}, []byte{prefixPending + 1}, func(_, _ []byte) error {
			n++
			return nil
		})
	})
	return n, err
}

// ReplicatedBytes is how many chunk bytes replication has copied between
// zones since Open (scrub repairs included).
func (e *Engine) ReplicatedBytes() int64 { return e.replicated.Load() }

// Replicate copies into each pending image's zones the chunks they lack,
// then clears its pending mark. A snapshot whose lineage has an earlier,
// fully replicated snapshot in the same zones moves only the blocks that
// changed since that one. It returns how many images it finished; an
// image that fails stays pending for the next call, and the first error is
// returned after the others were tried.
func (e *Engine) Replicate(ctx context.Context) (int, error) {
	var ids []ID
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		ids = ids[:0]
		return tx.Scan([]byte{prefixPending}, []byte{prefixPending + 1}, func(k, _ []byte) error {
			id, err := decodeIDKey(k, prefixPending)
			ids = append(ids, ID(id))
			return err
		})
	})
	if err != nil {
		return 0, err
	}
	done := 0
	var first error
	for _, id := range ids {
		err := e.replicateImage(ctx, id)
		if err == nil {
			done++
			continue
		}
		if ctx.Err() != nil {
			return done, ctx.Err()
		}
		e.log.Warn("replication failed; will retry", "image", id, "err", err)
		if first == nil {
			first = fmt.Errorf("image %d: %w", id, err)
		}
	}
	return done, first
}

// replicateBatch bounds the chunks one replication step reads and writes.
const replicateBatch = 64

func (e *Engine) replicateImage(ctx context.Context, id ID) error {
	var (
		zones []zoneID
		base  ID
		gone  bool
	)
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		v, err := openView(tx, id)
		if errors.Is(err, ErrNotFound) {
			gone = true
			return nil
		}
		if err != nil {
			return err
		}
		zones = v.zones
		if v.kind == KindSnapshot {
			base, err = replicatedBefore(tx, v)
		}
		return err
	})
	if err != nil {
		return err
	}
	var refs []chunks.Ref
	seen := make(map[chunks.Ref]bool)
	progress := new(atomic.Int64) // per mille of the work done
	e.progress.Store(id, progress)
	defer e.progress.Delete(id)
	add := func(bv blockVal) error {
		if seen[bv.val.ref] {
			return nil
		}
		seen[bv.val.ref] = true
		if refs = append(refs, bv.val.ref); len(refs) < replicateBatch {
			return nil
		}
		err := e.place(ctx, refs, zones)
		refs = refs[:0]
		return err
	}
	walkAll := func() error {
		size, err := e.imageSize(ctx, id)
		if err != nil {
			return err
		}
		return e.walkAllocated(ctx, id, func(bv blockVal) error {
			progress.Store(int64(bv.b) * BlockSize * 1000 / size)
			return add(bv)
		})
	}
	switch {
	case gone:
		return nil // Delete removed the pending mark with the image
	case base != 0:
		// Only blocks changed since a snapshot whose chunks are placed.
		var ext []Extent
		if ext, err = e.Diff(ctx, base, id); err == nil {
			for i, x := range ext {
				if x.Cleared {
					continue
				}
				b0, b1 := uint64(x.Offset/BlockSize), uint64((x.Offset+x.Length+BlockSize-1)/BlockSize)
				if err = e.walkRange(ctx, id, b0, b1, add); err != nil {
					break
				}
				progress.Store(int64(1000 * i / len(ext)))
			}
		}
		if errors.Is(err, ErrNotFound) && e.exists(ctx, id) {
			err = walkAll() // the base was deleted meanwhile
		}
	default:
		err = walkAll()
	}
	if err == nil && len(refs) > 0 {
		err = e.place(ctx, refs, zones)
	}
	if errors.Is(err, ErrNotFound) && !e.exists(ctx, id) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	return e.meta.Update(ctx, func(tx meta.Tx) error {
		// A placement widened meanwhile (Place) needs another run; an
		// image deleted meanwhile took its pending mark with it.
		v, err := openView(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil || !slices.Equal(v.zones, zones) {
			return err
		}
		return tx.Delete(pendingKey(id))
	})
}

// exists reports whether an image is still there (an error reading the
// store counts as yes, so that nothing is taken as done on a failure).
func (e *Engine) exists(ctx context.Context, id ID) bool {
	_, err := e.Stat(ctx, id)
	return !errors.Is(err, ErrNotFound)
}

// replicationPercent is how far the replication of a pending image has
// come, as far as this process knows (0 until it starts).
func (e *Engine) replicationPercent(id ID) float64 {
	if p, ok := e.progress.Load(id); ok {
		return float64(p.(*atomic.Int64).Load()) / 10
	}
	return 0
}

// replicatedBefore returns the newest earlier snapshot of v's lineage that
// is not pending and whose placement includes v's, or 0. It reads the
// lineage's snapshot index: O(snapshots of the lineage).
func replicatedBefore(tx meta.Tx, v view) (ID, error) {
	var earlier []ID
	err := tx.Scan(snapKey(v.lin, 0), snapKey(v.lin, v.gen), func(_, val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("%w: snapshot index value %x", ErrCorrupt, val)
		}
		earlier = append(earlier, ID(binary.BigEndian.Uint64(val)))
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range slices.Backward(earlier) {
		img, err := getImage(tx, id)
		if err != nil {
			return 0, err
		}
		if !covers(img.Zones, v.zones) {
			continue
		}
		if pending, err := isPending(tx, id); err != nil || !pending {
			return id, err
		}
	}
	return 0, nil
}

// place copies each chunk into the zones of want whose copy the index
// lacks, reading it from a zone that has one.
func (e *Engine) place(ctx context.Context, refs []chunks.Ref, want []zoneID) error {
	type src struct {
		ref  chunks.Ref
		locs []zoneLocation
	}
	var todo []src
	need := make(map[zoneID][]int)
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		todo = todo[:0]
		clear(need)
		for _, ref := range refs {
			ce, ok, err := getChunk(tx, ref)
			if err != nil {
				return err
			}
			if !ok {
				continue // collected meanwhile: no block holds it any more
			}
			i, missing := len(todo), false
			for _, z := range want {
				if !ce.hasZone(z) {
					need[z] = append(need[z], i)
					missing = true
				}
			}
			if missing {
				todo = append(todo, src{ref, ce.Locations})
			}
		}
		return nil
	})
	if err != nil || len(need) == 0 {
		return err
	}
	data := make([][]byte, len(todo))
	for i, t := range todo {
		if data[i], err = e.readChunk(ctx, t.ref, t.locs, nil); err != nil {
			if errors.Is(err, errGone) {
				continue // collected meanwhile
			}
			return fmt.Errorf("reading chunk %s to replicate it: %w", t.ref, err)
		}
	}
	put := make(map[zoneID][]chunks.Chunk)
	var bytes int64
	for z, idx := range need {
		for _, i := range idx {
			if data[i] != nil {
				put[z] = append(put[z], chunks.Chunk{Ref: todo[i].ref, Data: data[i]})
				bytes += int64(len(data[i]))
			}
		}
	}
	fresh, err := e.putZones(ctx, put)
	if err != nil {
		return err
	}
	e.replicated.Add(bytes)
	return e.addLocations(ctx, fresh)
}

// addLocations records new copies in the index, for chunks still indexed
// and still lacking a copy in that zone; a chunk collected meanwhile
// leaves its new copy as garbage for GC.
func (e *Engine) addLocations(ctx context.Context, fresh map[zoneID]map[chunks.Ref]chunks.Location) error {
	return e.meta.Update(ctx, func(tx meta.Tx) error {
		for z, m := range fresh {
			for ref, loc := range m {
				ce, ok, err := getChunk(tx, ref)
				if err != nil {
					return err
				}
				if !ok || ce.hasZone(z) {
					continue
				}
				ce.Locations = append(ce.Locations, zoneLocation{Zone: z, Location: loc})
				if err := tx.Put(chunkKey(ref), ce.marshal()); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
