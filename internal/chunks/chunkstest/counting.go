package chunkstest

import (
	"context"
	"sync/atomic"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

var _ chunks.Backend = (*CountingBackend)(nil)

// Stats counts the calls a CountingBackend has seen, failed ones included.
type Stats struct {
	Puts, PutBytes     int64
	ReadAts, ReadBytes int64
	Deletes            int64
	Lists              int64
}

// CountingBackend wraps a Backend and counts its calls and bytes, for tests
// and benchmarks that assert how much I/O an operation costs.
type CountingBackend struct {
	chunks.Backend
	puts, putBytes   atomic.Int64
	reads, readBytes atomic.Int64
	deletes, lists   atomic.Int64
}

// Counting wraps b.
func Counting(b chunks.Backend) *CountingBackend { return &CountingBackend{Backend: b} }

// Stats returns the counts so far.
func (c *CountingBackend) Stats() Stats {
	return Stats{
		Puts: c.puts.Load(), PutBytes: c.putBytes.Load(),
		ReadAts: c.reads.Load(), ReadBytes: c.readBytes.Load(),
		Deletes: c.deletes.Load(),
		Lists:   c.lists.Load(),
	}
}

// Reset sets the counts to zero.
func (c *CountingBackend) Reset() {
	for _, n := range []*atomic.Int64{&c.puts, &c.putBytes, &c.reads, &c.readBytes, &c.deletes, &c.lists} {
		n.Store(0)
	}
}

func (c *CountingBackend) Put(ctx context.Context, name string, data []byte) error {
	c.puts.Add(1)
	c.putBytes.Add(int64(len(data)))
	return c.Backend.Put(ctx, name, data)
}

func (c *CountingBackend) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	c.reads.Add(1)
	c.readBytes.Add(int64(len(p)))
	return c.Backend.ReadAt(ctx, name, p, off)
}

func (c *CountingBackend) Delete(ctx context.Context, name string) error {
	c.deletes.Add(1)
	return c.Backend.Delete(ctx, name)
}

func (c *CountingBackend) List(ctx context.Context, prefix string, fn func(name string, size int64) error) error {
	c.lists.Add(1)
	return c.Backend.List(ctx, prefix, fn)
}
