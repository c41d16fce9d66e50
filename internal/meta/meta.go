// Package meta defines the transactional, ordered key-value store that holds
// all deltadisk metadata, and the errors its implementations share.
//
// The engine's domain logic is written once on top of [Store]; each backend
// (meta/bolt embedded, later PostgreSQL) only stores ordered bytes.
// Every implementation must pass the conformance suite in meta/metatest.
package meta

import (
	"context"
	"errors"
)

var (
	// ErrNotFound is returned by [Tx.Get] when the key is absent.
	ErrNotFound = errors.New("meta: key not found")
	// ErrReadOnly is returned by [Tx.Put] and [Tx.Delete] inside [Store.View].
	ErrReadOnly = errors.New("meta: write in a read-only transaction")
	// ErrClosed is returned by [Store.View] and [Store.Update] after [Store.Close].
	ErrClosed = errors.New("meta: store closed")
	// ErrBusy is returned by [Store.Update] when its transaction kept
	// losing serialization conflicts until a deadline (a few seconds,
	// jittered): nothing was written, and the caller may retry later.
	// A store with one writer at a time (bbolt) never returns it.
	ErrBusy = errors.New("meta: store busy: too many conflicting transactions")
)

// Store is a transactional ordered key-value store. Keys sort bytewise.
// A Store is safe for concurrent use by multiple goroutines.
type Store interface {
	// View runs fn in a read-only transaction that sees one consistent state.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits if fn returns
	// nil; the commit is durable when Update returns. Transactions are
	// serializable. Update may call fn more than once (after a serialization
	// conflict), so fn must have no effect outside tx; when conflicts go on
	// past a deadline it gives up with ErrBusy. An error from fn is
	// returned unchanged (comparable with errors.Is) and nothing is written.
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is valid only inside the View or Update call that created it. A Tx sees
// its own writes. A Tx is not safe for concurrent use. Keys are 1 to 32768
// bytes.
type Tx interface {
	// Get returns the value stored at key, or ErrNotFound. The caller owns
	// the returned slice.
	Get(key []byte) ([]byte, error)
	// Put stores value at key, replacing any previous value. An empty value
	// is allowed and distinct from an absent key. Put does not retain the
	// caller's slices.
	Put(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Scan calls fn for each key in [start, end) in ascending order, in the
	// caller's goroutine; a nil end means no upper bound. It stops at the
	// first error fn returns and returns it, or early with the context's
	// error. The key and value passed to fn are read-only and valid only
	// during that call. fn must not modify the store through tx while
	// scanning; collect keys and change them afterwards.
	Scan(start, end []byte, fn func(key, value []byte) error) error
}
