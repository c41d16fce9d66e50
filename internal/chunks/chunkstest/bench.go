package chunkstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

// Bench measures the backends open returns: Put of pack-sized objects,
// ReadAt of chunk-sized ranges, and List.
func Bench(b *testing.B, open func(b *testing.B) chunks.Backend) {
	fresh := func(b *testing.B) chunks.Backend {
		bk := open(b)
		b.Cleanup(func() { bk.Close() })
		return bk
	}
	ctx := context.Background()
	for _, size := range []int{64 << 10, 4 << 20, 16 << 20} {
		b.Run("Put/size="+sizeName(size), func(b *testing.B) {
			bk := fresh(b)
			data := randomBytes(1, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := bk.Put(ctx, "bench/put", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("ReadAt/size=64KiB", func(b *testing.B) {
		bk := fresh(b)
		const objSize, size = 16 << 20, 64 << 10
		put(b, bk, "bench/read", randomBytes(2, objSize))
		p := make([]byte, size)
		r := rand.New(rand.NewPCG(1, 2))
		b.SetBytes(size)
		for b.Loop() {
			off := r.Int64N(objSize/size) * size
			if err := bk.ReadAt(ctx, "bench/read", p, off); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("List/objects=1000", func(b *testing.B) {
		bk := fresh(b)
		for i := range 1000 {
			put(b, bk, fmt.Sprintf("bench/list/%04d", i), []byte{1})
		}
		for b.Loop() {
			n := 0
			if err := bk.List(ctx, "bench/list/", func(string, int64) error { n++; return nil }); err != nil || n != 1000 {
				b.Fatalf("List = %v after %d objects, want 1000", err, n)
			}
		}
	})
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
