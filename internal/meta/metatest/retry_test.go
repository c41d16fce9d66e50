package metatest_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
)

// TestRetryWrappers: each wrapper runs every Update's closure twice, and
// only the second run's writes stand.
func TestRetryWrappers(t *testing.T) {
	for name, wrap := range map[string]func(meta.Store) meta.Store{
		"replaying": metatest.Replaying, "conflicting": metatest.Conflicting,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cfg := bolt.DefaultConfig()
			cfg.Path = filepath.Join(t.TempDir(), "meta.db")
			b, err := bolt.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			s := wrap(b)
			runs := 0
			incr := func(tx meta.Tx) error {
				runs++ // state outside the transaction: what the wrappers expose
				n := 0
				if v, err := tx.Get([]byte("n")); err == nil {
					n, _ = strconv.Atoi(string(v))
				} else if !errors.Is(err, meta.ErrNotFound) {
					return err
				}
				if err := tx.Put([]byte("n"), []byte(strconv.Itoa(n+1))); err != nil {
					return err
				}
				return tx.Put([]byte("run"+strconv.Itoa(runs)), nil)
			}
			for range 3 {
				if err := s.Update(ctx, incr); err != nil {
					t.Fatal(err)
				}
			}
			if runs != 6 {
				t.Errorf("closure ran %d times for 3 Updates, want 6", runs)
			}
			var keys []string
			err = b.View(ctx, func(tx meta.Tx) error {
				return tx.Scan([]byte("a"), nil, func(k, v []byte) error {
					keys = append(keys, string(k)+"="+string(v))
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			// Only the second run of each Update wrote: n counts 3, and
			// run2, run4, run6 are there, not run1, run3, run5.
			want := []string{"n=3", "run2=", "run4=", "run6="}
			if len(keys) != len(want) {
				t.Fatalf("store holds %v, want %v", keys, want)
			}
			for i := range want {
				if keys[i] != want[i] {
					t.Fatalf("store holds %v, want %v", keys, want)
				}
			}
			// A closure that fails runs once and writes nothing.
			runs = 0
			boom := errors.New("boom")
			err = s.Update(ctx, func(tx meta.Tx) error {
				runs++
				_ = tx.Put([]byte("x"), []byte("1"))
				return boom
			})
			if !errors.Is(err, boom) || runs != 1 {
				t.Fatalf("failing closure: err %v after %d runs, want boom after 1", err, runs)
			}
		})
	}
}
