//go:build unix

package local

import (
	"io/fs"
	"syscall"
)

// unlinked reports whether an open file has lost its last name: its
// object was deleted, or its whole directory removed, behind the Backend.
func unlinked(f File) bool {
	sf, ok := f.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return false
	}
	info, err := sf.Stat()
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
