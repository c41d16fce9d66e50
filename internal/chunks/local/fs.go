package local

import (
	"io"
	"io/fs"
	"os"
)

// FS is the file system a Backend works through. The operating system's is
// the default; tests inject one that simulates crashes. Paths are the
// operating system's (filepath), and errors are *fs.PathError like the os
// package's, so errors.Is(err, fs.ErrNotExist) and errno checks work.
type FS interface {
	// CreateTemp creates and opens a new file in dir for writing, as
	// os.CreateTemp does.
	CreateTemp(dir, pattern string) (File, error)
	// Open opens a file for reading.
	Open(name string) (File, error)
	// Rename replaces newpath by oldpath atomically. It is durable only
	// once the directories involved are synced.
	Rename(oldpath, newpath string) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Mkdir creates a directory, which is durable once its parent is synced.
	Mkdir(name string, perm fs.FileMode) error
	// ReadDir lists a directory in name order.
	ReadDir(name string) ([]fs.DirEntry, error)
	// SyncDir makes the directory's entries durable: the files created in,
	// renamed into or removed from it.
	SyncDir(name string) error
}

// File is an open file of an FS.
type File interface {
	io.Writer
	io.ReaderAt
	// Name returns the path the file was opened or created with.
	Name() string
	// Sync makes the file's contents durable.
	Sync() error
	Close() error
}

// OS returns the operating system's file system.
func OS() FS { return osFS{} }

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Open(name string) (File, error)               { return os.Open(name) }
func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
