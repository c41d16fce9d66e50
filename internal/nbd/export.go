package nbd

import (
	"context"
	"sync"
)

// export is one exported Device and the state its connections share.
type export struct {
	name     string
	dev      Device
	size     int64
	readOnly bool
	flags    uint16 // transmission flags

	conns   map[*conn]struct{} // guarded by Server.mu
	removed bool               // guarded by Server.mu

	locks  rangeLocker // writes to overlapping sectors
	writes barrier     // writes in flight, for FLUSH
}

// extent is the byte range [start, end).
type extent struct{ start, end int64 }

func (x extent) empty() bool { return x.start >= x.end }

func alignDown(n int64) int64 { return n &^ (SectorSize - 1) }
func alignUp(n int64) int64   { return alignDown(n + SectorSize - 1) }

// split divides [off, off+n) into a partial sector at the head, whole sectors
// in the middle and a partial sector at the tail; any may be empty. A range
// inside one sector that reaches neither of its ends is all head.
func split(off, n int64) (head, mid, tail extent) {
	end := off + n
	a, b := alignUp(off), alignDown(end)
	if a > b {
		return extent{off, end}, extent{}, extent{}
	}
	return extent{off, a}, extent{a, b}, extent{b, end}
}

// read returns n bytes at off.
func (e *export) read(ctx context.Context, off, n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	a, b := alignDown(off), alignUp(off+n)
	buf := make([]byte, b-a)
	if err := e.dev.ReadAt(ctx, buf, a); err != nil {
		return nil, err
	}
	return buf[off-a : off-a+n], nil
}

// write writes p at off: whole sectors directly, partial ones by
// read-modify-write.
func (e *export) write(ctx context.Context, off int64, p []byte) error {
	n := int64(len(p))
	if n == 0 {
		return nil
	}
	unlock, err := e.locks.lock(ctx, alignDown(off), alignUp(off+n))
	if err != nil {
		return err
	}
	defer unlock()
	head, mid, tail := split(off, n)
	if !mid.empty() {
		if err := e.dev.WriteAt(ctx, p[mid.start-off:mid.end-off], mid.start); err != nil {
			return err
		}
	}
	for _, part := range [2]extent{head, tail} {
		if part.empty() {
			continue
		}
		if err := e.patch(ctx, part, func(b []byte) { copy(b, p[part.start-off:part.end-off]) }); err != nil {
			return err
		}
	}
	return nil
}

// zero makes [off, off+n) read as zeros: whole sectors with Device.Zero,
// partial ones by read-modify-write.
func (e *export) zero(ctx context.Context, off, n int64) error {
	if n == 0 {
		return nil
	}
	unlock, err := e.locks.lock(ctx, alignDown(off), alignUp(off+n))
	if err != nil {
		return err
	}
	defer unlock()
	head, mid, tail := split(off, n)
	if !mid.empty() {
		if err := e.dev.Zero(ctx, mid.start, mid.end-mid.start); err != nil {
			return err
		}
	}
	for _, part := range [2]extent{head, tail} {
		if part.empty() {
			continue
		}
		if err := e.patch(ctx, part, func(b []byte) { clear(b) }); err != nil {
			return err
		}
	}
	return nil
}

// trim discards the whole sectors in [off, off+n), by zeroing them. Partial
// sectors are left alone: trim is a hint, and the client may not assume
// anything about the trimmed range's contents.
func (e *export) trim(ctx context.Context, off, n int64) error {
	_, mid, _ := split(off, n)
	if mid.empty() {
		return nil
	}
	unlock, err := e.locks.lock(ctx, mid.start, mid.end)
	if err != nil {
		return err
	}
	defer unlock()
	return e.dev.Zero(ctx, mid.start, mid.end-mid.start)
}

// patch rewrites the sector holding part, after fill has changed part's bytes
// in a copy of it. The caller holds the range lock covering that sector.
func (e *export) patch(ctx context.Context, part extent, fill func([]byte)) error {
	s := alignDown(part.start)
	sec := make([]byte, SectorSize)
	if err := e.dev.ReadAt(ctx, sec, s); err != nil {
		return err
	}
	fill(sec[part.start-s : part.end-s])
	return e.dev.WriteAt(ctx, sec, s)
}

// rangeLocker grants exclusive locks on byte ranges; locks on disjoint ranges
// are held at once. Few writes are in flight per export (MaxInFlight per
// connection), so a list is enough.
type rangeLocker struct {
	mu   sync.Mutex
	held []*heldRange
}

type heldRange struct {
	extent
	released chan struct{}
}

// lock waits until no held range overlaps [start, end), then holds it until
// unlock is called.
func (l *rangeLocker) lock(ctx context.Context, start, end int64) (unlock func(), err error) {
	for {
		l.mu.Lock()
		var busy chan struct{}
		for _, h := range l.held {
			if h.start < end && start < h.end {
				busy = h.released
				break
			}
		}
		if busy == nil {
			h := &heldRange{extent{start, end}, make(chan struct{})}
			l.held = append(l.held, h)
			l.mu.Unlock()
			return func() { l.release(h) }, nil
		}
		l.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *rangeLocker) release(h *heldRange) {
	l.mu.Lock()
	for i, x := range l.held {
		if x == h {
			last := len(l.held) - 1
			l.held[i] = l.held[last]
			l.held[last] = nil
			l.held = l.held[:last]
			break
		}
	}
	l.mu.Unlock()
	close(h.released)
}

// barrier tracks the writes in flight on an export so that a flush can wait
// for those received before it, and not for those received after.
type barrier struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan struct{}
}

// begin records a write; call done when it has finished.
func (b *barrier) begin() (done func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = make(map[uint64]chan struct{})
	}
	id, ch := b.next, make(chan struct{})
	b.next++
	b.pending[id] = ch
	return func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		close(ch)
	}
}

// inFlight returns a channel per write in flight, closed when it finishes.
func (b *barrier) inFlight() []chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	chs := make([]chan struct{}, 0, len(b.pending))
	for _, ch := range b.pending {
		chs = append(chs, ch)
	}
	return chs
}

// wait waits for every channel in chs to close.
func wait(ctx context.Context, chs []chan struct{}) error {
	for _, ch := range chs {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
