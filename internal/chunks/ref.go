package chunks

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// Ref is the BLAKE3-256 hash of a chunk's plaintext. It names the chunk
// wherever it is stored.
type Ref [32]byte

// Sum returns the Ref of data. zeebo/blake3 hashes a 64 KiB block on one
// core with SIMD at about twice the speed of lukechampine.com/blake3, which
// spreads small inputs over goroutines (measured: 2.6 vs 1.3 GB/s here).
func Sum(data []byte) Ref { return blake3.Sum256(data) }

// String returns r in lowercase hex.
func (r Ref) String() string { return hex.EncodeToString(r[:]) }

// Codec says how a chunk's bytes are stored in a pack. It is recorded per
// chunk, so packs written with and without compression read the same way.
type Codec uint8

const (
	// CodecRaw stores the plaintext as is.
	CodecRaw Codec = 0
	// CodecS2 stores an s2 block (github.com/klauspost/compress/s2) that
	// decodes to the plaintext.
	CodecS2 Codec = 1
)

func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecS2:
		return "s2"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// Location says where one copy of a chunk lies in one backend.
type Location struct {
	Pack   string // pack object name, as ListPacks reports it
	Offset int64  // offset of the chunk's stored bytes inside the pack
	Length uint32 // stored (possibly compressed) length
	Codec  Codec
}

// Chunk is a chunk's plaintext with its Ref.
type Chunk struct {
	// Ref must equal Sum(Data). Put trusts it rather than hashing every
	// chunk a second time (the caller hashed it to deduplicate); a wrong Ref
	// makes the chunk unreadable, since Get verifies. Builds with the
	// "invariants" tag check it in Put and panic on a mismatch.
	Ref  Ref
	Data []byte // the plaintext, at most MaxChunkSize bytes
}
