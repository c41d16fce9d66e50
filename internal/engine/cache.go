package engine

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

// blockCache holds the contents of hot blocks, read from a chunk store,
// decompressed and verified against their ref once, then served from
// memory. Keys are chunk refs: a ref names its contents, so an entry never
// goes stale; an overwritten block has a new ref and simply misses.
//
// Entries all have one size (a block), so the bound in bytes is a number of
// slots, allocated as they first fill and reused in place afterwards.
// Eviction is CLOCK per shard: a hit sets the slot's used bit, and the hand
// clears used bits until it finds a slot without one. New entries start
// unused, so a scan that reads each block once (a VM booting, a dd) cycles
// through the unused slots and leaves the blocks read twice in place for a
// revolution more.
//
// No entry's memory ever leaves the cache: reads copy out of a slot under
// the shard's read lock, and a slot is only rewritten under its write lock,
// so callers cannot modify cached bytes and eviction cannot change bytes
// being copied.
type blockCache struct {
	size   int // bytes per entry
	shards []cacheShard
}

// cacheShardsMax spreads lock traffic; cacheShardMin keeps each shard's
// CLOCK meaningful (a one-slot shard evicts whatever was read last).
const (
	cacheShardsMax = 16
	cacheShardMin  = 8
)

type cacheShard struct {
	mu    sync.RWMutex
	index map[chunks.Ref]int // slot of each entry
	slots []cacheSlot        // fixed length: the shard's capacity
	n     int                // slots filled so far; slots[n:] have no data
	hand  int
	// flights holds a channel per ref being loaded, closed when the load
	// ends, so that concurrent misses of one block read storage once.
	flights map[chunks.Ref]chan struct{}

	hits, misses atomic.Uint64
}

type cacheSlot struct {
	ref  chunks.Ref
	data []byte
	used atomic.Bool
}

// newBlockCache returns a cache of at most bytes/size entries of size
// bytes each, or nil (no cache) when not even one fits.
func newBlockCache(bytes int64, size int) *blockCache {
	entries := bytes / int64(size)
	if entries < 1 {
		return nil
	}
	n := int64(cacheShardsMax)
	for n > 1 && entries/n < cacheShardMin {
		n /= 2
	}
	c := &blockCache{size: size, shards: make([]cacheShard, n)}
	for i := range c.shards {
		// The first entries%n shards take one slot more, so that the
		// capacity is exactly entries.
		k := entries / n
		if int64(i) < entries%n {
			k++
		}
		c.shards[i].index = make(map[chunks.Ref]int, k)
		c.shards[i].slots = make([]cacheSlot, k)
		c.shards[i].flights = make(map[chunks.Ref]chan struct{})
	}
	return c
}

func (c *blockCache) shard(ref chunks.Ref) *cacheShard {
	// A ref is a cryptographic hash: any 8 of its bytes are uniform.
	return &c.shards[binary.LittleEndian.Uint64(ref[:8])%uint64(len(c.shards))]
}

// read copies bytes [at, at+len(dst)) of the entry for ref into dst. On a
// miss it calls load, which must return the entry's whole contents,
// verified, or an error; only what load returns without error enters the
// cache (a copy: load's buffer stays the caller's). Concurrent misses of
// one ref call load once; the others wait for it, or for their own ctx, and
// call load themselves if it failed. at+len(dst) must not exceed the
// entry size.
func (c *blockCache) read(ctx context.Context, ref chunks.Ref, dst []byte, at int, load func() ([]byte, error)) error {
	s := c.shard(ref)
	if s.copyOut(ref, dst, at) {
		s.hits.Add(1)
		return nil
	}
	s.mu.Lock()
	if i, ok := s.index[ref]; ok { // filled since copyOut looked
		s.slots[i].used.Store(true)
		copy(dst, s.slots[i].data[at:])
		s.mu.Unlock()
		s.hits.Add(1)
		return nil
	}
	wait, waiting := s.flights[ref]
	var own chan struct{}
	if !waiting {
		own = make(chan struct{})
		s.flights[ref] = own
	}
	s.mu.Unlock()

	if waiting {
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.copyOut(ref, dst, at) {
			s.hits.Add(1)
			return nil
		}
		// The load failed (perhaps only its caller's ctx ended), or the
		// entry is already evicted: load it here.
	}
	s.misses.Add(1)
	data, err := load()
	s.mu.Lock()
	if err == nil && len(data) == c.size {
		s.insert(ref, data)
	}
	if own != nil {
		delete(s.flights, ref)
		close(own)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	copy(dst, data[at:])
	return nil
}

// add enters data as ref's contents, as a miss that loaded it would, for a
// block just written whose ref the writer computed from these very bytes.
func (c *blockCache) add(ctx context.Context, ref chunks.Ref, data []byte) {
	_ = c.read(ctx, ref, nil, 0, func() ([]byte, error) { return data, nil })
}

// copyOut copies from the entry for ref, if there is one, and marks it used.
func (s *cacheShard) copyOut(ref chunks.Ref, dst []byte, at int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[ref]
	if !ok {
		return false
	}
	sl := &s.slots[i]
	if !sl.used.Load() { // a load first: hot entries' cache lines stay shared
		sl.used.Store(true)
	}
	copy(dst, sl.data[at:])
	return true
}

// insert adds a copy of data under ref, evicting by CLOCK when the shard is
// full. s.mu must be held for writing.
func (s *cacheShard) insert(ref chunks.Ref, data []byte) {
	if _, ok := s.index[ref]; ok {
		return
	}
	var i int
	if s.n < len(s.slots) {
		i = s.n
		s.n++
		s.slots[i].data = make([]byte, len(data))
	} else {
		// Ends within one revolution: every step clears a used bit, and
		// no reader sets one while the write lock is held.
		for s.slots[s.hand].used.Load() {
			s.slots[s.hand].used.Store(false)
			s.hand = (s.hand + 1) % len(s.slots)
		}
		i = s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		delete(s.index, s.slots[i].ref)
	}
	sl := &s.slots[i]
	copy(sl.data, data)
	sl.ref = ref
	sl.used.Store(false)
	s.index[ref] = i
}

// CacheStats describes the cache of hot blocks (see [Config.CacheBytes]).
type CacheStats struct {
	// Hits counts block reads served from memory; Misses those that read
	// a chunk store (whether or not the read succeeded).
	Hits, Misses uint64
	// Bytes is the memory the cached contents take, Entries their number.
	Bytes   int64
	Entries int
}

// CacheStats returns the block cache's counters and size; all zero when
// the cache is disabled.
func (e *Engine) CacheStats() CacheStats {
	return e.cache.stats()
}

func (c *blockCache) stats() CacheStats {
	var st CacheStats
	if c == nil {
		return st
	}
	for i := range c.shards {
		s := &c.shards[i]
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		s.mu.RLock()
		st.Entries += s.n
		s.mu.RUnlock()
	}
	st.Bytes = int64(st.Entries) * int64(c.size)
	return st
}
