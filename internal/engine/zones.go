package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Zone is one chunk store, a failure domain of its own. An image's
// placement names the zones that must each hold all of its chunks: one for
// locally-redundant storage, every zone of a region for zone-redundant.
type Zone struct {
	// Name identifies the zone across restarts (for example "eastus-1");
	// the chunk index refers to it by a number the engine assigns once.
	Name  string
	Store *chunks.Store
}

var (
	// ErrNoZone: a placement names a zone the engine was not given.
	ErrNoZone = errors.New("engine: unknown zone")
	// ErrZoneUnavailable: a zone of the placement did not take a write
	// (its store failed); nothing was committed. A store that is full or
	// refuses writes is reported by its cause instead (see [NoSpace] and
	// [NotWritable]).
	ErrZoneUnavailable = errors.New("engine: zone store unavailable")
)

type zoneID uint32

// zones is the engine's view of its zone stores.
type zones struct {
	byName map[string]zoneID
	stores map[zoneID]*chunks.Store
	names  map[zoneID]string
	order  []zoneID // the configured order; the first is the default placement
	faults map[zoneID]*atomic.Uint64
	// suspect holds, per zone, until when (unix nanoseconds) reads try it
	// last because a read there failed.
	suspect map[zoneID]*atomic.Int64
}

// suspectFor is how long a zone whose read failed is tried after the
// others: long enough that a lost zone costs one failed read per chunk
// now and then rather than one per read, short enough to notice it back.
const suspectFor = 30 * time.Second

// openZones gives every configured zone its number, assigning new numbers
// to zones the store has not seen. Numbers are never reused, so a chunk
// location cannot come to mean another zone's pack.
func openZones(ctx context.Context, ms meta.Store, cfg []Zone) (*zones, error) {
	z := &zones{
		byName:  make(map[string]zoneID),
		stores:  make(map[zoneID]*chunks.Store),
		names:   make(map[zoneID]string),
		faults:  make(map[zoneID]*atomic.Uint64),
		suspect: make(map[zoneID]*atomic.Int64),
	}
	err := ms.Update(ctx, func(tx meta.Tx) error {
		clear(z.byName)
		next := zoneID(0)
		err := tx.Scan([]byte{prefixZone}, []byte{prefixZone + 1}, func(k, v []byte) error {
			if len(v) != 4 {
				return keyError("zone", k)
			}
			id := zoneID(binary.BigEndian.Uint32(v))
			z.byName[string(k[1:])] = id
			next = max(next, id+1)
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range cfg {
			if _, ok := z.byName[c.Name]; ok {
				continue
			}
			z.byName[c.Name] = next
			if err := tx.Put(zoneKey(c.Name), binary.BigEndian.AppendUint32(nil, uint32(next))); err != nil {
				return err
			}
			next++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range cfg {
		id := z.byName[c.Name]
		z.stores[id] = c.Store
		z.names[id] = c.Name
		z.order = append(z.order, id)
		z.faults[id] = new(atomic.Uint64)
		z.suspect[id] = new(atomic.Int64)
	}
	return z, nil
}

// name returns a zone's name, also for a zone no longer configured.
func (z *zones) name(id zoneID) string {
	if n, ok := z.names[id]; ok {
		return n
	}
	for n, i := range z.byName {
		if i == id {
			return n
		}
	}
	return fmt.Sprintf("zone#%d", id)
}

// resolve turns zone names into a sorted set of numbers; none means def.
func (z *zones) resolve(names []string, def []zoneID) ([]zoneID, error) {
	if len(names) == 0 {
		return def, nil
	}
	var out []zoneID
	for _, n := range names {
		id, ok := z.byName[n]
		if _, configured := z.stores[id]; !ok || !configured {
			return nil, fmt.Errorf("%w: %q", ErrNoZone, n)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (z *zones) nameList(ids []zoneID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = z.name(id)
	}
	return out
}

// ZoneFaults returns, per zone, how many chunk reads failed there and were
// served from another zone (or failed everywhere).
func (e *Engine) ZoneFaults() map[string]uint64 {
	out := make(map[string]uint64, len(e.zones.order))
	for _, id := range e.zones.order {
		out[e.zones.name(id)] = e.zones.faults[id].Load()
	}
	return out
}

// Zones returns the configured zone names in their configured order.
func (e *Engine) Zones() []string { return e.zones.nameList(e.zones.order) }

// readChunk reads a chunk from the first of its copies that yields it, so
// that a failed or damaged zone costs a retry elsewhere, not a failed read.
// Zones whose reads failed lately are tried last. Each failure is counted;
// a zone turning bad is logged once, not once per read. A copy that a
// compaction moved meanwhile is not a failure: it is read from its new
// place.
func (e *Engine) readChunk(ctx context.Context, ref chunks.Ref, locs []zoneLocation, dst []byte) ([]byte, error) {
	now := e.now().UnixNano()
	if len(locs) > 1 && slices.ContainsFunc(locs, func(l zoneLocation) bool { return e.isSuspect(l.Zone, now) }) {
		locs = slices.Clone(locs)
		slices.SortStableFunc(locs, func(a, b zoneLocation) int {
			return cmpBool(e.isSuspect(a.Zone, now), e.isSuspect(b.Zone, now))
		})
	}
	var first error
	for _, loc := range locs {
		s := e.zones.stores[loc.Zone]
		if s == nil {
			continue // a zone no longer configured
		}
		buf, err := s.Get(ctx, ref, loc.Location, dst)
		if errors.Is(err, chunks.ErrNotFound) {
			var moved bool
			var rerr error
			if loc, moved, rerr = e.relocate(ctx, ref, loc); rerr != nil {
				return nil, rerr // collected meanwhile (errGone), or the index failed
			}
			if moved {
				buf, err = s.Get(ctx, ref, loc.Location, dst)
			}
		}
		if err == nil {
			return buf, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if first == nil {
			first = err
		}
		e.zones.faults[loc.Zone].Add(1)
		if old := e.zones.suspect[loc.Zone].Swap(now + int64(suspectFor)); old < now {
			e.log.Warn("zone read failed; reading from other zones first", "zone", e.zones.name(loc.Zone),
				"for", suspectFor, "chunk", ref.String(), "err", err)
		}
	}
	if first == nil {
		return nil, fmt.Errorf("%w: chunk %s has no copy in a configured zone", ErrCorrupt, ref)
	}
	return nil, first
}

func (e *Engine) isSuspect(z zoneID, now int64) bool {
	s := e.zones.suspect[z]
	return s != nil && s.Load() > now
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// errGone: a chunk's index entry vanished while it was being read (its
// image changed and GC dropped it); the caller re-plans.
var errGone = fmt.Errorf("%w (the chunk was collected during the read)", chunks.ErrNotFound)

// relocate looks up a copy that was not found where planned. It reports
// the copy's new location when a compaction moved it, errGone when the
// chunk is no longer indexed, and the same location when the index still
// points where nothing is: a real loss.
func (e *Engine) relocate(ctx context.Context, ref chunks.Ref, loc zoneLocation) (zoneLocation, bool, error) {
	var ce chunkEntry
	var ok bool
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		var err error
		ce, ok, err = getChunk(tx, ref)
		return err
	})
	switch {
	case err != nil:
		return loc, false, err
	case !ok:
		return loc, false, errGone
	}
	for _, l := range ce.Locations {
		if l.Zone == loc.Zone && l.Location != loc.Location {
			return l, true, nil
		}
	}
	return loc, false, nil
}

// putPieceChunks bounds the chunks of one Put: 8 MiB of 64 KiB blocks.
const putPieceChunks = 128

// putZones writes chunks into zones in parallel; want lists, per zone, the
// chunks it lacks. A write is acknowledged only when every zone holds it,
// so one failing zone fails it (and its packs in other zones are garbage
// that GC collects).

func (e *Engine) putZones(ctx context.Context, want map[zoneID][]chunks.Chunk) (map[zoneID]map[chunks.Ref]chunks.Location, error) {
	out := make(map[zoneID]map[chunks.Ref]chunks.Location, len(want))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for z := range want {
		if e.zones.stores[z] == nil {
			return nil, fmt.Errorf("%w: zone %s is not configured", ErrNoZone, e.zones.name(z))
		}
	}
	for z, all := range want {
		s := e.zones.stores[z]
		// Each zone's map is made here, before its pieces start: the
		// goroutines write into it under mu, never into out itself.
		zl := make(map[chunks.Ref]chunks.Location, len(all))
		out[z] = zl
		// Large batches (a write-back fold holds 64 MiB) go in pieces: the
		// store encodes each Put into one buffer, which it pools only up
		// to a size, and pieces compress in parallel.
		for cs := range slices.Chunk(all, putPieceChunks) {
			wg.Go(func() {
				locs, err := s.Put(ctx, cs)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = zoneWriteError(e.zones.name(z), err)
					}
					return
				}
				for i, c := range cs {
					zl[c.Ref] = locs[i]
				}
			})
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// hasZone reports whether a chunk entry lists a copy in zone z.
func (ce *chunkEntry) hasZone(z zoneID) bool {
	for _, l := range ce.Locations {
		if l.Zone == z {
			return true
		}
	}
	return false
}

// covers reports whether have includes every zone of want (both sorted).
func covers(have, want []zoneID) bool {
	for _, z := range want {
		if _, ok := slices.BinarySearch(have, z); !ok {
			return false
		}
	}
	return true
}
