// Package chunkstest holds test support for chunks.Backend implementations:
// the conformance suite every backend runs ([Run], [Bench]), an in-memory
// backend ([NewMem]), a fault injector ([Faulty]) and an I/O counter
// ([Counting]).
package chunkstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/google/go-cmp/cmp"
)

// Run checks that the backends open returns meet the chunks.Backend
// contract. open is called once per subtest and must return an empty
// backend; Run closes it.
func Run(t *testing.T, open func(t *testing.T) chunks.Backend) {
	fresh := func(t *testing.T) chunks.Backend {
		t.Helper()
		b := open(t)
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
		return b
	}

	t.Run("PutReadAt", func(t *testing.T) {
		b := fresh(t)
		data := randomBytes(1, 1000)
		put(t, b, "obj", data)
		tests := []struct {
			off int64
			n   int
		}{
			{0, 1000}, {0, 1}, {999, 1}, {500, 100}, {1, 999}, {0, 0}, {1000, 0},
		}
		for _, tc := range tests {
			p := make([]byte, tc.n)
			if err := b.ReadAt(t.Context(), "obj", p, tc.off); err != nil {
				t.Errorf("ReadAt(obj, %d bytes, %d) = %v", tc.n, tc.off, err)
				continue
			}
			if want := data[tc.off : tc.off+int64(tc.n)]; !bytes.Equal(p, want) {
				t.Errorf("ReadAt(obj, %d bytes, %d) read other bytes than were put", tc.n, tc.off)
			}
		}
	})

	t.Run("ReadAtPastEnd", func(t *testing.T) {
		b := fresh(t)
		put(t, b, "obj", randomBytes(2, 1000))
		tests := []struct {
			off int64
			n   int
		}{
			{995, 10}, {0, 1001}, {1000, 1}, {2000, 5}, {-1, 1},
		}
		for _, tc := range tests {
			err := b.ReadAt(t.Context(), "obj", make([]byte, tc.n), tc.off)
			if err == nil || errors.Is(err, chunks.ErrNotFound) {
				t.Errorf("ReadAt(obj, %d bytes, %d) = %v, want an error other than ErrNotFound", tc.n, tc.off, err)
			}
		}
	})

	t.Run("Missing", func(t *testing.T) {
		b := fresh(t)
		put(t, b, "dir/obj", []byte("x"))
		for _, name := range []string{"nothing", "dir/nothing", "dir", "nothing/obj"} {
			if err := b.ReadAt(t.Context(), name, make([]byte, 1), 0); !errors.Is(err, chunks.ErrNotFound) {
				t.Errorf("ReadAt(%s) = %v, want ErrNotFound", name, err)
			}
		}
		if got := list(t, b, "nothing"); len(got) != 0 {
			t.Errorf("List(nothing) = %v, want nothing", got)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		b := fresh(t)
		put(t, b, "a/obj", []byte("data"))
		put(t, b, "a/keep", []byte("kept"))
		for i := range 2 {
			if err := b.Delete(t.Context(), "a/obj"); err != nil {
				t.Fatalf("Delete(a/obj) #%d = %v", i+1, err)
			}
		}
		if err := b.Delete(t.Context(), "never/there"); err != nil {
			t.Errorf("Delete(never/there) = %v, want nil", err)
		}
		if err := b.ReadAt(t.Context(), "a/obj", make([]byte, 1), 0); !errors.Is(err, chunks.ErrNotFound) {
			t.Errorf("ReadAt(a/obj) after Delete = %v, want ErrNotFound", err)
		}
		if diff := cmp.Diff(map[string]int64{"a/keep": 4}, list(t, b, "a/")); diff != "" {
			t.Errorf("List(a/) after Delete (-want +got):\n%s", diff)
		}
	})

	t.Run("List", func(t *testing.T) {
		b := fresh(t)
		objs := map[string]int64{
			"list/a": 1, "list/b/c": 2, "list/b/d": 3, "list/bb": 4,
			"lis": 5, "other/x": 6, "other/y/z": 0,
		}
		for name, size := range objs {
			put(t, b, name, make([]byte, size))
		}
		pick := func(names ...string) map[string]int64 {
			m := map[string]int64{}
			for _, n := range names {
				m[n] = objs[n]
			}
			return m
		}
		tests := []struct {
			prefix string
			want   map[string]int64
		}{
			{"list/", pick("list/a", "list/b/c", "list/b/d", "list/bb")},
			{"list/b", pick("list/b/c", "list/b/d", "list/bb")},
			{"list/b/", pick("list/b/c", "list/b/d")},
			{"list/a", pick("list/a")},
			{"li", pick("list/a", "list/b/c", "list/b/d", "list/bb", "lis")},
			{"other/y/", pick("other/y/z")},
			{"", objs},
			{"nope", pick()},
			{"list/c", pick()},
		}
		for _, tc := range tests {
			if diff := cmp.Diff(tc.want, list(t, b, tc.prefix)); diff != "" {
				t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
			}
		}
	})

	t.Run("ListStops", func(t *testing.T) {
		b := fresh(t)
		for i := range 3 {
			put(t, b, fmt.Sprintf("s/%d", i), []byte{byte(i)})
		}
		stop := errors.New("stop")
		calls := 0
		err := b.List(t.Context(), "s/", func(string, int64) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("List with fn failing: err %v after %d calls, want %v after 1", err, calls, stop)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		b := fresh(t)
		const size = 64 << 10
		as, bs := bytes.Repeat([]byte{'a'}, size), bytes.Repeat([]byte{'b'}, size)
		put(t, b, "ow", as)
		put(t, b, "ow", bs)
		if got := readAll(t, b, "ow", size); !bytes.Equal(got, bs) {
			t.Fatalf("after overwrite, ReadAt returns other bytes than the last Put")
		}
		// Readers racing with overwrites see one version whole.
		ctx := t.Context()
		var wg sync.WaitGroup
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			for i := range 50 {
				if err := b.Put(ctx, "ow", [][]byte{as, bs}[i%2]); err != nil {
					t.Errorf("Put(ow) = %v", err)
					return
				}
			}
		})
		for range 4 {
			wg.Go(func() {
				p := make([]byte, size)
				for {
					select {
					case <-done:
						return
					default:
					}
					if err := b.ReadAt(ctx, "ow", p, 0); err != nil {
						t.Errorf("ReadAt(ow) during overwrites = %v", err)
						return
					}
					if !bytes.Equal(p, as) && !bytes.Equal(p, bs) {
						t.Errorf("ReadAt(ow) during overwrites mixed two versions")
						return
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("ConcurrentPutRead", func(t *testing.T) {
		b := fresh(t)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 8 {
					name := fmt.Sprintf("c/%d/%d", g, i)
					data := randomBytes(uint64(g*100+i), 1+g*i*97)
					if err := b.Put(t.Context(), name, data); err != nil {
						t.Errorf("Put(%s) = %v", name, err)
						return
					}
					p := make([]byte, len(data))
					if err := b.ReadAt(t.Context(), name, p, 0); err != nil || !bytes.Equal(p, data) {
						t.Errorf("ReadAt(%s) after Put = %v or other bytes", name, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if got := len(list(t, b, "c/")); got != 16*8 {
			t.Errorf("List(c/) found %d objects, want %d", got, 16*8)
		}
	})

	t.Run("Large", func(t *testing.T) {
		b := fresh(t)
		data := randomBytes(3, 20<<20+7)
		put(t, b, "large", data)
		if !bytes.Equal(readAll(t, b, "large", len(data)), data) {
			t.Fatalf("ReadAt(large) whole read other bytes")
		}
		p := make([]byte, 1<<20)
		for off := int64(0); off < int64(len(data)); off += 5 << 20 {
			n := min(len(p), len(data)-int(off))
			if err := b.ReadAt(t.Context(), "large", p[:n], off); err != nil || !bytes.Equal(p[:n], data[off:off+int64(n)]) {
				t.Errorf("ReadAt(large, %d bytes, %d) = %v or other bytes", n, off, err)
			}
		}
	})

	t.Run("Empty", func(t *testing.T) {
		b := fresh(t)
		put(t, b, "empty", nil)
		if diff := cmp.Diff(map[string]int64{"empty": 0}, list(t, b, "empty")); diff != "" {
			t.Errorf("List(empty) (-want +got):\n%s", diff)
		}
		if err := b.ReadAt(t.Context(), "empty", nil, 0); err != nil {
			t.Errorf("ReadAt(empty, 0 bytes, 0) = %v", err)
		}
		if err := b.ReadAt(t.Context(), "empty", make([]byte, 1), 0); err == nil || errors.Is(err, chunks.ErrNotFound) {
			t.Errorf("ReadAt(empty, 1 byte, 0) = %v, want an error other than ErrNotFound", err)
		}
	})

	t.Run("NamesWithSlashes", func(t *testing.T) {
		b := fresh(t)
		const name = "s/a/b/c/d"
		put(t, b, name, []byte("deep"))
		if got := readAll(t, b, name, 4); string(got) != "deep" {
			t.Errorf("ReadAt(%s) = %q, want %q", name, got, "deep")
		}
		if diff := cmp.Diff(map[string]int64{name: 4}, list(t, b, "s/a/")); diff != "" {
			t.Errorf("List(s/a/) (-want +got):\n%s", diff)
		}
		if err := b.Delete(t.Context(), name); err != nil {
			t.Fatalf("Delete(%s) = %v", name, err)
		}
		if got := list(t, b, "s/"); len(got) != 0 {
			t.Errorf("List(s/) after Delete = %v, want nothing", got)
		}
	})

	t.Run("PutDoesNotRetain", func(t *testing.T) {
		b := fresh(t)
		data := []byte("original")
		put(t, b, "keep", data)
		copy(data, "CHANGED!")
		if got := readAll(t, b, "keep", len(data)); string(got) != "original" {
			t.Errorf("after the caller reused its buffer, ReadAt(keep) = %q, want %q", got, "original")
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		b := fresh(t)
		put(t, b, "there", []byte("x"))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := b.Put(ctx, "new", []byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a cancelled context = %v, want context.Canceled", err)
		}
		if err := b.ReadAt(t.Context(), "new", make([]byte, 1), 0); !errors.Is(err, chunks.ErrNotFound) {
			t.Errorf("ReadAt(new) after a cancelled Put = %v, want ErrNotFound", err)
		}
		if err := b.ReadAt(ctx, "there", make([]byte, 1), 0); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadAt with a cancelled context = %v, want context.Canceled", err)
		}
		if err := b.List(ctx, "", func(string, int64) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("List with a cancelled context = %v, want context.Canceled", err)
		}
		if err := b.Delete(ctx, "there"); !errors.Is(err, context.Canceled) {
			t.Errorf("Delete with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

func put(t testing.TB, b chunks.Backend, name string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), name, data); err != nil {
		t.Fatalf("Put(%s, %d bytes) = %v", name, len(data), err)
	}
}

func readAll(t testing.TB, b chunks.Backend, name string, size int) []byte {
	t.Helper()
	p := make([]byte, size)
	if err := b.ReadAt(context.Background(), name, p, 0); err != nil {
		t.Fatalf("ReadAt(%s, %d bytes, 0) = %v", name, size, err)
	}
	return p
}

func list(t testing.TB, b chunks.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := b.List(context.Background(), prefix, func(name string, size int64) error {
		if _, dup := got[name]; dup {
			t.Errorf("List(%q) reported %s twice", prefix, name)
		}
		got[name] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q) = %v", prefix, err)
	}
	return got
}

// randomBytes returns n bytes from a PRNG seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}
