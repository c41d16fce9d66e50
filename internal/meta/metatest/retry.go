package metatest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// The seam lets Update run its closure more than once, and PostgreSQL will:
// a serializable transaction that loses a conflict is rolled back and run
// again. A closure that changes anything outside its transaction (a counter,
// an appended slice, a started goroutine) then does it twice. bbolt never
// retries, so tests over it alone cannot see such a closure; these two
// wrappers make every Update retry, so the same tests can.

// errReplay ends a first run so that its transaction rolls back.
var errReplay = errors.New("metatest: first run discarded")

// Replaying returns a store whose Update runs fn twice in one transaction:
// first over an overlay that sees the transaction's state and takes the
// writes, which are then thrown away, and again for real. Both runs see
// the same state, so a closure whose outcome differs between them (or that
// fails the second time) keeps state outside its transaction.
func Replaying(s meta.Store) meta.Store { return &replaying{Store: s} }

type replaying struct{ meta.Store }

func (r *replaying) Update(ctx context.Context, fn func(meta.Tx) error) error {
	return r.Store.Update(ctx, func(tx meta.Tx) error {
		if err := fn(newOverlay(tx)); err != nil {
			return err
		}
		return fn(tx)
	})
}

// Conflicting returns a store whose every Update loses its first commit as
// a serialization conflict would: fn runs, its transaction is rolled back,
// and fn runs again in a new transaction, which other writers may have
// changed in between.
func Conflicting(s meta.Store) meta.Store { return &conflicting{Store: s} }

type conflicting struct{ meta.Store }

func (c *conflicting) Update(ctx context.Context, fn func(meta.Tx) error) error {
	err := c.Store.Update(ctx, func(tx meta.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errReplay
	})
	if !errors.Is(err, errReplay) {
		return err // fn failed: nothing was written, as without the wrapper
	}
	return c.Store.Update(ctx, fn)
}

// Wrap returns s wrapped as the environment variable DELTADISK_META_WRAP
// says: "replaying", "conflicting", or empty for s itself. Test helpers
// that open a store call it, so that CI runs their suites once more over
// each wrapper; tests that count operations must not.
func Wrap(tb testing.TB, s meta.Store) meta.Store {
	switch w := os.Getenv("DELTADISK_META_WRAP"); w {
	case "":
		return s
	case "replaying":
		return Replaying(s)
	case "conflicting":
		return Conflicting(s)
	default:
		tb.Fatalf("DELTADISK_META_WRAP=%q: want replaying, conflicting or nothing", w)
		return nil
	}
}

// overlay is a Tx that reads through to tx and keeps its own writes.
type overlay struct {
	tx   meta.Tx
	keys [][]byte          // keys written, sorted
	vals map[string][]byte // key → value; nil value: deleted
}

func newOverlay(tx meta.Tx) *overlay { return &overlay{tx: tx, vals: map[string][]byte{}} }

func (o *overlay) Get(key []byte) ([]byte, error) {
	if v, ok := o.vals[string(key)]; ok {
		if v == nil {
			return nil, meta.ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	return o.tx.Get(key)
}

func (o *overlay) set(key, value []byte) {
	if _, ok := o.vals[string(key)]; !ok {
		i, _ := slices.BinarySearchFunc(o.keys, key, bytes.Compare)
		o.keys = slices.Insert(o.keys, i, bytes.Clone(key))
	}
	o.vals[string(key)] = value
}

// maxKey is the seam's longest key.
const maxKey = 32768

func (o *overlay) Put(key, value []byte) error {
	if len(key) == 0 || len(key) > maxKey {
		return o.tx.Put(key, value) // the store's own refusal, which writes nothing
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{} // an empty value is a value, not a deletion
	}
	o.set(key, v)
	return nil
}

func (o *overlay) Delete(key []byte) error {
	if len(key) == 0 || len(key) > maxKey {
		return o.tx.Delete(key)
	}
	o.set(key, nil)
	return nil
}

// Scan merges the overlay's writes into the transaction's keys.
func (o *overlay) Scan(start, end []byte, fn func(key, value []byte) error) error {
	i, _ := slices.BinarySearchFunc(o.keys, start, bytes.Compare)
	emitBefore := func(limit []byte) error { // overlay puts below limit (nil: to end)
		for ; i < len(o.keys) && (limit == nil || bytes.Compare(o.keys[i], limit) < 0); i++ {
			if end != nil && bytes.Compare(o.keys[i], end) >= 0 {
				i = len(o.keys)
				return nil
			}
			if v := o.vals[string(o.keys[i])]; v != nil {
				if err := fn(o.keys[i], v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := o.tx.Scan(start, end, func(k, v []byte) error {
		if err := emitBefore(k); err != nil {
			return err
		}
		if w, ok := o.vals[string(k)]; ok {
			i++ // the overlay's entry for k replaces the store's
			if w == nil {
				return nil
			}
			v = w
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	return emitBefore(nil)
}
