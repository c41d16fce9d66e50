package metatest_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
	"github.com/google/go-cmp/cmp"
)

func newBolt(tb testing.TB) metatest.Opener {
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

// TestCountingConformance checks that the wrapper changes no behaviour.
func TestCountingConformance(t *testing.T) {
	metatest.Run(t, func(tb testing.TB) metatest.Opener {
		open := newBolt(tb)
		return func() meta.Store { return metatest.Counting(open()) }
	})
}

func TestCounting(t *testing.T) {
	c := metatest.Counting(newBolt(t)())
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	errStop := errors.New("stop")

	steps := []struct {
		name string
		do   func() error
		want metatest.Counts
	}{
		{"two puts", func() error {
			return c.Update(ctx, func(tx meta.Tx) error {
				tx.Put([]byte("a"), []byte("1"))
				return tx.Put([]byte("b"), []byte("2"))
			})
		}, metatest.Counts{Updates: 1, UpdateRuns: 1, Puts: 2}},
		{"put and delete in an aborted update", func() error {
			err := c.Update(ctx, func(tx meta.Tx) error {
				tx.Put([]byte("c"), []byte("3"))
				tx.Delete([]byte("a"))
				return errStop
			})
			if !errors.Is(err, errStop) {
				return err
			}
			return nil
		}, metatest.Counts{Updates: 1, UpdateRuns: 1, Puts: 1, Deletes: 1}},
		{"refused writes and gets in a view", func() error {
			return c.View(ctx, func(tx meta.Tx) error {
				tx.Put([]byte("x"), nil)
				tx.Delete([]byte("x"))
				tx.Get([]byte("a"))
				tx.Get([]byte("absent"))
				return nil
			})
		}, metatest.Counts{Views: 1, Puts: 1, Deletes: 1, Gets: 2}},
		{"full scan", func() error {
			return c.View(ctx, func(tx meta.Tx) error {
				return tx.Scan(nil, nil, func(_, _ []byte) error { return nil })
			})
		}, metatest.Counts{Views: 1, Scans: 1, ScanKeys: 2}},
		{"scan stopped at its first key", func() error {
			err := c.View(ctx, func(tx meta.Tx) error {
				return tx.Scan(nil, nil, func(_, _ []byte) error { return errStop })
			})
			if !errors.Is(err, errStop) {
				return err
			}
			return nil
		}, metatest.Counts{Views: 1, Scans: 1, ScanKeys: 1}},
		{"empty scan", func() error {
			return c.View(ctx, func(tx meta.Tx) error {
				return tx.Scan([]byte("z"), nil, func(_, _ []byte) error { return nil })
			})
		}, metatest.Counts{Views: 1, Scans: 1}},
		{"update with a canceled context", func() error {
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			if err := c.Update(canceled, func(meta.Tx) error { return nil }); err == nil {
				return errors.New("Update(canceled ctx) = nil")
			}
			return nil
		}, metatest.Counts{Updates: 1}},
	}
	for _, step := range steps {
		c.Reset()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if diff := cmp.Diff(step.want, c.Counts()); diff != "" {
			t.Errorf("%s: Counts() mismatch (-want +got):\n%s", step.name, diff)
		}
	}

	c.Reset()
	if got := c.Counts(); got != (metatest.Counts{}) {
		t.Errorf("Counts() after Reset = %+v, want zero", got)
	}
}

func TestCountsOps(t *testing.T) {
	c := metatest.Counts{Views: 10, Updates: 20, UpdateRuns: 30, Gets: 1, Puts: 2, Deletes: 4, Scans: 8, ScanKeys: 16}
	if got, want := c.Ops(), int64(31); got != want {
		t.Errorf("%+v.Ops() = %d, want %d (transactions are not ops)", c, got, want)
	}
}

func TestCountingConcurrent(t *testing.T) {
	c := metatest.Counting(newBolt(t)())
	t.Cleanup(func() { c.Close() })
	const goroutines, views = 8, 50
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range views {
				c.View(t.Context(), func(tx meta.Tx) error {
					tx.Get([]byte("k"))
					return nil
				})
			}
		})
	}
	wg.Wait()
	want := metatest.Counts{Views: goroutines * views, Gets: goroutines * views}
	if diff := cmp.Diff(want, c.Counts()); diff != "" {
		t.Errorf("Counts() mismatch (-want +got):\n%s", diff)
	}
}
