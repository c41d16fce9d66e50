package metatest

import (
	"context"
	"sync/atomic"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// Counts is a snapshot of the operations a [CountingStore] has passed on.
// Every call counts, whatever its result: a Put refused with
// [meta.ErrReadOnly] is a Put, and so is a Put in an Update that aborts.
type Counts struct {
	Views   int64 // View calls
	Updates int64 // Update calls
	// UpdateRuns counts the runs of Update's fn: more than Updates when the
	// backend retried after a serialization conflict, fewer when an Update
	// failed before running fn.
	UpdateRuns int64
	Gets       int64
	Puts       int64
	Deletes    int64
	Scans      int64 // Scan calls
	ScanKeys   int64 // calls of Scan's fn, the key that stops a scan included
}

// Ops is the metadata operations Counts stands for: one per Get, Put,
// Delete and Scan call, plus one per key a scan visited. It is the figure
// the engine's cost tests compare with DESIGN.md's table ("metaops/op").
func (c Counts) Ops() int64 {
	return c.Gets + c.Puts + c.Deletes + c.Scans + c.ScanKeys
}

// CountingStore is a [meta.Store] that counts the operations it passes to
// the store it wraps. It is safe for concurrent use, as the wrapped store is.
type CountingStore struct {
	s meta.Store

	views, updates, updateRuns atomic.Int64
	gets, puts, deletes        atomic.Int64
	scans, scanKeys            atomic.Int64
}

var _ meta.Store = (*CountingStore)(nil)

// Counting returns a CountingStore over s, with every count at zero.
func Counting(s meta.Store) *CountingStore {
	return &CountingStore{s: s}
}

// Counts returns the counts so far. Each field is read atomically but not
// all together: for exact figures, read when no transaction is running.
func (c *CountingStore) Counts() Counts {
	return Counts{
		Views:      c.views.Load(),
		Updates:    c.updates.Load(),
		UpdateRuns: c.updateRuns.Load(),
		Gets:       c.gets.Load(),
		Puts:       c.puts.Load(),
		Deletes:    c.deletes.Load(),
		Scans:      c.scans.Load(),
		ScanKeys:   c.scanKeys.Load(),
	}
}

// Reset sets every count to zero.
func (c *CountingStore) Reset() {
	for _, n := range []*atomic.Int64{
		&c.views, &c.updates, &c.updateRuns,
		&c.gets, &c.puts, &c.deletes, &c.scans, &c.scanKeys,
	} {
		n.Store(0)
	}
}

// View implements [meta.Store.View].
func (c *CountingStore) View(ctx context.Context, fn func(meta.Tx) error) error {
	c.views.Add(1)
	return c.s.View(ctx, func(tx meta.Tx) error {
		return fn(&countingTx{tx: tx, c: c})
	})
}

// Update implements [meta.Store.Update].
func (c *CountingStore) Update(ctx context.Context, fn func(meta.Tx) error) error {
	c.updates.Add(1)
	return c.s.Update(ctx, func(tx meta.Tx) error {
		c.updateRuns.Add(1)
		return fn(&countingTx{tx: tx, c: c})
	})
}

// Close implements [meta.Store.Close] by closing the wrapped store.
func (c *CountingStore) Close() error { return c.s.Close() }

type countingTx struct {
	tx meta.Tx
	c  *CountingStore
}

func (t *countingTx) Get(key []byte) ([]byte, error) {
	t.c.gets.Add(1)
	return t.tx.Get(key)
}

func (t *countingTx) Put(key, value []byte) error {
	t.c.puts.Add(1)
	return t.tx.Put(key, value)
}

func (t *countingTx) Delete(key []byte) error {
	t.c.deletes.Add(1)
	return t.tx.Delete(key)
}

func (t *countingTx) Scan(start, end []byte, fn func(key, value []byte) error) error {
	t.c.scans.Add(1)
	return t.tx.Scan(start, end, func(key, value []byte) error {
		t.c.scanKeys.Add(1)
		return fn(key, value)
	})
}
