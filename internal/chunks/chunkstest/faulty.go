package chunkstest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

var _ chunks.Backend = (*FaultyBackend)(nil)

// Op names a Backend method.
type Op uint8

const (
	OpPut Op = iota + 1
	OpReadAt
	OpDelete
	OpList
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "Put"
	case OpReadAt:
		return "ReadAt"
	case OpDelete:
		return "Delete"
	case OpList:
		return "List"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Fault says which calls of a FaultyBackend fail and how. For example,
// ENOSPC on the third Put:
//
//	Fault{Op: OpPut, Skip: 2, Times: 1, Err: syscall.ENOSPC}
type Fault struct {
	Op Op
	// Match selects calls by object name (the prefix, for List); nil
	// selects all.
	Match func(name string) bool
	// Skip lets this many selected calls through before the fault fires.
	Skip int
	// Times is how many selected calls the fault fires on after Skip; zero
	// means every one.
	Times int
	// Err is what the call returns.
	Err error
	// AfterCall runs the wrapped call before returning Err: a Put that
	// landed although its caller sees an error.
	AfterCall bool
	// Corrupt, when Err is nil, damages data silently: for Put, a copy of
	// the data before it is stored; for ReadAt, the bytes read (p, read
	// from off).
	Corrupt func(p []byte, off int64)
}

// FaultyBackend wraps a Backend and injects Faults. Faults are tried in the
// order they were added; the first that fires on a call decides its outcome,
// and the faults after it do not count the call. It is safe for concurrent
// use.
type FaultyBackend struct {
	chunks.Backend
	mu     sync.Mutex
	faults []*faultState
	fired  int
}

type faultState struct {
	Fault
	seen int // selected calls so far
}

// Faulty wraps b with faults.
func Faulty(b chunks.Backend, faults ...Fault) *FaultyBackend {
	f := &FaultyBackend{Backend: b}
	for _, ft := range faults {
		f.Inject(ft)
	}
	return f
}

// Inject adds a fault.
func (f *FaultyBackend) Inject(ft Fault) {
	f.mu.Lock()
	f.faults = append(f.faults, &faultState{Fault: ft})
	f.mu.Unlock()
}

// Fired returns how many calls faults have fired on, so a test can check
// that its fault was exercised.
func (f *FaultyBackend) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// fault returns the fault that fires on this call, or nil.
func (f *FaultyBackend) fault(op Op, name string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.faults {
		if ft.Op != op || ft.Match != nil && !ft.Match(name) {
			continue
		}
		ft.seen++
		if ft.seen > ft.Skip && (ft.Times == 0 || ft.seen <= ft.Skip+ft.Times) {
			f.fired++
			return &ft.Fault
		}
	}
	return nil
}

// call runs do as the fault ft (nil: none) says.
func call(ft *Fault, do func() error) error {
	switch {
	case ft == nil || ft.Err == nil:
		return do()
	case ft.AfterCall:
		if err := do(); err != nil {
			return err
		}
	}
	return ft.Err
}

func (f *FaultyBackend) Put(ctx context.Context, name string, data []byte) error {
	ft := f.fault(OpPut, name)
	if ft != nil && ft.Err == nil && ft.Corrupt != nil {
		data = slices.Clone(data)
		ft.Corrupt(data, 0)
	}
	return call(ft, func() error { return f.Backend.Put(ctx, name, data) })
}

func (f *FaultyBackend) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	ft := f.fault(OpReadAt, name)
	return call(ft, func() error {
		err := f.Backend.ReadAt(ctx, name, p, off)
		if err == nil && ft != nil && ft.Err == nil && ft.Corrupt != nil {
			ft.Corrupt(p, off)
		}
		return err
	})
}

func (f *FaultyBackend) Delete(ctx context.Context, name string) error {
	return call(f.fault(OpDelete, name), func() error { return f.Backend.Delete(ctx, name) })
}

func (f *FaultyBackend) List(ctx context.Context, prefix string, fn func(name string, size int64) error) error {
	return call(f.fault(OpList, prefix), func() error { return f.Backend.List(ctx, prefix, fn) })
}
