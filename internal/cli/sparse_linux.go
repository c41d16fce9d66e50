package cli

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dataExtents returns the runs of f within [0, size) that may hold data:
// SEEK_DATA and SEEK_HOLE skip the holes of a sparse image, so that a
// mostly empty 1 TiB image is not read through. On a file system without
// them (or a block device) the whole file is one run.
func dataExtents(f *os.File, size int64) []extent {
	whole := []extent{{start: 0, end: size}}
	var out []extent
	for off := int64(0); off < size; {
		d, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return whole
		}
		if d >= size {
			break
		}
		h, err := f.Seek(d, unix.SEEK_HOLE)
		if err != nil {
			return whole
		}
		h = min(h, size)
		if h <= d {
			return whole
		}
		out = append(out, extent{start: d, end: h})
		off = h
	}
	return out
}
