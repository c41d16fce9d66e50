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
