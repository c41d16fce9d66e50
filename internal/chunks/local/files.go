package local

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// maxOpenFiles bounds the pack files kept open for reading. Opening and
// closing a file for every 64 KiB chunk read cost as much as the read
// itself; packs are immutable, so an open file stays valid.
const maxOpenFiles = 128

// fileCache keeps recently read files open. A file is closed once it is
// both evicted (least recently used, or its object deleted or replaced)
// and no longer being read.
type fileCache struct {
	mu    sync.Mutex
	files map[string]*openFile
	lru   list.List // front: most recently used
}

type openFile struct {
	f       File
	path    string
	refs    int
	evicted bool
	elem    *list.Element
	checked atomic.Int64 // when (unix nanoseconds) f was last seen linked
}

// recheckEvery bounds how often a cached file's link count is checked: an
// fstat per 64 KiB read would cost a few percent of a download.
const recheckEvery = 100 * time.Millisecond

// stale reports whether the file was unlinked, checking at most every
// recheckEvery.
func (of *openFile) stale() bool {
	now := time.Now().UnixNano()
	if now-of.checked.Load() < int64(recheckEvery) {
		return false
	}
	if unlinked(of.f) {
		return true
	}
	of.checked.Store(now)
	return false
}

// acquire returns path's open file, opening it with open if needed; the
// caller must release it. A cached file that was deleted behind the
// Backend's back (its link count is zero: a zone's directory removed, say)
// is dropped and the path opened anew, so that the loss shows within
// recheckEvery rather than once the file leaves the cache.
func (c *fileCache) acquire(path string, open func(string) (File, error)) (*openFile, error) {
	c.mu.Lock()
	if of := c.files[path]; of != nil {
		of.refs++
		c.lru.MoveToFront(of.elem)
		c.mu.Unlock()
		if !of.stale() {
			return of, nil
		}
		c.release(of)
		c.forget(path)
	} else {
		c.mu.Unlock()
	}
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if of := c.files[path]; of != nil { // opened meanwhile by another reader
		of.refs++
		f.Close()
		return of, nil
	}
	if c.files == nil {
		c.files = make(map[string]*openFile)
	}
	of := &openFile{f: f, path: path, refs: 1}
	of.elem = c.lru.PushFront(of)
	c.files[path] = of
	for c.lru.Len() > maxOpenFiles {
		c.evictLocked(c.lru.Back().Value.(*openFile))
	}
	return of, nil
}

func (c *fileCache) release(of *openFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if of.refs--; of.refs == 0 && of.evicted {
		of.f.Close()
	}
}

// forget evicts path, whose object was deleted or replaced: later reads
// open the file anew.
func (c *fileCache) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if of := c.files[path]; of != nil {
		c.evictLocked(of)
	}
}

func (c *fileCache) evictLocked(of *openFile) {
	delete(c.files, of.path)
	c.lru.Remove(of.elem)
	of.evicted = true
	if of.refs == 0 {
		of.f.Close()
	}
}

// closeAll evicts every file.
func (c *fileCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, of := range c.files {
		c.evictLocked(of)
	}
}
