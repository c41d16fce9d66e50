package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// ScrubOptions tunes a scrub.
type ScrubOptions struct {
	// Repair rewrites each missing or corrupt copy from a good copy in
	// another zone.
	Repair bool
}

// ScrubReport is what a scrub found and did, per zone and in total.
type ScrubReport struct {
	Zones []ZoneScrub
	// Copies is the number of chunk copies read and verified.
	Copies int
	// Missing and Corrupt count bad copies; Unplaced the copies an
	// image's placement asks for that were never made; Repaired the
	// copies written; Unrecoverable the chunks with no good copy left.
	Missing, Corrupt, Unplaced, Repaired, Unrecoverable int
	// Problems names each bad copy (at most maxScrubProblems of them).
	Problems []string
}

// ZoneScrub is one zone's part of a ScrubReport.
type ZoneScrub struct {
	Zone                                                string
	Packs, Copies, Missing, Corrupt, Unplaced, Repaired int
}

const maxScrubProblems = 100

// badCopy is a copy the index lists that could not be read back intact.
type badCopy struct {
	ref     chunks.Ref
	loc     zoneLocation
	missing bool
}

// Scrub reads every chunk copy the index lists, pack by pack, and verifies
// it against its hash: a lost zone (its packs gone) or damaged packs show
// up as missing or corrupt copies. It also walks every image that is not
// pending replication and finds chunks with no copy at all in a zone of
// its placement. With Repair each bad copy is rewritten into its zone from
// a good copy elsewhere and each absent one made, restoring the redundancy
// the placements ask for. It reads all stored data and every image's block
// map: O(data + images × blocks).
func (e *Engine) Scrub(ctx context.Context, opts ScrubOptions) (ScrubReport, error) {
	var rep ScrubReport
	// Each zone's packs with the copies the index places in them.
	byPack := make(map[zoneID]map[string][]badCopy)
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		clear(byPack)
		return scanAll(tx, prefixChunk, func(k, v []byte) error {
			ref, err := decodeChunkKey(k)
			if err != nil {
				return err
			}
			ce, err := unmarshalChunkEntry(v)
			if err != nil {
				return err
			}
			for _, loc := range ce.Locations {
				if byPack[loc.Zone] == nil {
					byPack[loc.Zone] = make(map[string][]badCopy)
				}
				byPack[loc.Zone][loc.Pack] = append(byPack[loc.Zone][loc.Pack], badCopy{ref: ref, loc: loc})
			}
			return nil
		})
	})
	if err != nil {
		return rep, err
	}
	var bad []badCopy
	for _, z := range e.zones.order {
		zs := ZoneScrub{Zone: e.zones.name(z)}
		packs := byPack[z]
		names := make([]string, 0, len(packs))
		for p := range packs {
			names = append(names, p)
		}
		slices.Sort(names)
		for _, p := range names {
			zs.Packs++
			zs.Copies += len(packs[p])
			found, packMissing, err := e.scrubPack(ctx, z, p)
			if err != nil {
				return rep, fmt.Errorf("zone %s: %w", zs.Zone, err)
			}
			for _, c := range packs[p] {
				if found[c.loc.Location] != c.ref {
					c.missing = packMissing
					bad = append(bad, c)
				}
			}
		}
		rep.Zones = append(rep.Zones, zs)
	}
	// A compaction may have moved copies since the index was read; only
	// copies the index still lists where they were found bad count.
	if bad, err = e.stillListed(ctx, bad); err != nil {
		return rep, err
	}
	for _, c := range bad {
		zs := &rep.Zones[slices.Index(e.zones.order, c.loc.Zone)]
		what := "corrupt"
		if c.missing {
			what = "missing"
			zs.Missing++
			rep.Missing++
		} else {
			zs.Corrupt++
			rep.Corrupt++
		}
		if len(rep.Problems) < maxScrubProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf("zone %s: chunk %s in pack %s is %s", zs.Zone, c.ref, c.loc.Pack, what))
		}
	}
	for _, zs := range rep.Zones {
		rep.Copies += zs.Copies
	}
	unplaced, err := e.unplaced(ctx)
	if err != nil {
		return rep, err
	}
	for _, u := range unplaced {
		for _, z := range u.zones {
			zs := &rep.Zones[slices.Index(e.zones.order, z)]
			zs.Unplaced++
			rep.Unplaced++
			if len(rep.Problems) < maxScrubProblems {
				rep.Problems = append(rep.Problems, fmt.Sprintf("zone %s: chunk %s has no copy, and image %d's placement needs one", zs.Zone, u.ref, u.image))
			}
		}
	}
	if len(bad)+len(unplaced) > 0 {
		e.log.Warn("scrub found bad or absent chunk copies", "missing", rep.Missing, "corrupt", rep.Corrupt, "unplaced", rep.Unplaced)
	}
	if !opts.Repair {
		return rep, nil
	}
	if len(bad) > 0 {
		if err := e.repair(ctx, bad, &rep); err != nil {
			return rep, err
		}
	}
	for _, u := range unplaced {
		before := e.replicated.Load()
		if err := e.place(ctx, []chunks.Ref{u.ref}, u.zones); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if len(rep.Problems) < maxScrubProblems {
				rep.Problems = append(rep.Problems, fmt.Sprintf("chunk %s: placing it failed: %v", u.ref, err))
			}
			continue
		}
		if e.replicated.Load() > before {
			for _, z := range u.zones {
				rep.Zones[slices.Index(e.zones.order, z)].Repaired++
				rep.Repaired++
			}
		}
	}
	return rep, nil
}

// unplacedChunk is a chunk an image needs in zones that hold no copy of it.
type unplacedChunk struct {
	ref   chunks.Ref
	image ID
	zones []zoneID
}

// unplaced walks every image not pending replication, a window of blocks
// per transaction, and lists its chunks that lack a copy in a zone of its
// placement (each chunk once, with the zones it lacks).
func (e *Engine) unplaced(ctx context.Context) ([]unplacedChunk, error) {
	images, err := e.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []unplacedChunk
	seen := make(map[chunks.Ref]int)
	for _, info := range images {
		if info.Pending {
			continue
		}
		blocks := uint64(info.Size / BlockSize)
		for w := uint64(0); w < blocks; w += windowBlocks {
			err := e.meta.View(ctx, func(tx meta.Tx) error {
				v, err := openView(tx, info.ID)
				if err != nil {
					return err
				}
				bvs, err := newTxReader(tx).allocated(v.lin, v.gen, w, min(w+windowBlocks, blocks))
				if err != nil {
					return err
				}
				for _, bv := range bvs {
					ce, ok, err := getChunk(tx, bv.val.ref)
					if err != nil || !ok {
						return err
					}
					for _, z := range v.zones {
						if ce.hasZone(z) {
							continue
						}
						i, ok := seen[bv.val.ref]
						if !ok {
							i = len(out)
							seen[bv.val.ref] = i
							out = append(out, unplacedChunk{ref: bv.val.ref, image: info.ID})
						}
						if !slices.Contains(out[i].zones, z) {
							out[i].zones = append(out[i].zones, z)
						}
					}
				}
				return nil
			})
			if errors.Is(err, ErrNotFound) {
				break // deleted meanwhile
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// scrubPack reads and verifies a pack, returning which chunk lies intact
// at each location in it. A pack whose framing is damaged holds nothing
// intact, nor does one that cannot be read (reported by missing); only the
// context's end stops the scrub.
func (e *Engine) scrubPack(ctx context.Context, z zoneID, pack string) (map[chunks.Location]chunks.Ref, bool, error) {
	found := make(map[chunks.Location]chunks.Ref)
	err := e.zones.stores[z].ReadPack(ctx, pack, func(ref chunks.Ref, loc chunks.Location, _ []byte, err error) error {
		if err == nil {
			found[loc] = ref
		}
		return nil
	})
	switch {
	case err == nil:
		return found, false, nil
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	}
	// Gone, damaged framing, or a zone that fails reads: its copies are
	// corrupt when the pack was read and did not parse, missing otherwise.
	e.log.Warn("scrub: pack unreadable", "zone", e.zones.name(z), "pack", pack, "err", err)
	return found, !errors.Is(err, chunks.ErrCorrupt), nil
}

func (e *Engine) stillListed(ctx context.Context, bad []badCopy) ([]badCopy, error) {
	var out []badCopy
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		out = out[:0]
		for _, c := range bad {
			ce, ok, err := getChunk(tx, c.ref)
			if err != nil {
				return err
			}
			if ok && slices.Contains(ce.Locations, c.loc) {
				out = append(out, c)
			}
		}
		return nil
	})
	return out, err
}

// repair rewrites bad copies from good ones, a batch at a time, and points
// the index at the new copies.
func (e *Engine) repair(ctx context.Context, bad []badCopy, rep *ScrubReport) error {
	badSet := make(map[zoneLocation]bool, len(bad))
	for _, c := range bad {
		badSet[c.loc] = true
	}
	for len(bad) > 0 {
		n := min(len(bad), replicateBatch)
		batch := bad[:n]
		bad = bad[n:]
		put := make(map[zoneID][]chunks.Chunk)
		var bytes int64
		for _, c := range batch {
			data, err := e.goodCopy(ctx, c, badSet)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				rep.Unrecoverable++
				if len(rep.Problems) < maxScrubProblems {
					rep.Problems = append(rep.Problems, fmt.Sprintf("chunk %s: no good copy left: %v", c.ref, err))
				}
				continue
			}
			put[c.loc.Zone] = append(put[c.loc.Zone], chunks.Chunk{Ref: c.ref, Data: data})
		}
		// Each zone on its own: one that still refuses writes leaves its
		// copies bad (and reported) without holding up the others.
		fresh := make(map[zoneID]map[chunks.Ref]chunks.Location)
		for z, cs := range put {
			m, err := e.putZones(ctx, map[zoneID][]chunks.Chunk{z: cs})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if len(rep.Problems) < maxScrubProblems {
					rep.Problems = append(rep.Problems, fmt.Sprintf("zone %s: repair failed: %v", e.zones.name(z), err))
				}
				continue
			}
			fresh[z] = m[z]
			for _, c := range cs {
				bytes += int64(len(c.Data))
			}
		}
		e.replicated.Add(bytes)
		applied := make(map[zoneID]int)
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			clear(applied)
			for _, c := range batch {
				loc, ok := fresh[c.loc.Zone][c.ref]
				if !ok {
					continue
				}
				ce, found, err := getChunk(tx, c.ref)
				if err != nil {
					return err
				}
				i := slices.Index(ce.Locations, c.loc)
				if !found || i < 0 {
					continue // moved or collected meanwhile
				}
				ce.Locations[i].Location = loc
				if err := tx.Put(chunkKey(c.ref), ce.marshal()); err != nil {
					return err
				}
				applied[c.loc.Zone]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		for z, n := range applied {
			rep.Zones[slices.Index(e.zones.order, z)].Repaired += n
			rep.Repaired += n
		}
	}
	if rep.Repaired > 0 {
		e.log.Info("scrub repaired chunk copies", "repaired", rep.Repaired, "unrecoverable", rep.Unrecoverable)
	}
	return nil
}

// goodCopy reads a chunk from a copy other than the bad ones.
func (e *Engine) goodCopy(ctx context.Context, c badCopy, badSet map[zoneLocation]bool) ([]byte, error) {
	var locs []zoneLocation
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		ce, ok, err := getChunk(tx, c.ref)
		if err != nil || !ok {
			return err
		}
		for _, l := range ce.Locations {
			if !badSet[l] {
				locs = append(locs, l)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(locs) == 0 {
		return nil, errors.New("every copy is missing or corrupt")
	}
	return e.readChunk(ctx, c.ref, locs, nil)
}
