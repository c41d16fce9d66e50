package chunks

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned by a [Backend] for an object that does not
	// exist. Backends translate their native not-found error into it at the
	// boundary.
	ErrNotFound = errors.New("chunks: object not found")
	// ErrCorrupt is the kind of every [*CorruptError]: stored bytes that fail
	// their checks (hash, framing, checksum or codec).
	ErrCorrupt = errors.New("chunks: corrupt chunk")
	// ErrTooLarge is returned by [Store.Put] for a chunk over [MaxChunkSize].
	ErrTooLarge = errors.New("chunks: chunk too large")
)

// CorruptError reports stored bytes that fail their checks. Ref is the zero
// Ref when the damage is in a pack's framing rather than in one chunk.
type CorruptError struct {
	Ref  Ref    // the chunk, if known
	Pack string // the pack object
	Err  error  // what was wrong
}

func (e *CorruptError) Error() string {
	if e.Ref == (Ref{}) {
		return fmt.Sprintf("chunks: corrupt pack %s: %v", e.Pack, e.Err)
	}
	return fmt.Sprintf("chunks: corrupt chunk %s in pack %s: %v", e.Ref, e.Pack, e.Err)
}

// Unwrap returns ErrCorrupt and Err, so errors.Is(err, ErrCorrupt) holds.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }
