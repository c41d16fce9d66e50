package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

// Key spaces. Every key starts with one prefix byte; integers are
// big-endian so that bytewise order is numeric order.
const (
	prefixFormat  = 'F' // F → format record (JSON)
	prefixCounter = 'N' // N → next ID (uint64)
	prefixImage   = 'I' // I id → image record
	prefixLineage = 'L' // L lineage → lineage record
	prefixGen     = 'G' // G lineage gen → references (uvarint); 0 while being deleted
	prefixMap     = 'M' // M lineage block ^gen → chunk ref (32 bytes) or empty for zero
	prefixChanged = 'C' // C lineage gen block → empty
	prefixChunk   = 'K' // K ref → chunk entry (refcount and locations)
	prefixZone    = 'Z' // Z name → zone number (uint32)
	prefixPending = 'P' // P id → empty: the image's chunks await replication
	prefixSnap    = 'S' // S lineage gen → snapshot ID (uint64): a lineage's snapshots in order
	prefixJournal = 'J' // J id → journal mark: a volume's write-back journal, incarnation and folded seq
)

var (
	formatKey  = []byte{prefixFormat}
	counterKey = []byte{prefixCounter}
)

func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func imageKey(id ID) []byte { return put64([]byte{prefixImage}, uint64(id)) }

func lineageKey(l LineageID) []byte { return put64([]byte{prefixLineage}, uint64(l)) }

func genKey(l LineageID, g Generation) []byte {
	return put64(put64([]byte{prefixGen}, uint64(l)), uint64(g))
}

// genPrefix is the start of lineage l's generation keys; genPrefix(l+1) ends them.
func genPrefix(l LineageID) []byte { return put64([]byte{prefixGen}, uint64(l)) }

// mapKey stores the generation inverted: a forward scan from mapKey(l, b, g)
// meets the newest entry of block b at or below generation g first.
func mapKey(l LineageID, b uint64, g Generation) []byte {
	k := make([]byte, 0, 25)
	k = append(k, prefixMap)
	return put64(put64(put64(k, uint64(l)), b), ^uint64(g))
}

// mapBlockPrefix is the start of block b's entries; mapBlockPrefix(l, b+1) ends them.
func mapBlockPrefix(l LineageID, b uint64) []byte {
	return put64(put64([]byte{prefixMap}, uint64(l)), b)
}

func mapLineagePrefix(l LineageID) []byte { return put64([]byte{prefixMap}, uint64(l)) }

func changedKey(l LineageID, g Generation, b uint64) []byte {
	k := make([]byte, 0, 25)
	k = append(k, prefixChanged)
	return put64(put64(put64(k, uint64(l)), uint64(g)), b)
}

// changedGenPrefix is the start of generation g's changed set in lineage l.
func changedGenPrefix(l LineageID, g Generation) []byte {
	return put64(put64([]byte{prefixChanged}, uint64(l)), uint64(g))
}

func changedLineagePrefix(l LineageID) []byte { return put64([]byte{prefixChanged}, uint64(l)) }

func chunkKey(r chunks.Ref) []byte { return append([]byte{prefixChunk}, r[:]...) }

func zoneKey(name string) []byte { return append([]byte{prefixZone}, name...) }

func pendingKey(id ID) []byte { return put64([]byte{prefixPending}, uint64(id)) }

func journalKey(id ID) []byte { return put64([]byte{prefixJournal}, uint64(id)) }

func snapKey(l LineageID, g Generation) []byte {
	return put64(put64([]byte{prefixSnap}, uint64(l)), uint64(g))
}

func decodeSnapKey(k []byte) (LineageID, Generation, error) {
	if len(k) != 17 || k[0] != prefixSnap {
		return 0, 0, keyError("snapshot index", k)
	}
	return LineageID(binary.BigEndian.Uint64(k[1:])), Generation(binary.BigEndian.Uint64(k[9:])), nil
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil (no bound) when p is all 0xff.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// keyError reports a key that does not decode: the store is corrupt.
func keyError(kind string, k []byte) error {
	return fmt.Errorf("%w: malformed %s key %x", ErrCorrupt, kind, k)
}

func decodeMapKey(k []byte) (l LineageID, b uint64, g Generation, err error) {
	if len(k) != 25 || k[0] != prefixMap {
		return 0, 0, 0, keyError("block map", k)
	}
	return LineageID(binary.BigEndian.Uint64(k[1:])), binary.BigEndian.Uint64(k[9:]),
		Generation(^binary.BigEndian.Uint64(k[17:])), nil
}

func decodeChangedKey(k []byte) (l LineageID, g Generation, b uint64, err error) {
	if len(k) != 25 || k[0] != prefixChanged {
		return 0, 0, 0, keyError("changed-set", k)
	}
	return LineageID(binary.BigEndian.Uint64(k[1:])), Generation(binary.BigEndian.Uint64(k[9:])),
		binary.BigEndian.Uint64(k[17:]), nil
}

func decodeGenKey(k []byte) (l LineageID, g Generation, err error) {
	if len(k) != 17 || k[0] != prefixGen {
		return 0, 0, keyError("generation", k)
	}
	return LineageID(binary.BigEndian.Uint64(k[1:])), Generation(binary.BigEndian.Uint64(k[9:])), nil
}

func decodeChunkKey(k []byte) (chunks.Ref, error) {
	var r chunks.Ref
	if len(k) != 1+len(r) || k[0] != prefixChunk {
		return r, keyError("chunk", k)
	}
	copy(r[:], k[1:])
	return r, nil
}

func decodeIDKey(k []byte, prefix byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefix {
		return 0, keyError(string(prefix), k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}
