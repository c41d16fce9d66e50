package metatest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// Bench runs the benchmarks every backend reports: commits of sequential and
// random keys in batches, point gets, and range scans. Keys are 24 bytes and
// values 40, the size of the engine's block-map entries.
func Bench(b *testing.B, newStore NewStore) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("Put/order=seq/batch=%d", batch), func(b *testing.B) {
			benchPut(b, newStore, batch, func(i uint64, _ *rand.Rand) uint64 { return i })
		})
	}
	b.Run("Put/order=random/batch=1000", func(b *testing.B) {
		benchPut(b, newStore, 1000, func(_ uint64, r *rand.Rand) uint64 { return r.Uint64() })
	})
	const keys = 100_000
	b.Run(fmt.Sprintf("Get/keys=%d", keys), func(b *testing.B) {
		s := benchStore(b, newStore, keys)
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			k := benchKey(r.Uint64N(keys))
			err := s.View(b.Context(), func(tx meta.Tx) error {
				_, err := tx.Get(k)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	const scanned = 1000
	b.Run(fmt.Sprintf("Scan/keys=%d/range=%d", keys, scanned), func(b *testing.B) {
		s := benchStore(b, newStore, keys)
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			start := r.Uint64N(keys - scanned)
			n := 0
			err := s.View(b.Context(), func(tx meta.Tx) error {
				return tx.Scan(benchKey(start), benchKey(start+scanned), func(_, _ []byte) error {
					n++
					return nil
				})
			})
			if err != nil || n != scanned {
				b.Fatalf("Scan = %d keys, %v; want %d, nil", n, err, scanned)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scanned), "ns/key")
	})
}

// benchPut commits batch puts per iteration, the i-th key being keyAt(i).
func benchPut(b *testing.B, newStore NewStore, batch int, keyAt func(uint64, *rand.Rand) uint64) {
	s, _ := open(b, newStore)
	r := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 40)
	var i uint64
	for b.Loop() {
		err := s.Update(b.Context(), func(tx meta.Tx) error {
			for range batch {
				if err := tx.Put(benchKey(keyAt(i, r)), value); err != nil {
					return err
				}
				i++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
}

// benchStore opens a store holding keys 0 to n-1.
func benchStore(b *testing.B, newStore NewStore, n uint64) meta.Store {
	s, _ := open(b, newStore)
	value := make([]byte, 40)
	const batch = 10_000
	for i := uint64(0); i < n; i += batch {
		mustUpdate(b, s, func(tx meta.Tx) error {
			for j := i; j < min(i+batch, n); j++ {
				if err := tx.Put(benchKey(j), value); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return s
}

// benchKey is shaped like an engine block-map key: lineage, block, ^generation.
func benchKey(block uint64) []byte {
	k := make([]byte, 0, 24)
	k = binary.BigEndian.AppendUint64(k, 1)
	k = binary.BigEndian.AppendUint64(k, block)
	return binary.BigEndian.AppendUint64(k, ^uint64(0))
}
