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
}

// DefaultGCOptions returns the options the server uses.
func DefaultGCOptions() GCOptions {
	return GCOptions{Grace: 15 * time.Minute, CompactBelow: 0.5}
}

// GCStats reports what a collection did.
type GCStats struct {
	ChunksFreed    int
	PacksDeleted   int
	PacksCompacted int
	BytesFreed     int64
}

// GC removes chunks no block references, deletes packs that hold no indexed
// chunk, and compacts packs that are mostly garbage. It runs beside writes.
func (e *Engine) GC(ctx context.Context, opts GCOptions) (GCStats, error) {
	var st GCStats
	freed, err := e.dropUnreferenced(ctx)
	st.ChunksFreed = freed
	if err != nil {
		return st, err
	}
	live := make(map[string]int64)
	members := make(map[string][]chunks.Ref)
	err = e.meta.View(ctx, func(tx meta.Tx) error {
		clear(live)
		clear(members)
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
				if loc.Zone == 0 {
					live[loc.Pack] += int64(loc.Length)
					members[loc.Pack] = append(members[loc.Pack], ref)
				}
			}
			return nil
		})
	})
	if err != nil {
		return st, err
	}
	now := e.now()
	var dead, sparse []string
	sizes := make(map[string]int64)
	err = e.chunks.ListPacks(ctx, func(name string, size int64) error {
		t, ok := chunks.PackTime(name)
		if !ok || now.Sub(t) < opts.Grace {
			return nil
		}
		sizes[name] = size
		switch n := live[name]; {
		case n == 0:
			dead = append(dead, name)
		case opts.CompactBelow > 0 && float64(n) < opts.CompactBelow*float64(size):
			sparse = append(sparse, name)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, name := range dead {
		if err := e.chunks.DeletePack(ctx, name); err != nil {
			return st, err
		}
		st.PacksDeleted++
		st.BytesFreed += sizes[name]
	}
	for _, name := range sparse {
		if err := e.compact(ctx, name, members[name]); err != nil {
			return st, fmt.Errorf("compacting pack %s: %w", name, err)
		}
		st.PacksCompacted++
		st.BytesFreed += sizes[name] - live[name]
	}
	if st.ChunksFreed+st.PacksDeleted+st.PacksCompacted > 0 {
		e.log.Info("gc", "chunks_freed", st.ChunksFreed, "packs_deleted", st.PacksDeleted,
			"packs_compacted", st.PacksCompacted, "bytes_freed", st.BytesFreed)
	}
	return st, nil
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

// compact rewrites a pack's live chunks into new packs, points the index
// at them, and deletes the old pack. Readers that planned a read from the
// old pack re-plan when they find it gone.
func (e *Engine) compact(ctx context.Context, pack string, refs []chunks.Ref) error {
	var moved []chunks.Chunk
	var old []chunks.Location
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		moved, old = moved[:0], old[:0]
		for _, ref := range refs {
			ce, ok, err := getChunk(tx, ref)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			for _, loc := range ce.Locations {
				if loc.Zone == 0 && loc.Pack == pack {
					moved = append(moved, chunks.Chunk{Ref: ref})
					old = append(old, loc.Location)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range moved {
		data, err := e.chunks.Get(ctx, moved[i].Ref, old[i], nil)
		if err != nil {
			return err
		}
		moved[i].Data = data
	}
	var locs []chunks.Location
	if len(moved) > 0 {
		if locs, err = e.chunks.Put(ctx, moved); err != nil {
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
				if ce.Locations[j].Zone == 0 && ce.Locations[j].Pack == pack {
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
	// No entry can come to point into the pack after GC listed its
	// members: new entries point at fresh packs, and the pack is older
	// than the grace period that bounds a write in flight.
	return e.chunks.DeletePack(ctx, pack)
}
