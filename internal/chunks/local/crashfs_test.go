package local_test

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks/local"
)

// crashFS is an in-memory local.FS that remembers what is durable: a file's
// contents as of its last Sync, and a directory's entries as of its last
// SyncDir. crash returns the file system a machine would find after losing
// power, which holds only that. Paths are slash-separated and absolute.
type crashFS struct {
	mu    sync.Mutex
	root  *node
	seq   int
	after func() // called, unlocked, after each change, if set
}

// A node is a file or a directory.
type node struct {
	dir    bool
	data   []byte // file: current contents
	synced []byte // file: contents as of the last Sync
	ents   map[string]*node
	dents  map[string]*node // directory: entries as of the last SyncDir
	mtime  time.Time
}

func newDir() *node {
	return &node{dir: true, ents: map[string]*node{}, dents: map[string]*node{}, mtime: time.Now()}
}

func newCrashFS() *crashFS { return &crashFS{root: newDir()} }

// crash returns what survives a power loss now.
func (c *crashFS) crash() *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	var durable func(n *node) *node
	durable = func(n *node) *node {
		if !n.dir {
			return &node{data: slices.Clone(n.synced), synced: slices.Clone(n.synced), mtime: n.mtime}
		}
		d := newDir()
		for name, child := range n.dents {
			d.ents[name] = durable(child)
			d.dents[name] = d.ents[name]
		}
		return d
	}
	return &crashFS{root: durable(c.root)}
}

func (c *crashFS) changed() {
	if c.after != nil {
		c.after()
	}
}

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// lookup returns the node at name. c.mu must be held.
func (c *crashFS) lookup(op, name string) (*node, error) {
	n := c.root
	for seg := range strings.SplitSeq(strings.Trim(path.Clean(name), "/"), "/") {
		if seg == "" {
			continue
		}
		if !n.dir {
			return nil, pathErr(op, name, syscall.ENOTDIR)
		}
		if n = n.ents[seg]; n == nil {
			return nil, pathErr(op, name, fs.ErrNotExist)
		}
	}
	return n, nil
}

// parent returns the directory holding name, and name's last segment.
func (c *crashFS) parent(op, name string) (*node, string, error) {
	dir, base := path.Split(path.Clean(name))
	d, err := c.lookup(op, dir)
	if err != nil {
		return nil, "", err
	}
	if !d.dir {
		return nil, "", pathErr(op, name, syscall.ENOTDIR)
	}
	return d, base, nil
}

func (c *crashFS) CreateTemp(dir, pattern string) (local.File, error) {
	c.mu.Lock()
	d, err := c.lookup("createtemp", dir)
	if err == nil && !d.dir {
		err = pathErr("createtemp", dir, syscall.ENOTDIR)
	}
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.seq++
	base := strings.Replace(pattern, "*", fmt.Sprint(c.seq), 1)
	n := &node{mtime: time.Now()}
	d.ents[base] = n
	c.mu.Unlock()
	c.changed()
	return &crashFile{fs: c, n: n, name: path.Join(dir, base)}, nil
}

func (c *crashFS) Open(name string) (local.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	return &crashFile{fs: c, n: n, name: name}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	od, obase, err := c.parent("rename", oldpath)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	nd, nbase, err := c.parent("rename", newpath)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	n := od.ents[obase]
	switch {
	case n == nil:
		err = pathErr("rename", oldpath, fs.ErrNotExist)
	case nd.ents[nbase] != nil && nd.ents[nbase].dir:
		err = pathErr("rename", newpath, syscall.EISDIR)
	default:
		delete(od.ents, obase)
		nd.ents[nbase] = n
	}
	c.mu.Unlock()
	c.changed()
	return err
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	d, base, err := c.parent("remove", name)
	if err == nil {
		switch n := d.ents[base]; {
		case n == nil:
			err = pathErr("remove", name, fs.ErrNotExist)
		case n.dir && len(n.ents) > 0:
			err = pathErr("remove", name, syscall.ENOTEMPTY)
		default:
			delete(d.ents, base)
		}
	}
	c.mu.Unlock()
	c.changed()
	return err
}

func (c *crashFS) Mkdir(name string, perm fs.FileMode) error {
	c.mu.Lock()
	d, base, err := c.parent("mkdir", name)
	if err == nil {
		if d.ents[base] != nil {
			err = pathErr("mkdir", name, fs.ErrExist)
		} else {
			d.ents[base] = newDir()
		}
	}
	c.mu.Unlock()
	c.changed()
	return err
}

func (c *crashFS) ReadDir(name string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := c.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !d.dir {
		return nil, pathErr("readdir", name, syscall.ENOTDIR)
	}
	var ents []fs.DirEntry
	for base, n := range d.ents {
		ents = append(ents, fs.FileInfoToDirEntry(info{name: base, size: int64(len(n.data)), dir: n.dir, mtime: n.mtime}))
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, nil
}

func (c *crashFS) SyncDir(name string) error {
	c.mu.Lock()
	d, err := c.lookup("syncdir", name)
	if err == nil && !d.dir {
		err = pathErr("syncdir", name, syscall.ENOTDIR)
	}
	if err == nil {
		d.dents = maps.Clone(d.ents)
	}
	c.mu.Unlock()
	c.changed()
	return err
}

type crashFile struct {
	fs   *crashFS
	n    *node
	name string
}

func (f *crashFile) Name() string { return f.name }
func (f *crashFile) Close() error { return nil }

func (f *crashFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	f.n.data = append(f.n.data, p...)
	f.fs.mu.Unlock()
	f.fs.changed()
	return len(p), nil
}

func (f *crashFile) Sync() error {
	f.fs.mu.Lock()
	f.n.synced = slices.Clone(f.n.data)
	f.fs.mu.Unlock()
	f.fs.changed()
	return nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// info is the fs.FileInfo of a crashFS node.
type info struct {
	name  string
	size  int64
	dir   bool
	mtime time.Time
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.size }
func (i info) ModTime() time.Time { return i.mtime }
func (i info) IsDir() bool        { return i.dir }
func (i info) Sys() any           { return nil }

func (i info) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
