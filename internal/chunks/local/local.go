// Package local is a chunks.Backend over a directory of files: each object
// is a file at its name's path under the directory.
//
// Put writes a temporary file beside the target, syncs it, renames it into
// place and syncs the directory, so an object is either whole and durable or
// absent, even after a crash. Temporary files a crash leaves behind are
// removed by Open once they are old enough not to belong to a Put still
// running in another process sharing the directory.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

var _ chunks.Backend = (*Backend)(nil)

// tempPrefix starts the name of every temporary file. Object names may not
// have a segment starting with it.
const tempPrefix = ".tmp-"

// Config configures a Backend.
type Config struct {
	// Dir holds the objects. Required; created if missing.
	Dir string
	// FS is the file system to use. Nil means the operating system's.
	FS FS
	// TempMaxAge is how old a temporary file must be for Open to remove
	// it. A Put takes seconds at most, so an older temporary file was left
	// by a crash; a younger one may be a Put running in another process.
	// Zero means one hour.
	TempMaxAge time.Duration
	// Logger gets a line per stale temporary file removed. Nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; the caller sets Dir.
func DefaultConfig() Config { return Config{TempMaxAge: time.Hour} }

// Validate reports whether c can open a Backend.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("local: config: no Dir")
	}
	if c.TempMaxAge < 0 {
		return fmt.Errorf("local: config: negative TempMaxAge %v", c.TempMaxAge)
	}
	return nil
}

// Backend stores objects as files under a directory.
type Backend struct {
	dir  string
	fs   FS
	log  *slog.Logger
	dirs sync.Map // directories known to exist durably
	open fileCache
}

// Open opens the directory cfg.Dir, creating it if needed, and removes stale
// temporary files from it.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FS == nil {
		cfg.FS = OS()
	}
	if cfg.TempMaxAge == 0 {
		cfg.TempMaxAge = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{dir: filepath.Clean(cfg.Dir), fs: cfg.FS, log: cfg.Logger}
	if err := b.ensureDir(b.dir); err != nil {
		return nil, fmt.Errorf("local: open %s: %w", cfg.Dir, err)
	}
	if err := b.removeStale(ctx, b.dir, time.Now().Add(-cfg.TempMaxAge)); err != nil {
		return nil, fmt.Errorf("local: open %s: %w", cfg.Dir, err)
	}
	return b, nil
}

// removeStale removes the temporary files under dir last modified before
// cutoff.
func (b *Backend) removeStale(ctx context.Context, dir string, cutoff time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := b.fs.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := b.removeStale(ctx, p, cutoff); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue // gone already, or maybe in use
		}
		if err := b.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		b.log.Info("local: removed stale temporary file", "path", p, "mtime", info.ModTime())
	}
	return nil
}

// path returns the file path of an object, or an error for a name the
// Backend contract does not allow.
func (b *Backend) path(name string) (string, error) {
	if name == "." || !fs.ValidPath(name) {
		return "", fmt.Errorf("local: invalid object name %q", name)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, tempPrefix) {
			return "", fmt.Errorf("local: invalid object name %q: %q is reserved", name, tempPrefix)
		}
	}
	return filepath.Join(b.dir, filepath.FromSlash(name)), nil
}

// ensureDir creates dir and its parents as needed and makes each durable.
// It syncs the parent even when dir exists already, since another Put may
// have created it and not yet synced its parent.
func (b *Backend) ensureDir(dir string) error {
	if _, ok := b.dirs.Load(dir); ok {
		return nil
	}
	err := b.fs.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if parent := filepath.Dir(dir); parent != dir {
			b.dirs.Delete(parent) // cached, yet removed since
			if err := b.ensureDir(parent); err != nil {
				return err
			}
		}
		err = b.fs.Mkdir(dir, 0o700)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := b.fs.SyncDir(parent); err != nil {
			return err
		}
	}
	b.dirs.Store(dir, struct{}{})
	return nil
}

// Put writes data to a temporary file, syncs it, renames it over name's
// file and syncs the directory.
func (b *Backend) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := b.ensureDir(dir); err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	f, err := b.fs.CreateTemp(dir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was removed under us (a lost disk replaced by an
		// empty one): forget what exists and create it again, so that
		// the store can be refilled.
		b.dirs.Clear()
		if err = b.ensureDir(dir); err == nil {
			f, err = b.fs.CreateTemp(dir, tempPrefix+"*")
		}
	}
	if err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.fs.Rename(f.Name(), p)
		b.open.forget(p) // a cached file would still read the replaced object
	}
	if err != nil {
		b.fs.Remove(f.Name()) // best effort; Open removes it later otherwise
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	if err := b.fs.SyncDir(dir); err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	return nil
}

// notFound reports whether err means there is no object at a path: no such
// file, a path through a file, or a directory.
func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

// ReadAt reads p from offset off of name's file.
func (b *Backend) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := b.path(name)
	if err != nil {
		return err
	}
	if off < 0 {
		return fmt.Errorf("local: read %s: negative offset %d", name, off)
	}
	of, err := b.open.acquire(path, b.fs.Open)
	if notFound(err) {
		return chunks.ErrNotFound
	}
	if err != nil {
		return err
	}
	defer b.open.release(of)
	n, err := of.f.ReadAt(p, off)
	switch {
	case n == len(p):
		return nil
	case notFound(err):
		return chunks.ErrNotFound
	case err == io.EOF:
		return fmt.Errorf("local: read %s: range [%d, %d) past the end: %w", name, off, off+int64(len(p)), io.ErrUnexpectedEOF)
	}
	return err
}

// Delete removes name's file.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.path(name)
	if err != nil {
		return err
	}
	// The directory is not synced: a crash may bring the file back, and
	// deleting it again is what GC does with an unreferenced pack anyway.
	err = b.fs.Remove(p)
	b.open.forget(p) // after the remove: a reader cannot cache it again
	if err != nil && !notFound(err) {
		return err
	}
	return nil
}

// List walks the directory that holds the names with prefix.
func (b *Backend) List(ctx context.Context, prefix string, fn func(name string, size int64) error) error {
	base := prefix[:strings.LastIndexByte(prefix, '/')+1]
	return b.list(ctx, base, prefix, fn)
}

// list calls fn for the files under the directory of the name prefix dir
// ("" or ending in "/") whose names have prefix.
func (b *Backend) list(ctx context.Context, dir, prefix string, fn func(name string, size int64) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ents, err := b.fs.ReadDir(filepath.Join(b.dir, filepath.FromSlash(dir)))
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := dir + e.Name()
		switch {
		case strings.HasPrefix(e.Name(), tempPrefix):
		case e.IsDir():
			if strings.HasPrefix(name+"/", prefix) || strings.HasPrefix(prefix, name+"/") {
				if err := b.list(ctx, name+"/", prefix, fn); err != nil {
					return err
				}
			}
		case strings.HasPrefix(name, prefix):
			info, err := e.Info()
			if notFound(err) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if err := fn(name, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close does nothing: a Backend holds no open files between calls.
func (b *Backend) Close() error {
	b.open.closeAll()
	return nil
}
