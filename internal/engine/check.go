package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// CheckOptions tunes a consistency check.
type CheckOptions struct {
	// ReadData reads and verifies every indexed chunk, not only that its
	// pack exists and is long enough.
	ReadData bool
}

// CheckReport is what a consistency check found.
type CheckReport struct {
	Images, Lineages, MapEntries, Chunks, Packs int
	// Problems lists every inconsistency, each naming the keys involved.
	Problems []string
}

// Err returns nil for a clean report, else an ErrCorrupt naming the first
// problems.
func (r CheckReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	shown := r.Problems[:min(len(r.Problems), 5)]
	return fmt.Errorf("%w: %d problems: %s", ErrCorrupt, len(r.Problems), strings.Join(shown, "; "))
}

// Check verifies every invariant between images, lineages, generations, the
// block map, the changed sets, the chunk index and the packs. It reads
// everything once: O(metadata), and O(data) with ReadData. It runs in one
// metadata view; a pack written while it runs is read to tell it from a
// missing one.
func (e *Engine) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	var rep CheckReport
	packSizes := make(map[zoneID]map[string]int64)
	packs := 0
	for _, z := range e.zones.order {
		sizes := make(map[string]int64)
		if err := e.zones.stores[z].ListPacks(ctx, func(name string, size int64) error {
			sizes[name] = size
			return nil
		}); err != nil {
			return rep, fmt.Errorf("zone %s: %w", e.zones.name(z), err)
		}
		packSizes[z] = sizes
		packs += len(sizes)
	}
	type chunkLoc struct {
		ref chunks.Ref
		loc zoneLocation
	}
	var toRead, unlisted []chunkLoc
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		rep = CheckReport{Packs: packs}
		toRead, unlisted = toRead[:0], unlisted[:0]
		bad := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }

		lins := make(map[LineageID]lineageRecord)
		if err := scanAll(tx, prefixLineage, func(k, v []byte) error {
			id, err := decodeIDKey(k, prefixLineage)
			if err != nil {
				return err
			}
			var rec lineageRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				bad("lineage %d: record does not decode: %v", id, err)
				return nil
			}
			lins[LineageID(id)] = rec
			return nil
		}); err != nil {
			return err
		}
		rep.Lineages = len(lins)

		// Expected references per generation: snapshots and clone bases.
		wantRefs := make(map[[2]uint64]uint64)
		for l, rec := range lins {
			if rec.Head < 1 {
				bad("lineage %d: head generation %d", l, rec.Head)
			}
			if rec.Base != 0 {
				wantRefs[[2]uint64{uint64(rec.Base), uint64(rec.BaseGen)}]++
				if _, ok := lins[rec.Base]; !ok {
					bad("lineage %d: base lineage %d is missing", l, rec.Base)
				}
			}
			if rec.Dying {
				bad("lineage %d: deletion left unfinished", l)
			}
		}
		snaps := make(map[[2]uint64]ID) // the snapshot index as the images imply it
		if err := scanAll(tx, prefixImage, func(k, v []byte) error {
			id, err := decodeIDKey(k, prefixImage)
			if err != nil {
				return err
			}
			rep.Images++
			var img imageRecord
			if err := json.Unmarshal(v, &img); err != nil {
				bad("image %d: record does not decode: %v", id, err)
				return nil
			}
			rec, ok := lins[img.Lineage]
			switch {
			case !ok:
				bad("image %d: lineage %d is missing", id, img.Lineage)
			case img.Kind == KindVolume && rec.Volume != ID(id):
				bad("image %d: lineage %d names volume %d", id, img.Lineage, rec.Volume)
			case img.Kind == KindSnapshot:
				wantRefs[[2]uint64{uint64(img.Lineage), uint64(img.Gen)}]++
				snaps[[2]uint64{uint64(img.Lineage), uint64(img.Gen)}] = ID(id)
				if img.Gen >= rec.Head {
					bad("snapshot %d: generation %d is not sealed (head %d)", id, img.Gen, rec.Head)
				}
			case img.Kind != KindVolume:
				bad("image %d: unknown kind %d", id, img.Kind)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := scanAll(tx, prefixSnap, func(k, v []byte) error {
			l, g, err := decodeSnapKey(k)
			if err != nil {
				return err
			}
			key := [2]uint64{uint64(l), uint64(g)}
			switch want, ok := snaps[key]; {
			case !ok:
				bad("snapshot index %d@%d: no snapshot has that generation", l, g)
			case len(v) != 8 || ID(binary.BigEndian.Uint64(v)) != want:
				bad("snapshot index %d@%d: names %x, the snapshot is %d", l, g, v, want)
			}
			delete(snaps, key)
			return nil
		}); err != nil {
			return err
		}
		for key, id := range snaps {
			bad("snapshot %d: missing from the snapshot index at %d@%d", id, key[0], key[1])
		}
		// A journal key belongs to a volume with an open WriteBack, or one
		// whose journal the next Open replays.
		if err := scanAll(tx, prefixJournal, func(k, v []byte) error {
			id, err := decodeIDKey(k, prefixJournal)
			if err != nil {
				return err
			}
			if _, err := decodeJournalMark(v); err != nil {
				bad("journal of image %d: %v", id, err)
			}
			b, err := tx.Get(imageKey(ID(id)))
			if errors.Is(err, meta.ErrNotFound) {
				bad("journal of image %d: no such image", id)
				return nil
			}
			var img imageRecord
			if err == nil && json.Unmarshal(b, &img) == nil && img.Kind != KindVolume {
				bad("journal of image %d: not a volume", id)
			}
			return err
		}); err != nil {
			return err
		}
		for l, rec := range lins {
			if rec.Volume != 0 {
				if _, err := tx.Get(imageKey(rec.Volume)); errors.Is(err, meta.ErrNotFound) {
					bad("lineage %d: volume %d is missing", l, rec.Volume)
				}
			}
		}

		liveGen := make(map[[2]uint64]bool)
		if err := scanAll(tx, prefixGen, func(k, v []byte) error {
			l, g, err := decodeGenKey(k)
			if err != nil {
				return err
			}
			key := [2]uint64{uint64(l), uint64(g)}
			refs, _, err := getGenRefs(tx, l, g)
			if err != nil {
				bad("generation %d/%d: %v", l, g, err)
				return nil
			}
			if refs != wantRefs[key] {
				bad("generation %d/%d: %d references recorded, %d found", l, g, refs, wantRefs[key])
			}
			delete(wantRefs, key)
			liveGen[key] = true
			if rec, ok := lins[l]; !ok || g >= rec.Head {
				bad("generation %d/%d: not a sealed generation of a lineage", l, g)
			}
			return nil
		}); err != nil {
			return err
		}
		for key, n := range wantRefs {
			bad("generation %d/%d: referenced %d times but not recorded", key[0], key[1], n)
		}

		counted := make(map[chunks.Ref]uint64)
		need := make(map[chunks.Ref][]zoneID)
		if err := scanAll(tx, prefixMap, func(k, v []byte) error {
			l, b, g, err := decodeMapKey(k)
			if err != nil {
				return err
			}
			rep.MapEntries++
			val, err := decodeValue(v)
			if err != nil {
				bad("block %d/%d@%d: %v", l, b, g, err)
				return nil
			}
			rec, ok := lins[l]
			if val.nonZero {
				counted[val.ref]++
				// A volume's writes reach every zone of its placement
				// before they commit (flattened base blocks, in
				// generation 0, are replication's business).
				if ok && g > 0 && !rec.Rezoned {
					for _, z := range rec.Zones {
						if !slices.Contains(need[val.ref], z) {
							need[val.ref] = append(need[val.ref], z)
						}
					}
				}
			}
			switch {
			case !ok:
				bad("block %d/%d@%d: lineage missing", l, b, g)
			case int64(b) >= rec.Size/BlockSize:
				bad("block %d/%d@%d: beyond the lineage's size %d", l, b, g, rec.Size)
			case g == 0:
			case g == rec.Head && rec.Volume != 0:
			case !liveGen[[2]uint64{uint64(l), uint64(g)}]:
				bad("block %d/%d@%d: entry in a generation nothing reads", l, b, g)
			}
			if g > 0 {
				if _, err := tx.Get(changedKey(l, g, b)); errors.Is(err, meta.ErrNotFound) {
					bad("block %d/%d@%d: missing from the changed set", l, b, g)
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if err := scanAll(tx, prefixChanged, func(k, _ []byte) error {
			l, g, b, err := decodeChangedKey(k)
			if err != nil {
				return err
			}
			if _, err := tx.Get(mapKey(l, b, g)); errors.Is(err, meta.ErrNotFound) {
				bad("changed set %d@%d block %d: no map entry", l, g, b)
			}
			return nil
		}); err != nil {
			return err
		}

		if err := scanAll(tx, prefixChunk, func(k, v []byte) error {
			ref, err := decodeChunkKey(k)
			if err != nil {
				return err
			}
			rep.Chunks++
			ce, err := unmarshalChunkEntry(v)
			if err != nil {
				bad("chunk %s: %v", ref, err)
				return nil
			}
			if ce.Refs != counted[ref] {
				bad("chunk %s: refcount %d, %d map entries", ref, ce.Refs, counted[ref])
			}
			delete(counted, ref)
			for _, z := range need[ref] {
				if !ce.hasZone(z) {
					bad("chunk %s: no copy in zone %s, which its lineage's placement names", ref, e.zones.name(z))
				}
			}
			if len(ce.Locations) == 0 {
				bad("chunk %s: no copy in any zone", ref)
			}
			for _, loc := range ce.Locations {
				sizes, configured := packSizes[loc.Zone]
				size, ok := sizes[loc.Pack]
				switch {
				case !configured:
					bad("chunk %s: copy in zone %s, which is not configured", ref, e.zones.name(loc.Zone))
				case !ok:
					// Written after the listing, or gone: read it to tell.
					unlisted = append(unlisted, chunkLoc{ref, loc})
				case loc.Offset+int64(loc.Length) > size:
					bad("chunk %s: pack %s of zone %s is %d bytes, chunk ends at %d", ref, loc.Pack, e.zones.name(loc.Zone), size, loc.Offset+int64(loc.Length))
				case opts.ReadData:
					toRead = append(toRead, chunkLoc{ref, loc})
				}
			}
			return nil
		}); err != nil {
			return err
		}
		for ref, n := range counted {
			bad("chunk %s: %d map entries but not indexed", ref, n)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	var buf []byte
	for _, c := range unlisted {
		if _, err := e.zones.stores[c.loc.Zone].Get(ctx, c.ref, c.loc.Location, buf[:0]); errors.Is(err, chunks.ErrNotFound) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("chunk %s: pack %s of zone %s is missing", c.ref, c.loc.Pack, e.zones.name(c.loc.Zone)))
		} else if err != nil && !errors.Is(err, chunks.ErrCorrupt) {
			return rep, err
		} else if err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
	}
	for _, c := range toRead {
		if buf, err = e.zones.stores[c.loc.Zone].Get(ctx, c.ref, c.loc.Location, buf[:0]); err != nil {
			if errors.Is(err, chunks.ErrCorrupt) || errors.Is(err, chunks.ErrNotFound) {
				rep.Problems = append(rep.Problems, err.Error())
				continue
			}
			return rep, err
		}
	}
	return rep, nil
}

// ScanImages calls fn for each image, in ID order, inside tx, a
// transaction of the caller's on the engine's store: a caller that checks
// its own records against the images (the service's Check) then reads one
// consistent state of both, which Stat or List, each in a view of its own,
// cannot give.
func (e *Engine) ScanImages(tx meta.Tx, fn func(id ID, kind Kind) error) error {
	return scanAll(tx, prefixImage, func(k, v []byte) error {
		id, err := decodeIDKey(k, prefixImage)
		if err != nil {
			return err
		}
		var img imageRecord
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("%w: image %d: %v", ErrCorrupt, id, err)
		}
		return fn(ID(id), img.Kind)
	})
}

func scanAll(tx meta.Tx, prefix byte, fn func(k, v []byte) error) error {
	return tx.Scan([]byte{prefix}, []byte{prefix + 1}, fn)
}
