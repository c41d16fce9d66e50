package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// GCOptions tunes a collection.
type GCOptions struct {
	// Grace protects packs younger than it: a write in flight (its pack
	// written, its metadata not yet committed), in this process or another
	// sharing the stores, may be about to reference them.
	Grace time.Duration
	// CompactBelow rewrites packs whose live bytes are below this fraction
	// of their size; 0 disables compaction.
	CompactBelow float64
	// MergeBelow rewrites packs smaller than this many bytes together, so
	// that a stream of small writes does not leave a pack per write; 0
	// disables merging.
	MergeBelow int64
}

// DefaultGCOptions returns the options the server uses.
func DefaultGCOptions() GCOptions {
	return GCOptions{Grace: 15 * time.Minute, CompactBelow: 0.5, MergeBelow: 4 << 20}
}

// GCStats reports what a collection did.
type GCStats struct {
	ChunksFreed  int
	PacksDeleted int
	// PacksCompacted counts packs rewritten, sparse or small.
	PacksCompacted int
	BytesFreed     int64
}

// compactGroupBytes bounds the live bytes one compaction holds in memory.
const compactGroupBytes = 64 << 20

// GC removes chunks no block references, deletes packs that hold no indexed
// chunk, and compacts packs that are mostly garbage. It runs beside writes.
func (e *Engine) GC(ctx context.Context, opts GCOptions) (GCStats, error) {
	var st GCStats
	freed, err := e.dropUnreferenced(ctx)
	st.ChunksFreed = freed
	if err != nil {
		return st, err
	}
	live := make(map[zoneID]map[string]int64)
	members := make(map[zoneID]map[string][]chunks.Ref)
	for _, z := range e.zones.order {
		live[z], members[z] = make(map[string]int64), make(map[string][]chunks.Ref)
	}
	err = e.meta.View(ctx, func(tx meta.Tx) error {
		for _, z := range e.zones.order {
			clear(live[z])
			clear(members[z])
		}
		return tx.Scan([]byte{prefixChunk}, []byte{prefixChunk + 1}, func(k, v []byte) error {
			ref, err := decodeChunkKey(k)
			if err != nil {
				return err
			}
			ce, err := unmarshalChunkEntry(v)
			if err != nil {
				return err
			}
			for _, loc := range ce.Locations {
				if lz := live[loc.Zone]; lz != nil {
					lz[loc.Pack] += int64(loc.Length)
					members[loc.Zone][loc.Pack] = append(members[loc.Zone][loc.Pack], ref)
				}
			}
			return nil
		})
	})
	if err != nil {
		return st, err
	}
	// A failing zone does not hold up the others' collection.
	var errs []error
	for _, z := range e.zones.order {
		if err := e.gcZone(ctx, z, opts, live[z], members[z], &st); err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("zone %s: %w", e.zones.name(z), err))
		}
	}
	if st.ChunksFreed+st.PacksDeleted+st.PacksCompacted > 0 {
		e.log.Info("gc", "chunks_freed", st.ChunksFreed, "packs_deleted", st.PacksDeleted,
			"packs_compacted", st.PacksCompacted, "bytes_freed", st.BytesFreed)
	}
	return st, errors.Join(errs...)
}

// gcZone deletes and compacts one zone's packs, given the live bytes and
// the chunks the index places in each of them.
func (e *Engine) gcZone(ctx context.Context, z zoneID, opts GCOptions, live map[string]int64, members map[string][]chunks.Ref, st *GCStats) error {
	store := e.zones.stores[z]
	now := e.now()
	var dead, rewrite, small []string
	sizes := make(map[string]int64)
	err := store.ListPacks(ctx, func(name string, size int64) error {
		t, ok := chunks.PackTime(name)
		if !ok || now.Sub(t) < opts.Grace {
			return nil
		}
		sizes[name] = size
		switch n := live[name]; {
		case n == 0:
			dead = append(dead, name)
		case opts.CompactBelow > 0 && float64(n) < opts.CompactBelow*float64(size):
			rewrite = append(rewrite, name)
		case size < opts.MergeBelow:
			small = append(small, name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range dead {
		if err := store.DeletePack(ctx, name); err != nil {
			return err
		}
		st.PacksDeleted++
		st.BytesFreed += sizes[name]
	}
	if len(small) > 1 { // one small pack alone gains nothing from a rewrite
		rewrite = append(rewrite, small...)
	}
	// Rewrite in groups of bounded live size, each into fresh packs.
	for len(rewrite) > 0 {
		var group []string
		var bytes int64
		for len(rewrite) > 0 && (len(group) == 0 || bytes+live[rewrite[0]] <= compactGroupBytes) {
			group = append(group, rewrite[0])
			bytes += live[rewrite[0]]
			rewrite = rewrite[1:]
		}
		if err := e.compact(ctx, z, group, members); err != nil {
			return fmt.Errorf("compacting packs %v: %w", group, err)
		}
		for _, name := range group {
			st.PacksCompacted++
			st.BytesFreed += sizes[name] - live[name]
		}
	}
	return nil
}

// dropUnreferenced removes index entries of chunks at zero references, in
// batches, resuming each scan where the last stopped.
func (e *Engine) dropUnreferenced(ctx context.Context) (int, error) {
	total := 0
	start := []byte{prefixChunk}
	for {
		var n int
		var last []byte
		err := e.meta.Update(ctx, func(tx meta.Tx) error {
			n, last = 0, nil
			var zero [][]byte
			scanned := 0
			err := tx.Scan(start, []byte{prefixChunk + 1}, func(k, v []byte) error {
				ce, err := unmarshalChunkEntry(v)
				if err != nil {
					return err
				}
				if ce.Refs == 0 {
					zero = append(zero, append([]byte(nil), k...))
				}
				last = append(last[:0], k...)
				if scanned++; scanned == collectBatch {
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
			if scanned < collectBatch {
				last = nil
			}
			for _, k := range zero {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			n = len(zero)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if last == nil {
			return total, nil
		}
		start = append(last, 0)
	}
}

// compact rewrites the live chunks of packs into new packs, points the
// index at them, and deletes the old packs. Readers that planned a read
// from an old pack re-plan when they find it gone.
func (e *Engine) compact(ctx context.Context, z zoneID, packs []string, members map[string][]chunks.Ref) error {
	store := e.zones.stores[z]
	old := make(map[string]bool, len(packs))
	for _, p := range packs {
		old[p] = true
	}
	var moved []chunks.Chunk
	// from lists each moved chunk's copies, this zone's first: a copy
	// damaged here is read from another zone, so the rewrite repairs it
	// rather than blocking the zone's compaction.
	var from [][]zoneLocation
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		moved, from = moved[:0], from[:0]
		for _, p := range packs {
			for _, ref := range members[p] {
				ce, ok, err := getChunk(tx, ref)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				for _, loc := range ce.Locations {
					if loc.Zone == z && loc.Pack == p {
						moved = append(moved, chunks.Chunk{Ref: ref})
						locs := []zoneLocation{loc}
						for _, other := range ce.Locations {
							if other.Zone != z {
								locs = append(locs, other)
							}
						}
						from = append(from, locs)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range moved {
		data, err := e.readChunk(ctx, moved[i].Ref, from[i], nil)
		if err != nil {
			return err
		}
		moved[i].Data = data
	}
	var locs []chunks.Location
	if len(moved) > 0 {
		if locs, err = store.Put(ctx, moved); err != nil {
			return err
		}
	}
	err = e.meta.Update(ctx, func(tx meta.Tx) error {
		for i, c := range moved {
			ce, ok, err := getChunk(tx, c.Ref)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			for j := range ce.Locations {
				if ce.Locations[j].Zone == z && old[ce.Locations[j].Pack] {
					ce.Locations[j].Location = locs[i]
				}
			}
			if err := tx.Put(chunkKey(c.Ref), ce.marshal()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// No entry can come to point into these packs after GC listed their
	// members: new entries point at fresh packs, and the packs are older
	// than the grace period that bounds a write in flight.
	for _, p := range packs {
		if err := store.DeletePack(ctx, p); err != nil {
			return err
		}
	}
	return nil
}
