package chunks_test

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/chunks/local"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

const blockSize = 64 << 10 // the engine's block, so the usual chunk size

var codecs = []struct {
	name     string
	compress bool
}{{"raw", false}, {"s2", true}}

// BenchmarkPut writes 64 KiB semi-compressible chunks, one Put after
// another, to memory: the CPU cost of the write path.
func BenchmarkPut(b *testing.B) {
	for _, c := range codecs {
		for _, n := range []int{1, 64} {
			b.Run(fmt.Sprintf("codec=%s/chunks=%d", c.name, n), func(b *testing.B) {
				m := chunkstest.Counting(chunkstest.NewMem())
				s := newStore(b, m, c.compress, 0)
				var cs []chunks.Chunk
				for i := range n {
					cs = append(cs, chunkOf(semiBytes(uint64(i), blockSize)))
				}
				b.SetBytes(int64(n * blockSize))
				puts := 0
				for b.Loop() {
					if _, err := s.Put(b.Context(), cs); err != nil {
						b.Fatal(err)
					}
					puts++
				}
				st := m.Stats()
				b.ReportMetric(float64(st.Puts)/float64(puts), "packs/op")
				b.ReportMetric(float64(st.PutBytes)/float64(puts*n*blockSize), "stored/plain")
			})
		}
	}
}

// BenchmarkPutParallel has 64 writers each putting one 64 KiB chunk at a
// time: packs/op below 1 is group commit at work. On local files every pack
// costs two fsyncs, so sharing them is what makes small writes fast.
func BenchmarkPutParallel(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) chunks.Backend
	}{
		{"mem", func(*testing.B) chunks.Backend { return chunkstest.NewMem() }},
		{"local", func(b *testing.B) chunks.Backend {
			l, err := local.Open(b.Context(), local.Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
	}
	for _, bk := range backends {
		b.Run("backend="+bk.name, func(b *testing.B) {
			m := chunkstest.Counting(bk.open(b))
			s := newStore(b, m, true, 0)
			var seed atomic.Uint64
			var puts atomic.Int64
			b.SetBytes(blockSize)
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				c := chunkOf(semiBytes(seed.Add(1), blockSize))
				for pb.Next() {
					if _, err := s.Put(b.Context(), []chunks.Chunk{c}); err != nil {
						b.Error(err)
						return
					}
					puts.Add(1)
				}
			})
			b.ReportMetric(float64(m.Stats().Puts)/float64(puts.Load()), "packs/op")
		})
	}
}

// BenchmarkGet reads 64 KiB chunks back from memory: read, decode, verify.
func BenchmarkGet(b *testing.B) {
	for _, c := range codecs {
		b.Run("codec="+c.name, func(b *testing.B) {
			s := newStore(b, chunkstest.NewMem(), c.compress, 0)
			var cs []chunks.Chunk
			for i := range 64 {
				cs = append(cs, chunkOf(semiBytes(uint64(i), blockSize)))
			}
			locs := put(b, s, cs...)
			dst := make([]byte, blockSize)
			b.SetBytes(blockSize)
			i := 0
			for b.Loop() {
				k := i % len(cs)
				if _, err := s.Get(b.Context(), cs[k].Ref, locs[k], dst); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkHash compares the chunk hash (zeebo/blake3) with SHA-256 on one
// block.
func BenchmarkHash(b *testing.B) {
	data := randomBytes(1, blockSize)
	hashes := []struct {
		name string
		sum  func([]byte)
	}{
		{"blake3", func(p []byte) { chunks.Sum(p) }},
		{"sha256", func(p []byte) { sha256.Sum256(p) }},
	}
	for _, h := range hashes {
		b.Run("hash="+h.name, func(b *testing.B) {
			b.SetBytes(blockSize)
			for b.Loop() {
				h.sum(data)
			}
		})
	}
}

// BenchmarkCompress compares s2, the write path's codec, with zstd on one
// block; stored/plain is the compression ratio.
func BenchmarkCompress(b *testing.B) {
	fastest, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	deflt, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	b.Cleanup(func() { fastest.Close(); deflt.Close(); dec.Close() })
	codecs := []struct {
		name   string
		encode func(dst, src []byte) []byte
		decode func(dst, src []byte) ([]byte, error)
	}{
		{"s2", s2.Encode, s2.Decode},
		{"s2-better", s2.EncodeBetter, s2.Decode},
		{"zstd-fastest", func(dst, src []byte) []byte { return fastest.EncodeAll(src, dst[:0]) }, func(dst, src []byte) ([]byte, error) { return dec.DecodeAll(src, dst[:0]) }},
		{"zstd-default", func(dst, src []byte) []byte { return deflt.EncodeAll(src, dst[:0]) }, func(dst, src []byte) ([]byte, error) { return dec.DecodeAll(src, dst[:0]) }},
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"semi", semiBytes(1, blockSize)},
		{"random", randomBytes(1, blockSize)},
	}
	for _, in := range inputs {
		for _, c := range codecs {
			enc := c.encode(make([]byte, s2.MaxEncodedLen(blockSize)), in.data)
			b.Run(fmt.Sprintf("data=%s/codec=%s/op=encode", in.name, c.name), func(b *testing.B) {
				dst := make([]byte, s2.MaxEncodedLen(blockSize))
				b.SetBytes(blockSize)
				for b.Loop() {
					c.encode(dst, in.data)
				}
				b.ReportMetric(float64(len(enc))/blockSize, "stored/plain")
			})
			b.Run(fmt.Sprintf("data=%s/codec=%s/op=decode", in.name, c.name), func(b *testing.B) {
				dst := make([]byte, blockSize)
				b.SetBytes(blockSize)
				for b.Loop() {
					if _, err := c.decode(dst, enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
