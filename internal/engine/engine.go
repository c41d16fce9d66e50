package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// BlockSize is the unit of change tracking. It is pinned in the store's
// format record, so changing it needs a new format version.
const BlockSize = 64 << 10

// SectorSize is the alignment of every offset and length (Azure's page).
const SectorSize = 512

// SizeUnit is the granularity of volume sizes (Azure's upload rule).
const SizeUnit = 1 << 20

// FormatVersion is the store format this binary writes and reads.
// Version 2 added zones: placements, per-zone chunk locations.
const FormatVersion = 2

type (
	// ID names a volume or a snapshot.
	ID uint64
	// LineageID names a volume's timeline.
	LineageID uint64
	// Generation numbers the states of a lineage; the head is the highest.
	Generation uint64
)

var (
	// ErrNotFound: no volume or snapshot has the ID.
	ErrNotFound = errors.New("engine: no such volume or snapshot")
	// ErrUnaligned: an offset or length is not a multiple of 512 bytes.
	ErrUnaligned = errors.New("engine: unaligned offset or length")
	// ErrOutOfRange: a read or write reaches past the end of the image.
	ErrOutOfRange = errors.New("engine: beyond the end of the image")
	// ErrBadSize: a size is not a positive multiple of 1 MiB, or shrinks.
	ErrBadSize = errors.New("engine: invalid size")
	// ErrReadOnly: a write to a snapshot.
	ErrReadOnly = errors.New("engine: snapshots are read-only")
	// ErrWrongKind: a volume where a snapshot is needed, or the reverse.
	ErrWrongKind = errors.New("engine: wrong kind of image")
	// ErrNotSameLineage: a diff between images of different lineages.
	ErrNotSameLineage = errors.New("engine: images are not of the same lineage")
	// ErrOrder: a diff whose base is newer than its target.
	ErrOrder = errors.New("engine: diff base is newer than its target")
	// ErrFormat: the store was written by an unknown format or settings.
	ErrFormat = errors.New("engine: unsupported store format")
	// ErrCorrupt: metadata that does not decode or contradicts itself.
	ErrCorrupt = errors.New("engine: corrupt metadata")
	// ErrTooLarge: a guarded write changes more blocks than one commit
	// holds (see [Engine.WriteAtIf]); nothing was written.
	ErrTooLarge = errors.New("engine: write too large for one commit")
)

// Config configures an [Engine].
type Config struct {
	// Meta holds every record, map entry and chunk index entry.
	Meta meta.Store
	// Zones store block contents, each in its own failure domain. The
	// first is where images go that name no placement.
	Zones []Zone
	// Logger receives rare events (resumed deletions, GC). Nil discards.
	Logger *slog.Logger
	// Now is the clock for GC grace periods; nil means time.Now.
	Now func() time.Time
	// ReadAhead is how many chunk reads an export keeps in flight.
	ReadAhead int
	// CacheBytes bounds the memory of the cache of hot blocks: contents
	// read from a chunk store, decompressed and verified once, then served
	// to reads from memory. It is rounded down to whole blocks; zero
	// disables the cache.
	CacheBytes int64
	// JournalDir, when set, is a node-local directory for the write-ahead
	// journals of write-back buffers ([Engine.OpenWriteBack]): a flush of
	// an attached disk appends there and fsyncs once, and the blocks reach
	// the zones later in larger commits. Open replays what a crash left
	// there. Leave it empty when the zones' stores are shared by several
	// nodes: a flush then commits to them directly.
	JournalDir string
}

// DefaultConfig returns a Config with defaults for everything but the stores.
func DefaultConfig() Config {
	return Config{ReadAhead: 8, CacheBytes: 64 << 20}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Meta == nil:
		return errors.New("engine: Config.Meta is required")
	case len(c.Zones) == 0:
		return errors.New("engine: Config.Zones needs at least one zone")
	case c.ReadAhead < 1:
		return errors.New("engine: Config.ReadAhead must be at least 1")
	case c.CacheBytes < 0:
		return errors.New("engine: Config.CacheBytes must not be negative")
	}
	seen := make(map[string]bool)
	for _, z := range c.Zones {
		switch {
		case z.Name == "" || z.Store == nil:
			return errors.New("engine: every zone needs a name and a store")
		case seen[z.Name]:
			return fmt.Errorf("engine: zone %q is configured twice", z.Name)
		}
		seen[z.Name] = true
	}
	return nil
}

// Engine stores volumes and snapshots. It is safe for concurrent use.
type Engine struct {
	meta      meta.Store
	zones     *zones
	log       *slog.Logger
	now       func() time.Time
	readAhead int
	cache     *blockCache // nil when disabled
	// journalDir holds write-back journals; empty for none.
	journalDir string

	// kick wakes the replication loop; replicated counts bytes it copied.
	kick       chan struct{}
	replicated atomic.Int64
	progress   sync.Map // ID → *atomic.Int64, per mille of a running replication

	mu    sync.Mutex
	locks map[LineageID]*lineageLock
	// writeBacks holds the open write-back buffers, by volume.
	writeBacks map[ID]*WriteBack
	// stripes serialise the read-modify-write of partial blocks, by block.
	stripes [64]sync.Mutex
}

type lineageLock struct {
	sync.Mutex
	users int
}

// Open checks (or, on an empty store, writes) the format record and
// finishes deletions a crash interrupted.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		meta:       cfg.Meta,
		log:        cfg.Logger,
		now:        cfg.Now,
		readAhead:  cfg.ReadAhead,
		cache:      newBlockCache(cfg.CacheBytes, BlockSize),
		journalDir: cfg.JournalDir,
		locks:      make(map[LineageID]*lineageLock),
		writeBacks: make(map[ID]*WriteBack),
		kick:       make(chan struct{}, 1),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if err := e.checkFormat(ctx); err != nil {
		return nil, err
	}
	var err error
	if e.zones, err = openZones(ctx, e.meta, cfg.Zones); err != nil {
		return nil, fmt.Errorf("engine: zones: %w", err)
	}
	var unconfigured []string
	for name, id := range e.zones.byName {
		if e.zones.stores[id] == nil {
			unconfigured = append(unconfigured, name)
		}
	}
	if len(unconfigured) > 0 {
		// Copies there cannot be read until they are configured again.
		slices.Sort(unconfigured)
		e.log.Warn("zones the store has known are not configured; chunk copies in them are unreachable", "zones", unconfigured)
	}
	if err := e.resume(ctx); err != nil {
		return nil, fmt.Errorf("engine: resuming interrupted work: %w", err)
	}
	if e.journalDir != "" {
		// Before any reader: a volume's content includes its journal.
		if err := e.replayJournals(ctx); err != nil {
			return nil, fmt.Errorf("engine: replaying write-back journals in %s: %w", e.journalDir, err)
		}
	}
	e.Kick() // replication a restart interrupted, if any
	return e, nil
}

var currentFormat = formatRecord{Version: FormatVersion, BlockSize: BlockSize, Hash: "blake3-256"}

func (e *Engine) checkFormat(ctx context.Context) error {
	return e.meta.Update(ctx, func(tx meta.Tx) error {
		b, err := tx.Get(formatKey)
		if errors.Is(err, meta.ErrNotFound) {
			// Only an empty store is new: keys without a format record
			// mean a damaged or foreign store, which must not be adopted.
			empty := true
			if err := tx.Scan(nil, nil, func(k, _ []byte) error {
				empty = false
				return errStop
			}); err != nil && !errors.Is(err, errStop) {
				return err
			}
			if !empty {
				return fmt.Errorf("%w: the metadata store holds data but no format record; it is damaged or not a deltadisk store", ErrFormat)
			}
			return putJSON(tx, formatKey, currentFormat)
		}
		if err != nil {
			return err
		}
		var f formatRecord
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%w: format record does not decode (%v); is this a deltadisk store?", ErrFormat, err)
		}
		if f.Version != FormatVersion {
			return fmt.Errorf("%w: the store has format version %d and this binary reads only version %d; use a deltadisk release that knows version %d",
				ErrFormat, f.Version, FormatVersion, f.Version)
		}
		if f != currentFormat {
			return fmt.Errorf("%w: the store uses block size %d and hash %q, this binary %d and %q",
				ErrFormat, f.BlockSize, f.Hash, BlockSize, currentFormat.Hash)
		}
		return nil
	})
}

// lock serialises the structural operations on one lineage in this process
// (collecting a generation, flattening). The metadata transactions alone
// keep the store consistent either way.
func (e *Engine) lock(l LineageID) func() {
	e.mu.Lock()
	ll := e.locks[l]
	if ll == nil {
		ll = &lineageLock{}
		e.locks[l] = ll
	}
	ll.users++
	e.mu.Unlock()
	ll.Lock()
	return func() {
		ll.Unlock()
		e.mu.Lock()
		if ll.users--; ll.users == 0 {
			delete(e.locks, l)
		}
		e.mu.Unlock()
	}
}

// Info describes an image.
type Info struct {
	ID      ID
	Kind    Kind
	Lineage LineageID
	// Gen is the snapshot's sealed generation, or the volume's head.
	Gen  Generation
	Size int64
	// Base is set for a clone that still reads through to another lineage.
	Base    LineageID
	BaseGen Generation
	// Zones is the placement: the zones that each hold all of the image's
	// data once Pending is false.
	Zones []string
	// Pending is set while chunks are still being copied into some zone
	// of the placement; Percent is how far that has come (100 when done).
	Pending bool
	Percent float64
}

// Stat returns an image's description.
func (e *Engine) Stat(ctx context.Context, id ID) (Info, error) {
	var info Info
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		v, err := openView(tx, id)
		if err != nil {
			return err
		}
		info, err = e.info(tx, v)
		return err
	})
	return info, err
}

// List returns every image, in ID order.
func (e *Engine) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		out = out[:0]
		var ids []ID
		err := tx.Scan([]byte{prefixImage}, []byte{prefixImage + 1}, func(k, _ []byte) error {
			id, err := decodeIDKey(k, prefixImage)
			ids = append(ids, ID(id))
			return err
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			v, err := openView(tx, id)
			if err != nil {
				return err
			}
			info, err := e.info(tx, v)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

func (e *Engine) info(tx meta.Tx, v view) (Info, error) {
	pending, err := isPending(tx, v.id)
	pct := 100.0
	if pending {
		pct = e.replicationPercent(v.id)
	}
	return Info{ID: v.id, Kind: v.kind, Lineage: v.lin, Gen: v.gen, Size: v.size, Base: v.rec.Base, BaseGen: v.rec.BaseGen,
		Zones: e.zones.nameList(v.zones), Pending: pending, Percent: pct}, err
}

func (e *Engine) imageSize(ctx context.Context, id ID) (int64, error) {
	var size int64
	err := e.meta.View(ctx, func(tx meta.Tx) error {
		v, err := openView(tx, id)
		size = v.size
		return err
	})
	return size, err
}

// view resolves an image inside a transaction to the lineage state it reads.
type view struct {
	id   ID
	kind Kind
	lin  LineageID
	gen  Generation
	size int64
	rec  lineageRecord
	// zones is the image's placement.
	zones []zoneID
}

func openView(tx meta.Tx, id ID) (view, error) {
	img, err := getImage(tx, id)
	if err != nil {
		return view{}, err
	}
	lin, err := getLineage(tx, img.Lineage)
	if err != nil {
		return view{}, err
	}
	v := view{id: id, kind: img.Kind, lin: img.Lineage, gen: img.Gen, size: img.Size, rec: lin, zones: img.Zones}
	if img.Kind == KindVolume {
		v.gen, v.size, v.zones = lin.Head, lin.Size, lin.Zones
	}
	return v, nil
}

func checkSize(size int64) error {
	if size <= 0 || size%SizeUnit != 0 {
		return fmt.Errorf("%w: %d bytes is not a positive multiple of 1 MiB", ErrBadSize, size)
	}
	return nil
}

func checkRange(off, n, size int64) error {
	if off%SectorSize != 0 || n%SectorSize != 0 {
		return fmt.Errorf("%w: offset %d length %d (both must be multiples of %d)", ErrUnaligned, off, n, SectorSize)
	}
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%w: offset %d length %d, image size %d", ErrOutOfRange, off, n, size)
	}
	return nil
}
