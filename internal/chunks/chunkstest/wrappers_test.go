package chunkstest_test

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/google/go-cmp/cmp"
)

func TestCountingSuite(t *testing.T) {
	chunkstest.Run(t, func(*testing.T) chunks.Backend { return chunkstest.Counting(chunkstest.NewMem()) })
}

func TestFaultySuite(t *testing.T) {
	// With no faults, a FaultyBackend is the backend it wraps.
	chunkstest.Run(t, func(*testing.T) chunks.Backend { return chunkstest.Faulty(chunkstest.NewMem()) })
}

func TestCounting(t *testing.T) {
	ctx := t.Context()
	c := chunkstest.Counting(chunkstest.NewMem())
	c.Put(ctx, "a", make([]byte, 10))
	c.Put(ctx, "b", make([]byte, 5))
	c.ReadAt(ctx, "a", make([]byte, 4), 2)
	c.ReadAt(ctx, "missing", make([]byte, 3), 0)
	c.Delete(ctx, "b")
	c.List(ctx, "", func(string, int64) error { return nil })
	want := chunkstest.Stats{Puts: 2, PutBytes: 15, ReadAts: 2, ReadBytes: 7, Deletes: 1, Lists: 1}
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
	c.Reset()
	if diff := cmp.Diff(chunkstest.Stats{}, c.Stats()); diff != "" {
		t.Errorf("Stats() after Reset (-want +got):\n%s", diff)
	}
}

func TestFaultyPut(t *testing.T) {
	ctx := t.Context()
	m := chunkstest.NewMem()
	f := chunkstest.Faulty(m, chunkstest.Fault{Op: chunkstest.OpPut, Skip: 2, Times: 1, Err: syscall.ENOSPC})
	var errs []error
	for _, name := range []string{"p1", "p2", "p3", "p4"} {
		errs = append(errs, f.Put(ctx, name, []byte(name)))
	}
	for i, err := range errs {
		if want := i == 2; errors.Is(err, syscall.ENOSPC) != want {
			t.Errorf("Put #%d = %v, want ENOSPC %v", i+1, err, want)
		}
	}
	if err := m.ReadAt(ctx, "p3", make([]byte, 2), 0); !errors.Is(err, chunks.ErrNotFound) {
		t.Errorf("the failed Put stored its object: ReadAt = %v", err)
	}
	if f.Fired() != 1 {
		t.Errorf("Fired() = %d, want 1", f.Fired())
	}

	lost := errors.New("reply lost")
	f.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, AfterCall: true, Err: lost})
	if err := f.Put(ctx, "landed", []byte("x")); !errors.Is(err, lost) {
		t.Errorf("Put with AfterCall = %v, want %v", err, lost)
	}
	if err := m.ReadAt(ctx, "landed", make([]byte, 1), 0); err != nil {
		t.Errorf("AfterCall Put did not store its object: ReadAt = %v", err)
	}

	f.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Match: func(n string) bool { return n == "rot" }, Corrupt: func(p []byte, _ int64) { p[1] = 'X' }})
	data := []byte("abc")
	if err := f.Put(ctx, "rot", data); err != nil {
		t.Fatalf("Put with Corrupt = %v", err)
	}
	p := make([]byte, 3)
	if err := m.ReadAt(ctx, "rot", p, 0); err != nil || string(p) != "aXc" || string(data) != "abc" {
		t.Errorf("Put with Corrupt stored %q (%v), caller's data now %q; want aXc stored, abc kept", p, err, data)
	}
}

func TestFaultyReadAt(t *testing.T) {
	ctx := t.Context()
	m := chunkstest.NewMem()
	m.Put(ctx, "packs/a", []byte("aaaa"))
	m.Put(ctx, "other/b", []byte("bbbb"))
	broken := errors.New("broken")
	f := chunkstest.Faulty(m,
		chunkstest.Fault{Op: chunkstest.OpReadAt, Match: func(n string) bool { return strings.HasPrefix(n, "other/") }, Err: broken},
		chunkstest.Fault{Op: chunkstest.OpReadAt, Times: 1, Corrupt: func(p []byte, off int64) { p[0] ^= 0xff }},
	)
	p := make([]byte, 4)
	for range 2 {
		if err := f.ReadAt(ctx, "other/b", p, 0); !errors.Is(err, broken) {
			t.Errorf("ReadAt(other/b) = %v, want %v", err, broken)
		}
	}
	if err := f.ReadAt(ctx, "packs/a", p, 0); err != nil || bytes.Equal(p, []byte("aaaa")) {
		t.Errorf("first ReadAt(packs/a) = %v, %q; want corrupted bytes", err, p)
	}
	if err := f.ReadAt(ctx, "packs/a", p, 0); err != nil || !bytes.Equal(p, []byte("aaaa")) {
		t.Errorf("second ReadAt(packs/a) = %v, %q; want the stored bytes", err, p)
	}
}

func TestFaultyDeleteList(t *testing.T) {
	ctx := t.Context()
	broken := errors.New("broken")
	f := chunkstest.Faulty(chunkstest.NewMem(),
		chunkstest.Fault{Op: chunkstest.OpDelete, Err: broken},
		chunkstest.Fault{Op: chunkstest.OpList, Match: func(p string) bool { return p == "x/" }, Err: broken},
	)
	if err := f.Delete(ctx, "a"); !errors.Is(err, broken) {
		t.Errorf("Delete = %v, want %v", err, broken)
	}
	if err := f.List(ctx, "x/", func(string, int64) error { return nil }); !errors.Is(err, broken) {
		t.Errorf("List(x/) = %v, want %v", err, broken)
	}
	if err := f.List(ctx, "y/", func(string, int64) error { return nil }); err != nil {
		t.Errorf("List(y/) = %v, want nil", err)
	}
}
