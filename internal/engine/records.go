package engine

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Kind tells a volume from a snapshot.
type Kind uint8

const (
	KindVolume   Kind = 1
	KindSnapshot Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindVolume:
		return "volume"
	case KindSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// imageRecord is stored at imageKey(id). A volume's size lives in its
// lineage record (it can grow); a snapshot's is fixed when it is taken.
type imageRecord struct {
	Kind    Kind       `json:"k"`
	Lineage LineageID  `json:"l"`
	Gen     Generation `json:"g,omitempty"`
	Size    int64      `json:"s,omitempty"`
	// Zones is a snapshot's placement (a volume's is its lineage's).
	Zones []zoneID `json:"z,omitempty"`
}

// lineageRecord is stored at lineageKey(l).
type lineageRecord struct {
	// Head is the open generation the volume writes into; every generation
	// below it is sealed.
	Head Generation `json:"h"`
	// Volume is the image whose head this is; 0 once the volume is deleted.
	Volume ID    `json:"v,omitempty"`
	Size   int64 `json:"s"`
	// Base, when set, is the lineage and sealed generation that blocks this
	// lineage never wrote read through to; BaseSize bounds the base blocks.
	Base     LineageID  `json:"b,omitempty"`
	BaseGen  Generation `json:"bg,omitempty"`
	BaseSize int64      `json:"bs,omitempty"`
	// Dying is set when no volume and no live generation remains: the
	// lineage's entries are being removed (resumed after a crash).
	Dying bool `json:"d,omitempty"`
	// Zones is the volume's placement: every zone its writes go to.
	Zones []zoneID `json:"z,omitempty"`
	// Rezoned is set once Place changed Zones: entries written before
	// may lie in other zones (replication, not the write path, placed
	// them), so the check does not hold them to Zones.
	Rezoned bool `json:"rz,omitempty"`
}

// formatRecord pins the settings that shape stored data. It is written on
// first open and checked on every open so nodes cannot drift.
type formatRecord struct {
	Version   int    `json:"version"`
	BlockSize int    `json:"blockSize"`
	Hash      string `json:"hash"`
}

// chunkEntry is stored at chunkKey(ref): how many map entries point at the
// chunk, and where its copies lie (one per zone store holding it).
type chunkEntry struct {
	Refs      uint64
	Locations []zoneLocation
}

type zoneLocation struct {
	Zone zoneID
	chunks.Location
}

// chunkEntryVersion prefixes the binary chunk entry so it can evolve.
const chunkEntryVersion = 1

func (e *chunkEntry) marshal() []byte {
	b := []byte{chunkEntryVersion}
	b = binary.AppendUvarint(b, e.Refs)
	b = binary.AppendUvarint(b, uint64(len(e.Locations)))
	for _, l := range e.Locations {
		b = binary.AppendUvarint(b, uint64(l.Zone))
		b = binary.AppendUvarint(b, uint64(len(l.Pack)))
		b = append(b, l.Pack...)
		b = binary.AppendUvarint(b, uint64(l.Offset))
		b = binary.AppendUvarint(b, uint64(l.Length))
		b = append(b, byte(l.Codec))
	}
	return b
}

var errShortEntry = errors.New("truncated")

func unmarshalChunkEntry(b []byte) (chunkEntry, error) {
	var e chunkEntry
	fail := func(err error) (chunkEntry, error) {
		return chunkEntry{}, fmt.Errorf("%w: chunk entry %x: %v", ErrCorrupt, b, err)
	}
	if len(b) == 0 || b[0] != chunkEntryVersion {
		return fail(errors.New("unknown version"))
	}
	p := b[1:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, errShortEntry
		}
		p = p[n:]
		return v, nil
	}
	var err error
	if e.Refs, err = uv(); err != nil {
		return fail(err)
	}
	n, err := uv()
	if err != nil {
		return fail(err)
	}
	if n > uint64(len(p)) {
		return fail(errShortEntry)
	}
	for range n {
		var l zoneLocation
		zone, err := uv()
		if err != nil || zone > 1<<31 {
			return fail(errShortEntry)
		}
		l.Zone = zoneID(zone)
		plen, err := uv()
		if err != nil || plen > uint64(len(p)) {
			return fail(errShortEntry)
		}
		l.Pack = string(p[:plen])
		p = p[plen:]
		off, err := uv()
		if err != nil || off > 1<<62 {
			return fail(errShortEntry)
		}
		l.Offset = int64(off)
		length, err := uv()
		if err != nil || length > 1<<32-1 {
			return fail(errShortEntry)
		}
		l.Length = uint32(length)
		if len(p) < 1 {
			return fail(errShortEntry)
		}
		l.Codec = chunks.Codec(p[0])
		p = p[1:]
		e.Locations = append(e.Locations, l)
	}
	if len(p) != 0 {
		return fail(errors.New("trailing bytes"))
	}
	return e, nil
}

func getJSON(tx meta.Tx, key []byte, v any) error {
	b, err := tx.Get(key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: record %x: %v", ErrCorrupt, key, err)
	}
	return nil
}

func putJSON(tx meta.Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(key, b)
}

func getImage(tx meta.Tx, id ID) (imageRecord, error) {
	var r imageRecord
	err := getJSON(tx, imageKey(id), &r)
	if errors.Is(err, meta.ErrNotFound) {
		return r, fmt.Errorf("%w: image %d", ErrNotFound, id)
	}
	return r, err
}

func getLineage(tx meta.Tx, l LineageID) (lineageRecord, error) {
	var r lineageRecord
	err := getJSON(tx, lineageKey(l), &r)
	if errors.Is(err, meta.ErrNotFound) {
		return r, fmt.Errorf("%w: lineage %d is missing", ErrCorrupt, l)
	}
	return r, err
}

func getChunk(tx meta.Tx, r chunks.Ref) (chunkEntry, bool, error) {
	b, err := tx.Get(chunkKey(r))
	if errors.Is(err, meta.ErrNotFound) {
		return chunkEntry{}, false, nil
	}
	if err != nil {
		return chunkEntry{}, false, err
	}
	e, err := unmarshalChunkEntry(b)
	return e, err == nil, err
}

func getGenRefs(tx meta.Tx, l LineageID, g Generation) (uint64, bool, error) {
	b, err := tx.Get(genKey(l, g))
	if errors.Is(err, meta.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, false, fmt.Errorf("%w: generation %d/%d refs %x", ErrCorrupt, l, g, b)
	}
	return v, true, nil
}

func putGenRefs(tx meta.Tx, l LineageID, g Generation, refs uint64) error {
	return tx.Put(genKey(l, g), binary.AppendUvarint(nil, refs))
}

// nextID allocates an ID shared by images and lineages.
func nextID(tx meta.Tx) (uint64, error) {
	var n uint64 = 1
	b, err := tx.Get(counterKey)
	switch {
	case err == nil && len(b) == 8:
		n = binary.BigEndian.Uint64(b)
	case err == nil:
		return 0, fmt.Errorf("%w: ID counter %x", ErrCorrupt, b)
	case !errors.Is(err, meta.ErrNotFound):
		return 0, err
	}
	return n, tx.Put(counterKey, put64(nil, n+1))
}
