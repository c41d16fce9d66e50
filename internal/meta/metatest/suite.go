// Package metatest holds what every [meta.Store] implementation is tested
// with: the conformance suite [Run], the benchmarks [Bench], and [Counting],
// a wrapper that counts operations so that tests can assert costs.
//
// A backend's test file is a few lines:
//
//	func newStore(tb testing.TB) metatest.Opener {
//		cfg := bolt.DefaultConfig()
//		cfg.Path = filepath.Join(tb.TempDir(), "meta.db")
//		return func() meta.Store { … open cfg, tb.Fatal on error … }
//	}
//	func TestConformance(t *testing.T) { metatest.Run(t, newStore) }
//	func BenchmarkStore(b *testing.B)  { metatest.Bench(b, newStore) }
package metatest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// Opener opens a store. Every call of one Opener opens the same underlying
// store, so what was committed before [meta.Store.Close] is there after the
// next call; this is how the suite checks durability.
type Opener func() meta.Store

// NewStore makes a new, empty store and returns its Opener. It is called once
// per subtest with that subtest's tb, and may register cleanups on it. The
// suite closes every store it opens.
type NewStore func(tb testing.TB) Opener

// Run runs the conformance suite against the stores newStore makes. Each
// case is a subtest, so `go test -run 'Conformance/Scan'` picks cases.
func Run(t *testing.T, newStore NewStore) {
	t.Run("GetPutDelete", func(t *testing.T) { testGetPutDelete(t, newStore) })
	t.Run("GetAbsent", func(t *testing.T) { testGetAbsent(t, newStore) })
	t.Run("EmptyValue", func(t *testing.T) { testEmptyValue(t, newStore) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, newStore) })
	t.Run("DeleteAbsent", func(t *testing.T) { testDeleteAbsent(t, newStore) })
	t.Run("ReadYourWrites", func(t *testing.T) { testReadYourWrites(t, newStore) })
	t.Run("ValueOwnership", func(t *testing.T) { testValueOwnership(t, newStore) })
	t.Run("LargeValue", func(t *testing.T) { testLargeValue(t, newStore) })
	t.Run("ScanOrder", func(t *testing.T) { testScanOrder(t, newStore) })
	t.Run("ScanBounds", func(t *testing.T) { testScanBounds(t, newStore) })
	t.Run("ScanStop", func(t *testing.T) { testScanStop(t, newStore) })
	t.Run("ViewReadOnly", func(t *testing.T) { testViewReadOnly(t, newStore) })
	t.Run("UpdateErrorWritesNothing", func(t *testing.T) { testUpdateErrorWritesNothing(t, newStore) })
	t.Run("UpdatePanicWritesNothing", func(t *testing.T) { testUpdatePanicWritesNothing(t, newStore) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, newStore) })
	t.Run("AtomicVisibility", func(t *testing.T) { testAtomicVisibility(t, newStore) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentUpdates(t, newStore) })
	t.Run("Durability", func(t *testing.T) { testDurability(t, newStore) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, newStore) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceledContext(t, newStore) })
	t.Run("Model", func(t *testing.T) { testModel(t, newStore) })
}

// open opens a new store and closes it when t ends.
func open(t testing.TB, newStore NewStore) (meta.Store, Opener) {
	t.Helper()
	o := newStore(t)
	return reopen(t, o), o
}

// reopen calls o and closes the store when t ends.
func reopen(t testing.TB, o Opener) meta.Store {
	t.Helper()
	s := o()
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

func closeStore(t tb, s meta.Store) {
	t.Helper()
	if err := s.Close(); err != nil && !errors.Is(err, meta.ErrClosed) {
		t.Errorf("Close() = %v, want nil", err)
	}
}

// tb is what the helpers need from a test; *rapid.T has it too.
type tb interface {
	Helper()
	Context() context.Context
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// kv is one key and value, copied out of a transaction.
type kv struct{ k, v []byte }

func (p kv) String() string { return fmt.Sprintf("%x=%x", p.k, p.v) }

func equalKVs(a, b []kv) bool {
	return slices.EqualFunc(a, b, func(x, y kv) bool {
		return bytes.Equal(x.k, y.k) && bytes.Equal(x.v, y.v)
	})
}

// mustUpdate runs fn in an Update and fails t if it errs.
func mustUpdate(t tb, s meta.Store, fn func(meta.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update() = %v, want nil", err)
	}
}

// mustPut commits key=value pairs given as alternating arguments.
func mustPut(t tb, s meta.Store, pairs ...string) {
	t.Helper()
	mustUpdate(t, s, func(tx meta.Tx) error {
		for i := 0; i < len(pairs); i += 2 {
			if err := tx.Put([]byte(pairs[i]), []byte(pairs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
}

// get reads key in its own View, copying the value out.
func get(t tb, s meta.Store, key string) ([]byte, error) {
	t.Helper()
	var v []byte
	err := s.View(t.Context(), func(tx meta.Tx) error {
		got, err := tx.Get([]byte(key))
		v = bytes.Clone(got)
		return err
	})
	return v, err
}

// wantValue fails t unless key holds want.
func wantValue(t tb, s meta.Store, key, want string) {
	t.Helper()
	v, err := get(t, s, key)
	if err != nil || string(v) != want {
		t.Errorf("Get(%q) = %q, %v; want %q, nil", key, v, err, want)
	}
}

// wantAbsent fails t unless key is absent.
func wantAbsent(t tb, s meta.Store, key string) {
	t.Helper()
	v, err := get(t, s, key)
	if !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

// scanTx collects [start, end) in tx.
func scanTx(tx meta.Tx, start, end []byte) ([]kv, error) {
	var kvs []kv
	err := tx.Scan(start, end, func(k, v []byte) error {
		kvs = append(kvs, kv{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	return kvs, err
}

// scan collects [start, end) in its own View.
func scan(t tb, s meta.Store, start, end []byte) []kv {
	t.Helper()
	var kvs []kv
	err := s.View(t.Context(), func(tx meta.Tx) error {
		var err error
		kvs, err = scanTx(tx, start, end)
		return err
	})
	if err != nil {
		t.Fatalf("Scan(%x, %x) = %v, want nil", start, end, err)
	}
	return kvs
}

func testGetPutDelete(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "a", "1", "b", "2")
	wantValue(t, s, "a", "1")
	wantValue(t, s, "b", "2")
	mustUpdate(t, s, func(tx meta.Tx) error { return tx.Delete([]byte("a")) })
	wantAbsent(t, s, "a")
	wantValue(t, s, "b", "2")
}

func testGetAbsent(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	wantAbsent(t, s, "nothing") // empty store
	mustPut(t, s, "b", "1")
	for _, key := range []string{"a", "ba", "c", "\x00", "\xff"} {
		wantAbsent(t, s, key) // before, after and between stored keys
	}
}

func testEmptyValue(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustUpdate(t, s, func(tx meta.Tx) error {
		if err := tx.Put([]byte("empty"), []byte{}); err != nil {
			return err
		}
		if err := tx.Put([]byte("nil"), nil); err != nil {
			return err
		}
		for _, key := range []string{"empty", "nil"} {
			if v, err := tx.Get([]byte(key)); err != nil || len(v) != 0 {
				t.Errorf("in Update: Get(%q) = %q, %v; want empty, nil", key, v, err)
			}
		}
		return nil
	})
	for _, key := range []string{"empty", "nil"} {
		wantValue(t, s, key, "")
	}
	got := scan(t, s, nil, nil)
	want := []kv{{[]byte("empty"), nil}, {[]byte("nil"), nil}}
	if !equalKVs(got, want) {
		t.Errorf("Scan(nil, nil) = %v, want %v", got, want)
	}
}

func testOverwrite(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "k", "short")
	mustPut(t, s, "k", "a much longer value than before")
	wantValue(t, s, "k", "a much longer value than before")
	mustPut(t, s, "k", "x")
	wantValue(t, s, "k", "x")
	mustPut(t, s, "k", "")
	wantValue(t, s, "k", "")
	if got := scan(t, s, nil, nil); len(got) != 1 {
		t.Errorf("Scan(nil, nil) = %v, want one key", got)
	}
}

func testDeleteAbsent(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "b", "1")
	mustUpdate(t, s, func(tx meta.Tx) error {
		for _, key := range []string{"a", "c", "b", "b"} { // "b" twice: the second is absent
			if err := tx.Delete([]byte(key)); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", key, err)
			}
		}
		return nil
	})
	wantAbsent(t, s, "b")
}

func testReadYourWrites(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "a", "old", "c", "3")
	mustUpdate(t, s, func(tx meta.Tx) error {
		if err := tx.Put([]byte("a"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Put([]byte("b"), []byte("2")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("c")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("a")); err != nil || string(v) != "new" {
			t.Errorf("Get(a) after Put = %q, %v; want new, nil", v, err)
		}
		if _, err := tx.Get([]byte("c")); !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("Get(c) after Delete = %v, want ErrNotFound", err)
		}
		got, err := scanTx(tx, nil, nil)
		if err != nil {
			return err
		}
		want := []kv{{[]byte("a"), []byte("new")}, {[]byte("b"), []byte("2")}}
		if !equalKVs(got, want) {
			t.Errorf("Scan in Update = %v, want %v", got, want)
		}
		return nil
	})
}

// testValueOwnership checks that a store neither keeps the caller's buffer
// after Put nor hands out its own memory from Get: engine code reuses
// buffers and decodes in place.
func testValueOwnership(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustUpdate(t, s, func(tx meta.Tx) error {
		key, buf := []byte("k1"), []byte("v1")
		if err := tx.Put(key, buf); err != nil {
			return err
		}
		key[1], buf[1] = '2', '2' // reuse both buffers for the next pair
		if err := tx.Put(key, buf); err != nil {
			return err
		}
		copy(key, "xx")
		copy(buf, "xx")
		if v, err := tx.Get([]byte("k1")); err != nil || string(v) != "v1" {
			t.Errorf("Get(k1) after reusing Put's buffers = %q, %v; want v1, nil", v, err)
		}
		return nil
	})
	wantValue(t, s, "k1", "v1")
	wantValue(t, s, "k2", "v2")
	mustUpdate(t, s, func(tx meta.Tx) error {
		v, err := tx.Get([]byte("k1"))
		if err != nil {
			return err
		}
		v[0] = 'X' // Get's value is the caller's
		v, err = tx.Get([]byte("k1"))
		if err != nil || string(v) != "v1" {
			t.Errorf("Get(k1) after modifying a Get result = %q, %v; want v1, nil", v, err)
		}
		return nil
	})
	wantValue(t, s, "k1", "v1")
}

func testLargeValue(t *testing.T, newStore NewStore) {
	s, o := open(t, newStore)
	big := make([]byte, 1<<20+3) // spans many pages in any paged store
	for i := range big {
		big[i] = byte(i * 7)
	}
	mustUpdate(t, s, func(tx meta.Tx) error { return tx.Put([]byte("big"), big) })
	closeStore(t, s)
	s = reopen(t, o)
	v, err := get(t, s, "big")
	if err != nil || !bytes.Equal(v, big) {
		t.Errorf("Get(big) = %d bytes, %v; want the %d bytes put", len(v), err, len(big))
	}
}

// binaryKeys sort bytewise as listed: 0x00 and 0xff bytes, and keys that
// are prefixes of others.
var binaryKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0x00, 0x01}, {0x00, 0xff}, {0x01},
	[]byte("a"), []byte("ab"), []byte("abc"), []byte("b"), {0x7f}, {0x80},
	{0xfe, 0xff}, {0xff}, {0xff, 0x00}, {0xff, 0xff}, {0xff, 0xff, 0xff},
}

func testScanOrder(t *testing.T, newStore NewStore) {
	if !slices.IsSortedFunc(binaryKeys, bytes.Compare) {
		t.Fatal("binaryKeys is not sorted; fix the test")
	}
	s, _ := open(t, newStore)
	// Insert in an order unrelated to the sort order, in two commits.
	for _, part := range [][]int{{7, 3, 15, 0, 11, 5, 9}, {1, 14, 6, 2, 13, 8, 10, 4, 12}} {
		mustUpdate(t, s, func(tx meta.Tx) error {
			for _, i := range part {
				if err := tx.Put(binaryKeys[i], []byte{byte(i)}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	var want []kv
	for i, k := range binaryKeys {
		want = append(want, kv{k, []byte{byte(i)}})
	}
	if got := scan(t, s, nil, nil); !equalKVs(got, want) {
		t.Errorf("Scan(nil, nil) =\n%v\nwant\n%v", got, want)
	}
}

func testScanBounds(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	keys := []string{"\x00", "\x00\x00", "a", "ab", "abc", "b", "\xff", "\xff\xff"}
	mustUpdate(t, s, func(tx meta.Tx) error {
		for _, k := range keys {
			if err := tx.Put([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	tests := []struct {
		name       string
		start, end []byte
		want       []string
	}{
		{"all", nil, nil, keys},
		{"empty start", []byte{}, nil, keys},
		{"nil start", nil, []byte("a"), []string{"\x00", "\x00\x00"}},
		{"start inclusive", []byte("ab"), nil, []string{"ab", "abc", "b", "\xff", "\xff\xff"}},
		{"end exclusive", []byte("a"), []byte("abc"), []string{"a", "ab"}},
		{"prefix", []byte("a"), []byte("b"), []string{"a", "ab", "abc"}},
		{"start between keys", []byte("aa"), []byte("b"), []string{"ab", "abc"}},
		{"end between keys", []byte("\x00"), []byte("\x00\x00\x00"), []string{"\x00", "\x00\x00"}},
		{"zero byte bound", []byte("\x00"), []byte("\x00\x00"), []string{"\x00"}},
		{"0xff prefix", []byte("\xff"), []byte("\xff\xff\x00"), []string{"\xff", "\xff\xff"}},
		{"single key", []byte("b"), []byte("b\x00"), []string{"b"}},
		{"start equals end", []byte("a"), []byte("a"), nil},
		{"start after end", []byte("b"), []byte("a"), nil},
		{"empty end is a bound", nil, []byte{}, nil},
		{"past the last key", []byte("\xff\xff\x00"), nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []kv
			for _, k := range tc.want {
				want = append(want, kv{[]byte(k), []byte("v" + k)})
			}
			if got := scan(t, s, tc.start, tc.end); !equalKVs(got, want) {
				t.Errorf("Scan(%x, %x) = %v, want %v", tc.start, tc.end, got, want)
			}
		})
	}
}

func testScanStop(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "a", "1", "b", "2", "c", "3", "d", "4")
	errStop := errors.New("stop")
	var seen []string
	err := s.View(t.Context(), func(tx meta.Tx) error {
		return tx.Scan(nil, nil, func(k, _ []byte) error {
			seen = append(seen, string(k))
			if len(seen) == 2 {
				return fmt.Errorf("at %q: %w", k, errStop)
			}
			return nil
		})
	})
	if !errors.Is(err, errStop) {
		t.Errorf("View(Scan stopped by fn) = %v, want errStop", err)
	}
	if want := []string{"a", "b"}; !slices.Equal(seen, want) {
		t.Errorf("Scan visited %q after fn's error, want %q", seen, want)
	}
}

func testViewReadOnly(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "k", "v")
	err := s.View(t.Context(), func(tx meta.Tx) error {
		if err := tx.Put([]byte("k"), []byte("new")); !errors.Is(err, meta.ErrReadOnly) {
			t.Errorf("Put in View = %v, want ErrReadOnly", err)
		}
		if err := tx.Put([]byte("other"), []byte("x")); !errors.Is(err, meta.ErrReadOnly) {
			t.Errorf("Put in View = %v, want ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("k")); !errors.Is(err, meta.ErrReadOnly) {
			t.Errorf("Delete in View = %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("View() = %v, want nil", err)
	}
	wantValue(t, s, "k", "v")
	wantAbsent(t, s, "other")
}

func testUpdateErrorWritesNothing(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "keep", "1", "gone", "2")
	errBoom := errors.New("boom")
	calls := 0
	err := s.Update(t.Context(), func(tx meta.Tx) error {
		calls++
		for _, op := range []error{
			tx.Put([]byte("keep"), []byte("changed")),
			tx.Put([]byte("new"), []byte("3")),
			tx.Delete([]byte("gone")),
		} {
			if op != nil {
				return op
			}
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("Update(fn returning errBoom) = %v, want errBoom", err)
	}
	if calls != 1 {
		t.Errorf("Update called fn %d times after fn's own error, want 1", calls)
	}
	wantValue(t, s, "keep", "1")
	wantValue(t, s, "gone", "2")
	wantAbsent(t, s, "new")
}

func testUpdatePanicWritesNothing(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "keep", "1")
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("Update(fn panicking) recovered %v, want the panic \"boom\"", r)
			}
		}()
		_ = s.Update(t.Context(), func(tx meta.Tx) error {
			if err := tx.Put([]byte("keep"), []byte("changed")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	wantValue(t, s, "keep", "1")
	mustPut(t, s, "after", "ok") // the store is still writable
	wantValue(t, s, "after", "ok")
}

// testIsolation holds a View open while an Update commits: the View keeps
// seeing the state it started with.
func testIsolation(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "a", "0", "b", "0")
	updated := make(chan error, 1)
	var updateErr error
	updateDone := false
	err := s.View(t.Context(), func(tx meta.Tx) error {
		if v, err := tx.Get([]byte("a")); err != nil || string(v) != "0" {
			t.Errorf("Get(a) = %q, %v; want 0, nil", v, err)
		}
		go func() {
			updated <- s.Update(t.Context(), func(tx meta.Tx) error {
				if err := tx.Put([]byte("a"), []byte("1")); err != nil {
					return err
				}
				if err := tx.Put([]byte("b"), []byte("1")); err != nil {
					return err
				}
				return tx.Put([]byte("c"), []byte("1"))
			})
		}()
		select {
		case updateErr = <-updated:
			updateDone = true
		case <-time.After(10 * time.Second):
			t.Error("an Update waited more than 10s for an open View to end")
		}
		got, err := scanTx(tx, nil, nil)
		if err != nil {
			return err
		}
		want := []kv{{[]byte("a"), []byte("0")}, {[]byte("b"), []byte("0")}}
		if !equalKVs(got, want) {
			t.Errorf("View after a concurrent commit sees %v, want its snapshot %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Errorf("View() = %v, want nil", err)
	}
	if !updateDone {
		updateErr = <-updated
	}
	if updateErr != nil {
		t.Fatalf("concurrent Update() = %v, want nil", updateErr)
	}
	want := []kv{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("1")}, {[]byte("c"), []byte("1")}}
	if got := scan(t, s, nil, nil); !equalKVs(got, want) {
		t.Errorf("View after the commit sees %v, want %v", got, want)
	}
}

// testAtomicVisibility runs readers while a writer changes two keys together
// in each commit: no reader may see one changed without the other.
func testAtomicVisibility(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	const commits, readers = 30, 4
	mustPut(t, s, "a", "0", "b", "0")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				err := s.View(context.Background(), func(tx meta.Tx) error {
					a, err := tx.Get([]byte("a"))
					if err != nil {
						return err
					}
					kvs, err := scanTx(tx, []byte("b"), nil)
					if err != nil {
						return err
					}
					if len(kvs) != 1 || !bytes.Equal(a, kvs[0].v) {
						t.Errorf("View saw a=%q but %v: half of a commit", a, kvs)
					}
					return nil
				})
				if err != nil {
					t.Errorf("View() = %v, want nil", err)
					return
				}
			}
		})
	}
	for i := 1; i <= commits; i++ {
		v := fmt.Append(nil, i)
		mustUpdate(t, s, func(tx meta.Tx) error {
			if err := tx.Put([]byte("a"), v); err != nil {
				return err
			}
			return tx.Put([]byte("b"), v)
		})
	}
	close(done)
	wg.Wait()
}

// testConcurrentUpdates increments one counter from many goroutines: with
// serializable transactions no increment is lost.
func testConcurrentUpdates(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	const goroutines, increments = 8, 25
	key := []byte("counter")
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range increments {
				err := s.Update(context.Background(), func(tx meta.Tx) error {
					var n uint64
					switch v, err := tx.Get(key); {
					case errors.Is(err, meta.ErrNotFound):
					case err != nil:
						return err
					default:
						n = binary.BigEndian.Uint64(v)
					}
					return tx.Put(key, binary.BigEndian.AppendUint64(nil, n+1))
				})
				if err != nil {
					t.Errorf("Update(increment) = %v, want nil", err)
					return
				}
			}
		})
	}
	wg.Wait()
	v, err := get(t, s, string(key))
	if err != nil || len(v) != 8 {
		t.Fatalf("Get(counter) = %x, %v; want 8 bytes", v, err)
	}
	if got, want := binary.BigEndian.Uint64(v), uint64(goroutines*increments); got != want {
		t.Errorf("counter = %d after %d increments: %d lost", got, want, want-got)
	}
}

func testDurability(t *testing.T, newStore NewStore) {
	s, o := open(t, newStore)
	mustPut(t, s, "a", "1", "b", "2", "c", "3")
	mustUpdate(t, s, func(tx meta.Tx) error { return tx.Delete([]byte("b")) })
	_ = s.Update(t.Context(), func(tx meta.Tx) error {
		_ = tx.Put([]byte("rolled back"), []byte("x"))
		return errors.New("abort")
	})
	closeStore(t, s)

	s = reopen(t, o)
	want := []kv{{[]byte("a"), []byte("1")}, {[]byte("c"), []byte("3")}}
	if got := scan(t, s, nil, nil); !equalKVs(got, want) {
		t.Errorf("after reopen, Scan(nil, nil) = %v, want %v", got, want)
	}
	mustPut(t, s, "d", "4") // still writable after a reopen
	closeStore(t, s)
	s = reopen(t, o)
	wantValue(t, s, "d", "4")
}

func testClosed(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	mustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	called := false
	fn := func(meta.Tx) error { called = true; return nil }
	if err := s.View(t.Context(), fn); !errors.Is(err, meta.ErrClosed) {
		t.Errorf("View after Close = %v, want ErrClosed", err)
	}
	if err := s.Update(t.Context(), fn); !errors.Is(err, meta.ErrClosed) {
		t.Errorf("Update after Close = %v, want ErrClosed", err)
	}
	if called {
		t.Error("fn ran on a closed store")
	}
	if err := s.Close(); err != nil && !errors.Is(err, meta.ErrClosed) {
		t.Errorf("second Close() = %v, want nil or ErrClosed", err)
	}
}

func testCanceledContext(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	fn := func(tx meta.Tx) error { called = true; return tx.Put([]byte("k"), []byte("v")) }
	if err := s.View(ctx, func(meta.Tx) error { called = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View(canceled ctx) = %v, want context.Canceled", err)
	}
	if err := s.Update(ctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update(canceled ctx) = %v, want context.Canceled", err)
	}
	if called {
		t.Error("fn ran under a canceled context")
	}
	wantAbsent(t, s, "k")
}
