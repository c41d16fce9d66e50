package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) { metatest.Run(t, newStore) }

// The retry wrappers are stores too: the suite passes over them, so that
// suites run over them test the code above the seam, not the wrappers.
func TestConformanceReplaying(t *testing.T) {
	metatest.Run(t, wrapped(metatest.Replaying))
}

func TestConformanceConflicting(t *testing.T) {
	metatest.Run(t, wrapped(metatest.Conflicting))
}

func wrapped(wrap func(meta.Store) meta.Store) metatest.NewStore {
	return func(tb testing.TB) metatest.Opener {
		o := newStore(tb)
		return func() meta.Store { return wrap(o()) }
	}
}

func BenchmarkStore(b *testing.B) { metatest.Bench(b, newStore) }

func newStore(tb testing.TB) metatest.Opener {
	cfg := bolt.DefaultConfig()
	cfg.Path = filepath.Join(tb.TempDir(), "meta.db")
	return func() meta.Store {
		s, err := bolt.Open(tb.Context(), cfg)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
}

func testConfig(t *testing.T) bolt.Config {
	cfg := bolt.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "meta.db")
	return cfg
}

func mustOpen(t *testing.T, cfg bolt.Config) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*bolt.Config)
		ok     bool
	}{
		{"default with path", func(*bolt.Config) {}, true},
		{"no path", func(c *bolt.Config) { c.Path = "" }, false},
		{"zero timeout waits forever", func(c *bolt.Config) { c.Timeout = 0 }, false},
		{"negative mmap", func(c *bolt.Config) { c.InitialMmapSize = -1 }, false},
		{"no initial mmap", func(c *bolt.Config) { c.InitialMmapSize = 0 }, true},
		{"fill too low", func(c *bolt.Config) { c.FillPercent = 0.05 }, false},
		{"fill too high", func(c *bolt.Config) { c.FillPercent = 1.01 }, false},
		{"fill full", func(c *bolt.Config) { c.FillPercent = 1 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.change(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok %t", cfg, err, tc.ok)
			}
			s, err := bolt.Open(t.Context(), cfg)
			if err == nil {
				s.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("Open(%+v) = %v, want ok %t", cfg, err, tc.ok)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	cfg := testConfig(t)
	first := mustOpen(t, cfg)

	cfg.Timeout = 50 * time.Millisecond
	start := time.Now()
	s, err := bolt.Open(t.Context(), cfg)
	if err == nil {
		s.Close()
		t.Fatal("second Open of a locked file = nil error, want ErrLocked")
	}
	if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), cfg.Path) {
		t.Errorf("second Open = %v, want ErrLocked naming %s", err, cfg.Path)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v with a %v timeout", d, cfg.Timeout)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, cfg) // the lock went with the first Store
}

func TestOpenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cfg := testConfig(t)
	if _, err := bolt.Open(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(canceled ctx) = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(cfg.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(canceled ctx) created %s", cfg.Path)
	}
}

func TestOpenMissingDir(t *testing.T) {
	cfg := testConfig(t)
	cfg.Path = filepath.Join(filepath.Dir(cfg.Path), "absent", "meta.db")
	_, err := bolt.Open(t.Context(), cfg)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), cfg.Path) {
		t.Errorf("Open(in a missing dir) = %v, want ErrNotExist naming %s", err, cfg.Path)
	}
}

// writeStore makes a store file holding n keys with 100-byte values, so that
// its pages reach well past 256 KiB.
func writeStore(t *testing.T, n int) bolt.Config {
	t.Helper()
	cfg := testConfig(t)
	s := mustOpen(t, cfg)
	err := s.Update(t.Context(), func(tx meta.Tx) error {
		for i := range n {
			if err := tx.Put(fmt.Appendf(nil, "key%08d", i), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// readAll opens cfg and scans every key, returning the first error.
func readAll(t *testing.T, cfg bolt.Config) (*bolt.Store, error) {
	s, err := bolt.Open(t.Context(), cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, s.View(t.Context(), func(tx meta.Tx) error {
		return tx.Scan(nil, nil, func(_, _ []byte) error { return nil })
	})
}

func wantCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, bolt.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("got error %v, want ErrCorrupt naming %s", err, path)
	}
}

func TestOpenTruncated(t *testing.T) {
	for _, size := range []int64{100, 4096, 5000, 8192, 64 << 10, 512 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			cfg := writeStore(t, 5000)
			if err := os.Truncate(cfg.Path, size); err != nil {
				t.Fatal(err)
			}
			_, err := readAll(t, cfg)
			wantCorrupt(t, err, cfg.Path)
		})
	}
}

func TestOpenGarbage(t *testing.T) {
	for _, size := range []int{100, 4096, 64 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			cfg := testConfig(t)
			garbage := make([]byte, size)
			rand.NewChaCha8([32]byte{1}).Read(garbage)
			if err := os.WriteFile(cfg.Path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readAll(t, cfg)
			wantCorrupt(t, err, cfg.Path)
		})
	}
}

// TestDamagedPage overwrites pages in the middle of a valid file: bbolt
// panics or faults on such pages, and the Store must report ErrCorrupt and
// then refuse writes, which could spread the damage.
func TestDamagedPage(t *testing.T) {
	for seed := range byte(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := writeStore(t, 5000)
			garbage := make([]byte, 16<<10)
			rand.NewChaCha8([32]byte{seed}).Read(garbage)
			f, err := os.OpenFile(cfg.Path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteAt(garbage, 128<<10)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := readAll(t, cfg)
			wantCorrupt(t, err, cfg.Path)
			if s == nil {
				return // Open found the damage
			}
			err = s.Update(t.Context(), func(tx meta.Tx) error { return tx.Put([]byte("k"), nil) })
			if !errors.Is(err, bolt.ErrCorrupt) {
				t.Errorf("Update after damage found = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestTxAfterReturnPanics(t *testing.T) {
	s := mustOpen(t, testConfig(t))
	var kept meta.Tx
	if err := s.View(t.Context(), func(tx meta.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Get on a Tx whose View returned did not panic")
		}
	}()
	kept.Get([]byte("k"))
}

// TestCanceledDuringScan checks that a long scan notices its context.
func TestCanceledDuringScan(t *testing.T) {
	cfg := writeStore(t, 5000)
	s := mustOpen(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	err := s.View(ctx, func(tx meta.Tx) error {
		return tx.Scan(nil, nil, func(_, _ []byte) error {
			if n++; n == 10 {
				cancel()
			}
			return nil
		})
	})
	if !errors.Is(err, context.Canceled) || n >= 5000 {
		t.Errorf("Scan canceled after 10 keys = %v after %d keys, want context.Canceled before the end", err, n)
	}
}

func TestCreateMode(t *testing.T) {
	cfg := testConfig(t)
	mustOpen(t, cfg)
	info, err := os.Stat(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("store file mode = %v, want no access for group and others", mode)
	}
}

// waitQueued waits until n Updates are queued behind the running one.
func waitQueued(t *testing.T, s *bolt.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Queued < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Updates queued after 10s, want %d", s.Stats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit holds one Update open while others arrive: they commit
// together, in one transaction, and each sees the writes of those before it.
func TestGroupCommit(t *testing.T) {
	s := mustOpen(t, testConfig(t))
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // a failed wait must not hang Close
	blocked := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		blocked <- s.Update(t.Context(), func(tx meta.Tx) error {
			close(started)
			<-release
			return tx.Put([]byte("counter"), []byte{0})
		})
	}()
	<-started
	before := s.Stats()
	const writers = 20
	errs := make(chan error, writers)
	for i := range writers {
		go func() {
			errs <- s.Update(t.Context(), func(tx meta.Tx) error {
				v, err := tx.Get([]byte("counter"))
				if err != nil {
					return err
				}
				if err := tx.Put(fmt.Appendf(nil, "w%02d", i), nil); err != nil {
					return err
				}
				return tx.Put([]byte("counter"), []byte{v[0] + 1})
			})
		}()
	}
	waitQueued(t, s, writers)
	releaseOnce.Do(func() { close(release) })
	if err := <-blocked; err != nil {
		t.Fatalf("first Update = %v", err)
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Errorf("queued Update = %v, want nil", err)
		}
	}
	after := s.Stats()
	if got := after.Commits - before.Commits; got > 2 {
		t.Errorf("%d Updates, queued behind one, took %d commits; want at most 2 (one for the first, one for the group)", writers+1, got)
	}
	err := s.View(t.Context(), func(tx meta.Tx) error {
		v, err := tx.Get([]byte("counter"))
		if err != nil || v[0] != writers {
			t.Errorf("counter = %v, %v; want %d: an increment of the group was lost", v, err, writers)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGroupFailures: closures of one group that fail or panic get their own
// error or panic back, write nothing, and leave the others' commits intact.
func TestGroupFailures(t *testing.T) {
	s := mustOpen(t, testConfig(t))
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // a failed wait must not hang Close
	blocked := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		blocked <- s.Update(t.Context(), func(tx meta.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	const writers = 12
	type result struct {
		i        int
		err      error
		panicked any
	}
	results := make(chan result, writers)
	errBoom := errors.New("boom")
	// Writer 9's context ends while it waits in the queue.
	canceled, cancel := context.WithCancel(t.Context())
	for i := range writers {
		go func() {
			r := result{i: i}
			defer func() {
				r.panicked = recover()
				results <- r
			}()
			ctx := t.Context()
			if i == 9 {
				ctx = canceled
			}
			r.err = s.Update(ctx, func(tx meta.Tx) error {
				if err := tx.Put(fmt.Appendf(nil, "k%02d", i), []byte("x")); err != nil {
					return err
				}
				switch i {
				case 0, 4, 11: // first, middle and last of the group
					return fmt.Errorf("writer %d: %w", i, errBoom)
				case 6:
					panic("writer 6 panics")
				}
				return nil
			})
		}()
		waitQueued(t, s, i+1) // a known order in the queue
	}
	cancel()
	releaseOnce.Do(func() { close(release) })
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for range writers {
		r := <-results
		switch r.i {
		case 0, 4, 11:
			if !errors.Is(r.err, errBoom) || r.panicked != nil {
				t.Errorf("writer %d: Update = %v (panic %v), want its own errBoom", r.i, r.err, r.panicked)
			}
		case 6:
			if r.panicked != "writer 6 panics" {
				t.Errorf("writer 6: recovered %v, want its own panic", r.panicked)
			}
		case 9:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("writer 9 (canceled context): Update = %v, want context.Canceled", r.err)
			}
		default:
			if r.err != nil || r.panicked != nil {
				t.Errorf("writer %d: Update = %v (panic %v), want nil", r.i, r.err, r.panicked)
			}
		}
	}
	err := s.View(t.Context(), func(tx meta.Tx) error {
		for i := range writers {
			_, err := tx.Get(fmt.Appendf(nil, "k%02d", i))
			wrote := !errors.Is(err, meta.ErrNotFound)
			want := i != 0 && i != 4 && i != 6 && i != 9 && i != 11
			if wrote != want {
				t.Errorf("writer %d's key present = %v, want %v", i, wrote, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
