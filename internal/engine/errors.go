package engine

import (
	"errors"
	"fmt"
	"syscall"
)

// A store that cannot take a write for want of space or permission stays
// that way until an operator acts, unlike a store that is unreachable for
// a while. Callers tell the two apart through the operating system's error,
// which every layer (bbolt, chunks/local, the engine) keeps in its wraps:
// these report it, wherever in the chain it sits.

// NoSpace reports whether err says a store ran out of room: no space left
// on its filesystem (ENOSPC), a quota (EDQUOT), or a file size limit
// (EFBIG).
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// NotWritable reports whether err says a store refuses writes: permission
// denied (EACCES, EPERM) or a read-only filesystem (EROFS).
func NotWritable(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS)
}

// zoneWriteError names the zone whose store failed a write. A zone that is
// full or refuses writes keeps that cause and is not called unavailable:
// ErrZoneUnavailable tells clients to retry, and these will not pass by
// themselves.
func zoneWriteError(zone string, err error) error {
	if NoSpace(err) || NotWritable(err) {
		return fmt.Errorf("zone %s: %w", zone, err)
	}
	return fmt.Errorf("%w: zone %s: %w", ErrZoneUnavailable, zone, err)
}
