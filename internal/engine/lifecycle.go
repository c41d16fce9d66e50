package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// Operations in a caller's transaction. Each metadata-only operation has a
// form that takes a [meta.Tx] (CreateVolumeTx, SnapshotTx, CloneTx,
// FreezeTx, GrowTx, PlaceTx, DeleteTx), so that a caller can check its own
// rules and write its own records in the same commit; the plain form is
// that one call in a transaction of its own.
//
// The caller's closure may run more than once (see [meta.Store.Update]),
// so these forms read and write only tx: they change no engine memory that
// a discarded run would leave changed, and a run's results (IDs, a
// [Release]) are valid only if that run's transaction commits. What must
// happen after the commit is the caller's: [Engine.Kick] after SnapshotTx,
// CloneTx, FreezeTx or PlaceTx, [Engine.Collect] after DeleteTx.
//
// No engine lock is held around them. None is needed: a snapshot and a
// write to its volume are each one transaction, and the store serializes
// transactions, so a write commits wholly into the generation that the
// snapshot seals or wholly into the next one (the write's commit reads
// the head inside its own transaction). The engine's own locks stay out of
// the caller's transaction: the per-lineage lock of collection is taken by
// Collect, after the commit, and the striped locks of partial-block writes
// only by WriteAtIf and ZeroIf, around their own commit.

// CreateVolume creates an empty (all-zero) volume of size bytes, a positive
// multiple of 1 MiB, whose writes go to the named zones (by default the
// first configured zone).
func (e *Engine) CreateVolume(ctx context.Context, size int64, zones ...string) (ID, error) {
	var id ID
	err := e.meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		id, err = e.CreateVolumeTx(tx, size, zones...)
		return err
	})
	return id, err
}

// CreateVolumeTx is [Engine.CreateVolume] inside the caller's transaction.
// It touches only tx, so the caller's closure may run it more than once;
// the ID is valid if tx commits.
func (e *Engine) CreateVolumeTx(tx meta.Tx, size int64, zones ...string) (ID, error) {
	if err := checkSize(size); err != nil {
		return 0, err
	}
	zs, err := e.zones.resolve(zones, e.zones.order[:1])
	if err != nil {
		return 0, err
	}
	return newVolume(tx, lineageRecord{Head: 1, Size: size, Zones: zs})
}

// newVolume allocates a volume and its lineage from rec.
func newVolume(tx meta.Tx, rec lineageRecord) (ID, error) {
	vid, err := nextID(tx)
	if err != nil {
		return 0, err
	}
	lid, err := nextID(tx)
	if err != nil {
		return 0, err
	}
	rec.Volume = ID(vid)
	if err := putJSON(tx, lineageKey(LineageID(lid)), rec); err != nil {
		return 0, err
	}
	return ID(vid), putJSON(tx, imageKey(ID(vid)), imageRecord{Kind: KindVolume, Lineage: LineageID(lid)})
}

// Snapshot seals a volume's head generation as a new snapshot and opens the
// next one. It copies nothing: its cost does not depend on the volume's
// size or on what was written. The snapshot is placed in the named zones,
// by default the volume's; zones that do not yet hold all of its chunks
// are filled in the background (see [Engine.Replicate]).
func (e *Engine) Snapshot(ctx context.Context, vol ID, zones ...string) (ID, error) {
	var id ID
	err := e.meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		id, err = e.SnapshotTx(tx, vol, zones...)
		return err
	})
	if err == nil {
		e.Kick()
	}
	return id, err
}

// SnapshotTx is [Engine.Snapshot] inside the caller's transaction. It
// touches only tx, so the caller's closure may run it more than once; the
// ID is valid if tx commits, and the caller then calls [Engine.Kick].
func (e *Engine) SnapshotTx(tx meta.Tx, vol ID, zones ...string) (ID, error) {
	v, err := openView(tx, vol)
	if err != nil {
		return 0, err
	}
	if v.kind != KindVolume {
		return 0, fmt.Errorf("%w: image %d is a snapshot; snapshots are taken of volumes", ErrWrongKind, vol)
	}
	zs, err := e.zones.resolve(zones, v.zones)
	if err != nil {
		return 0, err
	}
	g, err := sealHead(tx, v.lin, v.rec)
	if err != nil {
		return 0, err
	}
	sid, err := nextID(tx)
	if err != nil {
		return 0, err
	}
	id := ID(sid)
	if err := putSnapshot(tx, id, imageRecord{Kind: KindSnapshot, Lineage: v.lin, Gen: g, Size: v.size, Zones: zs}); err != nil {
		return 0, err
	}
	return id, markPending(tx, v, id, zs)
}

// sealHead turns the head generation into a sealed one with one reference
// and opens the next.
func sealHead(tx meta.Tx, l LineageID, rec lineageRecord) (Generation, error) {
	g := rec.Head
	if err := putGenRefs(tx, l, g, 1); err != nil {
		return 0, err
	}
	rec.Head++
	return g, putJSON(tx, lineageKey(l), rec)
}

// Clone creates a volume of size bytes (at least the source's) whose content
// is the source's: a snapshot, or a volume as it is now. It copies nothing;
// the clone reads through to the source's generation until it writes a
// block or is flattened. It is placed like Snapshot places a snapshot.
func (e *Engine) Clone(ctx context.Context, src ID, size int64, zones ...string) (ID, error) {
	var id ID
	err := e.meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		id, err = e.CloneTx(tx, src, size, zones...)
		return err
	})
	if err == nil {
		e.Kick()
	}
	return id, err
}

// CloneTx is [Engine.Clone] inside the caller's transaction. It touches
// only tx, so the caller's closure may run it more than once; the ID is
// valid if tx commits, and the caller then calls [Engine.Kick].
func (e *Engine) CloneTx(tx meta.Tx, src ID, size int64, zones ...string) (ID, error) {
	if err := checkSize(size); err != nil {
		return 0, err
	}
	v, err := openView(tx, src)
	if err != nil {
		return 0, err
	}
	zs, err := e.zones.resolve(zones, v.zones)
	if err != nil {
		return 0, err
	}
	if size < v.size {
		return 0, fmt.Errorf("%w: a clone of %d bytes cannot hold its source of %d", ErrBadSize, size, v.size)
	}
	g, err := holdGen(tx, v)
	if err != nil {
		return 0, err
	}
	id, err := newVolume(tx, lineageRecord{Head: 1, Size: size, Base: v.lin, BaseGen: g, BaseSize: v.size, Zones: zs})
	if err != nil {
		return 0, err
	}
	return id, markPending(tx, v, id, zs)
}

// Freeze makes an independent snapshot of src (a snapshot, or a volume as
// it is now) in a lineage of its own: a full snapshot, which no later change
// or deletion of its source affects and which shares no lineage (hence no
// diff) with it. It copies nothing, and is placed like Snapshot places a
// snapshot.
func (e *Engine) Freeze(ctx context.Context, src ID, zones ...string) (ID, error) {
	var id ID
	err := e.meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		id, err = e.FreezeTx(tx, src, zones...)
		return err
	})
	if err == nil {
		e.Kick()
	}
	return id, err
}

// FreezeTx is [Engine.Freeze] inside the caller's transaction. It touches
// only tx, so the caller's closure may run it more than once; the ID is
// valid if tx commits, and the caller then calls [Engine.Kick].
func (e *Engine) FreezeTx(tx meta.Tx, src ID, zones ...string) (ID, error) {
	v, err := openView(tx, src)
	if err != nil {
		return 0, err
	}
	zs, err := e.zones.resolve(zones, v.zones)
	if err != nil {
		return 0, err
	}
	g, err := holdGen(tx, v)
	if err != nil {
		return 0, err
	}
	lid, err := nextID(tx)
	if err != nil {
		return 0, err
	}
	l := LineageID(lid)
	// Generation 1 is sealed at once and read through to the source; the
	// lineage has no volume, so it lives as long as the snapshot.
	rec := lineageRecord{Head: 2, Size: v.size, Base: v.lin, BaseGen: g, BaseSize: v.size}
	if err := putJSON(tx, lineageKey(l), rec); err != nil {
		return 0, err
	}
	if err := putGenRefs(tx, l, 1, 1); err != nil {
		return 0, err
	}
	sid, err := nextID(tx)
	if err != nil {
		return 0, err
	}
	id := ID(sid)
	if err := putSnapshot(tx, id, imageRecord{Kind: KindSnapshot, Lineage: l, Gen: 1, Size: v.size, Zones: zs}); err != nil {
		return 0, err
	}
	return id, markPending(tx, v, id, zs)
}

// putSnapshot writes a snapshot's record and its entry in the lineage's
// snapshot index (one snapshot per sealed generation).
func putSnapshot(tx meta.Tx, id ID, img imageRecord) error {
	if err := putJSON(tx, imageKey(id), img); err != nil {
		return err
	}
	return tx.Put(snapKey(img.Lineage, img.Gen), put64(nil, uint64(id)))
}

// holdGen returns the generation a clone or a full snapshot of v reads
// through to, with a reference held for it: a volume's present state,
// sealed as an unnamed generation, or a snapshot's own generation.
func holdGen(tx meta.Tx, v view) (Generation, error) {
	if v.kind == KindVolume {
		return sealHead(tx, v.lin, v.rec)
	}
	return v.gen, addGenRef(tx, v.lin, v.gen)
}

func addGenRef(tx meta.Tx, l LineageID, g Generation) error {
	refs, ok, err := getGenRefs(tx, l, g)
	if err != nil {
		return err
	}
	if !ok || refs == 0 {
		return fmt.Errorf("%w: generation %d of lineage %d is not live", ErrCorrupt, g, l)
	}
	return putGenRefs(tx, l, g, refs+1)
}

// Grow enlarges a volume to size bytes; the new space reads as zeros.
func (e *Engine) Grow(ctx context.Context, vol ID, size int64) error {
	return e.meta.Update(ctx, func(tx meta.Tx) error { return e.GrowTx(tx, vol, size) })
}

// GrowTx is [Engine.Grow] inside the caller's transaction. It touches only
// tx, so the caller's closure may run it more than once.
func (e *Engine) GrowTx(tx meta.Tx, vol ID, size int64) error {
	if err := checkSize(size); err != nil {
		return err
	}
	v, err := openView(tx, vol)
	if err != nil {
		return err
	}
	if v.kind != KindVolume {
		return fmt.Errorf("%w: image %d is a snapshot", ErrReadOnly, vol)
	}
	if size < v.size {
		return fmt.Errorf("%w: volume %d is %d bytes; volumes grow only", ErrBadSize, vol, v.size)
	}
	v.rec.Size = size
	return putJSON(tx, lineageKey(v.lin), v.rec)
}

// Delete deletes a volume or a snapshot. Every other image reads exactly as
// before: a snapshot's blocks that a later generation still reads are moved
// into it, and a generation that clones read through stays until they no
// longer need it. The cost is proportional to the blocks changed in the
// deleted generation.
func (e *Engine) Delete(ctx context.Context, id ID) error {
	var r Release
	err := e.meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		r, err = e.DeleteTx(tx, id)
		return err
	})
	if err != nil {
		return err
	}
	return e.Collect(ctx, r)
}

// Release is what a deletion leaves to do once its transaction has
// committed: collecting the generation it left dying. [Engine.Open]
// resumes that work if the process stops first, so a lost Release costs
// nothing but the delay. The zero Release needs nothing.
type Release struct {
	lin LineageID
	gen Generation
}

// DeleteTx is [Engine.Delete] inside the caller's transaction, up to the
// collection: once tx has committed, the caller passes the Release to
// [Engine.Collect]. It touches only tx, so the caller's closure may run it
// more than once; keep the Release of the run whose transaction commits.
func (e *Engine) DeleteTx(tx meta.Tx, id ID) (Release, error) {
	v, err := openView(tx, id)
	if err != nil {
		return Release{}, err
	}
	if err := tx.Delete(imageKey(id)); err != nil {
		return Release{}, err
	}
	if err := tx.Delete(pendingKey(id)); err != nil {
		return Release{}, err
	}
	if v.kind == KindVolume {
		if err := tx.Delete(journalKey(id)); err != nil {
			return Release{}, err
		}
		// The head dies with the volume: mark it dying (no references)
		// and detach it from the lineage.
		v.rec.Volume = 0
		if err := putJSON(tx, lineageKey(v.lin), v.rec); err != nil {
			return Release{}, err
		}
		return Release{v.lin, v.gen}, putGenRefs(tx, v.lin, v.gen, 0)
	}
	if err := tx.Delete(snapKey(v.lin, v.gen)); err != nil {
		return Release{}, err
	}
	last, err := releaseGen(tx, v.lin, v.gen)
	if err != nil || !last {
		// A generation that clones still read stays: nothing to collect.
		return Release{}, err
	}
	return Release{v.lin, v.gen}, nil
}

// Collect does what a committed deletion left to do (see [Release]). It
// acts only on a generation that is dying in the store, so a Release whose
// transaction did not commit, or one collected already, is harmless.
func (e *Engine) Collect(ctx context.Context, r Release) error {
	if r == (Release{}) {
		return nil
	}
	return e.collect(ctx, r.lin, r.gen)
}

// releaseGen drops one reference to a sealed generation and reports whether
// it was the last; the generation then stays, marked dying (zero
// references), until collect has merged its entries away.
func releaseGen(tx meta.Tx, l LineageID, g Generation) (bool, error) {
	refs, ok, err := getGenRefs(tx, l, g)
	if err != nil {
		return false, err
	}
	if !ok || refs == 0 {
		return false, fmt.Errorf("%w: release of generation %d of lineage %d, which is not live", ErrCorrupt, g, l)
	}
	return refs == 1, putGenRefs(tx, l, g, refs-1)
}

// collectBatch bounds the blocks one collection transaction handles.
const collectBatch = 4096

// collect merges away generation g of lineage l if it is dying, then the
// lineage if nothing of it remains, then whatever base that frees. Every
// step is a transaction that leaves a readable state, and Open resumes an
// interrupted collection.
func (e *Engine) collect(ctx context.Context, l LineageID, g Generation) error {
	unlock := e.lock(l)
	defer unlock()
	for {
		var done, lineageDying bool
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			done, lineageDying = false, false
			refs, ok, err := getGenRefs(tx, l, g)
			if err != nil || !ok || refs > 0 {
				done = true
				return err
			}
			rec, err := getLineage(tx, l)
			if err != nil {
				return err
			}
			next, hasNext, err := nextLive(tx, l, g, rec)
			if err != nil {
				return err
			}
			var blocks []uint64
			err = tx.Scan(changedGenPrefix(l, g), changedGenPrefix(l, g+1), func(k, _ []byte) error {
				_, _, b, err := decodeChangedKey(k)
				blocks = append(blocks, b)
				if len(blocks) == collectBatch {
					return errStop
				}
				return err
			})
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
			for _, b := range blocks {
				if err := mergeUp(tx, l, g, b, next, hasNext); err != nil {
					return err
				}
			}
			if len(blocks) == collectBatch {
				return nil
			}
			done = true
			if err := tx.Delete(genKey(l, g)); err != nil {
				return err
			}
			if rec.Volume != 0 {
				return nil
			}
			if live, err := anyGen(tx, l); err != nil || live {
				return err
			}
			lineageDying = true
			rec.Dying = true
			return putJSON(tx, lineageKey(l), rec)
		})
		if err != nil {
			return err
		}
		if done {
			if lineageDying {
				return e.collectLineage(ctx, l)
			}
			return nil
		}
	}
}

// mergeUp removes block b's entry of dying generation g: the next live
// generation inherits it unless it holds its own entry for b.
func mergeUp(tx meta.Tx, l LineageID, g Generation, b uint64, next Generation, hasNext bool) error {
	k := mapKey(l, b, g)
	raw, err := tx.Get(k)
	if errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("%w: block %d of generation %d of lineage %d is in the changed set but not the map", ErrCorrupt, b, g, l)
	}
	if err != nil {
		return err
	}
	val, err := decodeValue(raw)
	if err != nil {
		return err
	}
	keep := hasNext
	if hasNext {
		_, err := tx.Get(mapKey(l, b, next))
		switch {
		case err == nil:
			keep = false // overwritten later: nobody reads this entry
		case !errors.Is(err, meta.ErrNotFound):
			return err
		}
	}
	if keep {
		if err := tx.Put(mapKey(l, b, next), val.encode()); err != nil {
			return err
		}
		if err := tx.Put(changedKey(l, next, b), nil); err != nil {
			return err
		}
	} else if err := decref(tx, val); err != nil {
		return err
	}
	if err := tx.Delete(k); err != nil {
		return err
	}
	return tx.Delete(changedKey(l, g, b))
}

// nextLive returns the first generation after g that something reads: a
// referenced sealed generation, else the head while the volume exists.
func nextLive(tx meta.Tx, l LineageID, g Generation, rec lineageRecord) (Generation, bool, error) {
	var next Generation
	found := false
	err := tx.Scan(genKey(l, g+1), genPrefix(l+1), func(k, v []byte) error {
		_, gen, err := decodeGenKey(k)
		if err != nil {
			return err
		}
		if len(v) == 1 && v[0] == 0 {
			return nil // dying too
		}
		next, found = gen, true
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, false, err
	}
	if !found && rec.Volume != 0 {
		return rec.Head, true, nil
	}
	return next, found, nil
}

func anyGen(tx meta.Tx, l LineageID) (bool, error) {
	found := false
	err := tx.Scan(genPrefix(l), genPrefix(l+1), func(_, _ []byte) error {
		found = true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

// collectLineage removes a dying lineage's entries, then its record, then
// releases its base, which may free the base generation in turn.
func (e *Engine) collectLineage(ctx context.Context, l LineageID) error {
	for {
		var (
			done      bool
			base      LineageID
			baseGen   Generation
			freesBase bool
		)
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			done, freesBase = false, false
			rec, err := getLineage(tx, l)
			if err != nil {
				return err
			}
			// Collect first, change afterwards: a scan must not modify
			// the store it walks.
			n := 0
			var keys, vals [][]byte
			for _, p := range [][]byte{mapLineagePrefix(l), changedLineagePrefix(l)} {
				err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
					keys = append(keys, append([]byte(nil), k...))
					vals = append(vals, append([]byte(nil), v...))
					if n++; n == collectBatch {
						return errStop
					}
					return nil
				})
				if err != nil && !errors.Is(err, errStop) {
					return err
				}
				if n == collectBatch {
					break
				}
			}
			for i, k := range keys {
				if k[0] == prefixMap {
					val, err := decodeValue(vals[i])
					if err != nil {
						return err
					}
					if err := decref(tx, val); err != nil {
						return err
					}
				}
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			if n == collectBatch {
				return nil
			}
			done = true
			if err := tx.Delete(lineageKey(l)); err != nil {
				return err
			}
			if rec.Base == 0 {
				return nil
			}
			base, baseGen = rec.Base, rec.BaseGen
			freesBase, err = releaseGen(tx, base, baseGen)
			return err
		})
		if err != nil {
			return err
		}
		if done {
			if freesBase {
				return e.collect(ctx, base, baseGen)
			}
			return nil
		}
	}
}

// Flatten copies into a clone every block it still reads from its base, then
// detaches it, so the clone no longer depends on its source. It costs one
// map entry per block the base holds data in; no chunk is copied.
func (e *Engine) Flatten(ctx context.Context, vol ID) error {
	v, err := e.volumeView(ctx, vol)
	if err != nil {
		return err
	}
	if v.rec.Base == 0 {
		return nil
	}
	unlock := e.lock(v.lin)
	defer unlock()
	// Generation 0 lies below every generation of the lineage, so an entry
	// there is read exactly where the base was; partial progress reads the
	// same, and a crash leaves a flatten that can simply run again.
	baseBlocks := uint64(v.rec.BaseSize / BlockSize)
	for w := uint64(0); w < baseBlocks; w += windowBlocks {
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			r := newTxReader(tx)
			win, err := r.allocated(v.rec.Base, v.rec.BaseGen, w, min(w+windowBlocks, baseBlocks))
			if err != nil {
				return err
			}
			for _, bv := range win {
				k := mapKey(v.lin, bv.b, 0)
				_, err := tx.Get(k)
				if err == nil {
					continue
				}
				if !errors.Is(err, meta.ErrNotFound) {
					return err
				}
				// No placement is enforced here: the chunk is indexed
				// already, and a clone whose zones lack it is pending
				// replication, which reads the flattened entries.
				if err := incref(tx, bv.val, nil, nil); err != nil {
					return err
				}
				if err := tx.Put(k, bv.val.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var freesBase bool
	err = e.meta.Update(ctx, func(tx meta.Tx) error {
		rec, err := getLineage(tx, v.lin)
		if err != nil {
			return err
		}
		rec.Base, rec.BaseGen, rec.BaseSize = 0, 0, 0
		if err := putJSON(tx, lineageKey(v.lin), rec); err != nil {
			return err
		}
		freesBase, err = releaseGen(tx, v.rec.Base, v.rec.BaseGen)
		return err
	})
	if err != nil || !freesBase {
		return err
	}
	return e.collect(ctx, v.rec.Base, v.rec.BaseGen)
}

// resume finishes collections that a crash interrupted.
func (e *Engine) resume(ctx context.Context) error {
	type lg struct {
		l LineageID
		g Generation
	}
	var gens []lg
	var dying []LineageID
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		err := tx.Scan([]byte{prefixGen}, []byte{prefixGen + 1}, func(k, v []byte) error {
			if len(v) == 1 && v[0] == 0 {
				l, g, err := decodeGenKey(k)
				gens = append(gens, lg{l, g})
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Scan([]byte{prefixLineage}, []byte{prefixLineage + 1}, func(k, v []byte) error {
			var rec lineageRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("%w: lineage record %x: %v", ErrCorrupt, k, err)
			}
			if rec.Dying {
				l, err := decodeIDKey(k, prefixLineage)
				dying = append(dying, LineageID(l))
				return err
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, x := range gens {
		e.log.Info("resuming deletion of a generation", "lineage", x.l, "gen", x.g)
		if err := e.collect(ctx, x.l, x.g); err != nil {
			return err
		}
	}
	for _, l := range dying {
		e.log.Info("resuming deletion of a lineage", "lineage", l)
		if err := e.collectLineage(ctx, l); err != nil {
			return err
		}
	}
	return nil
}
