package chunkstest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

var _ chunks.Backend = (*Mem)(nil)

// Mem is an in-memory chunks.Backend. Every Put is durable at once, so it
// has nothing to lose in a crash.
type Mem struct {
	mu   sync.RWMutex
	objs map[string][]byte
}

// NewMem returns an empty Mem.
func NewMem() *Mem { return &Mem{objs: make(map[string][]byte)} }

// Put stores a copy of data.
func (m *Mem) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	obj := slices.Clone(data)
	if obj == nil {
		obj = []byte{}
	}
	m.mu.Lock()
	m.objs[name] = obj
	m.mu.Unlock()
	return nil
}

// ReadAt fills p from offset off of the named object.
func (m *Mem) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	obj, ok := m.objs[name]
	if !ok {
		return chunks.ErrNotFound
	}
	if off < 0 || off > int64(len(obj)) || int64(len(p)) > int64(len(obj))-off {
		return fmt.Errorf("chunkstest: read %s: range [%d, %d) outside %d bytes", name, off, off+int64(len(p)), len(obj))
	}
	copy(p, obj[off:])
	return nil
}

// Delete removes the named object if it exists.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objs, name)
	m.mu.Unlock()
	return nil
}

// List calls fn for each object under prefix in name order. fn may call m.
func (m *Mem) List(ctx context.Context, prefix string, fn func(name string, size int64) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type entry struct {
		name string
		size int64
	}
	var found []entry
	m.mu.RLock()
	for name, obj := range m.objs {
		if strings.HasPrefix(name, prefix) {
			found = append(found, entry{name, int64(len(obj))})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(found, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	for _, e := range found {
		if err := fn(e.name, e.size); err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing.
func (m *Mem) Close() error { return nil }
