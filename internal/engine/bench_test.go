package engine_test

// Benchmarks for DESIGN.md's cost table ("The engine: properties it must
// keep"). Every benchmark reports counted I/O beside time: metaops/op from
// metatest.CountingStore and backend operations from
// chunkstest.CountingBackend. Time ratios (1 TiB against 1 GiB, the engine
// against cat and a plain file) come from sub-benchmarks named ratio=… or
// compare that alternate the candidates in one loop and divide their median
// times; scripts/bench.sh gathers them into a table. No benchmark asserts a
// time.
//
// The default sizes are small, so that CI's
//
//	go test -run='^$' -bench=. -benchtime=1x ./...
//
// stays quick. DELTADISK_BENCH_FULL=1 selects the sizes of the issue (a
// 256 MiB write before a snapshot, 1 GiB of data in exports, ...); the
// sub-benchmark names carry the sizes, so the two never mix in a table.
//
// The chunk store compresses (chunks.Config.Compress = true, the default) in
// every benchmark. Data written is random, so s2 is attempted and rejected,
// and no chunk deduplicates against another.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/chunks/local"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	KiB = int64(1) << 10
	MiB = int64(1) << 20
	GiB = int64(1) << 30
	TiB = int64(1) << 40
)

// fullEnv selects the full benchmark sizes.
const fullEnv = "DELTADISK_BENCH_FULL"

// scale returns small, or full when the full sizes are selected.
func scale(small, full int64) int64 {
	if os.Getenv(fullEnv) == "1" {
		return full
	}
	return small
}

// sizeName prints n in the largest binary unit that divides it: "1TiB".
func sizeName(n int64) string {
	for _, u := range []struct {
		n    int64
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d%s", n/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// benchEnv is an engine over bolt in dir and a chunk store (compressing)
// over a backend, each behind an operation counter. Unlike testEnv it can
// close and reopen its metadata, which the storage benchmark needs to read
// bolt's page statistics.
type benchEnv struct {
	dir     string
	db      *bolt.Store
	meta    *metatest.CountingStore
	backend *chunkstest.CountingBackend
	store   *chunks.Store
	e       *engine.Engine
}

func openBenchEnv(tb testing.TB, dir string, backend chunks.Backend) *benchEnv {
	tb.Helper()
	env := &benchEnv{dir: dir, backend: chunkstest.Counting(backend)}
	cfg := chunks.DefaultConfig()
	cfg.Backend = env.backend
	cfg.Compress = true
	store, err := chunks.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	env.store = store
	env.openMeta(tb)
	tb.Cleanup(func() { env.db.Close() })
	return env
}

func (env *benchEnv) openMeta(tb testing.TB) {
	tb.Helper()
	env.db = openBolt(tb, env.dir)
	env.meta = metatest.Counting(env.db)
	ecfg := engine.DefaultConfig()
	ecfg.Meta = env.meta
	ecfg.Zones = []engine.Zone{{Name: "z1", Store: env.store}}
	e, err := engine.Open(context.Background(), ecfg)
	if err != nil {
		tb.Fatal(err)
	}
	env.e = e
}

// metaPages closes the metadata, returns the bytes of the pages bolt's
// B+tree occupies (branch and leaf pages allocated, overflow included), and
// reopens it.
func (env *benchEnv) metaPages(tb testing.TB) int64 {
	tb.Helper()
	if err := env.db.Close(); err != nil {
		tb.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(env.dir, "meta.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			s := b.Stats()
			n += int64(s.BranchAlloc + s.LeafAlloc)
			return nil
		})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	env.openMeta(tb)
	return n
}

// reset zeroes both operation counters.
func (env *benchEnv) reset() {
	env.meta.Reset()
	env.backend.Reset()
}

// reportOps reports the counted I/O per iteration since the last reset.
func (env *benchEnv) reportOps(b *testing.B) {
	n := float64(b.N)
	c, s := env.meta.Counts(), env.backend.Stats()
	b.ReportMetric(float64(c.Ops())/n, "metaops/op")
	b.ReportMetric(float64(c.Updates)/n, "commits/op")
	b.ReportMetric(float64(s.Puts+s.ReadAts+s.Deletes+s.Lists)/n, "backendops/op")
}

func openLocal(tb testing.TB, dir string) chunks.Backend {
	tb.Helper()
	bk, err := local.Open(context.Background(), local.Config{Dir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	return bk
}

// newRand returns a deterministic fast random source.
func newRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func randBytes(r *rand.ChaCha8, n int64) []byte {
	p := make([]byte, n)
	r.Read(p)
	return p
}

// extentSize is the unit the benchmarks write data in: a 4 MiB WriteAt is
// one metadata commit.
const extentSize = 4 * MiB

// writeSpread writes n bytes of random data as 4 MiB extents spread evenly
// over a volume of size bytes (extent i at i*size/(n/4MiB)), so that a 1 GiB
// and a 1 TiB volume get the same pattern relative to their size.
func writeSpread(tb testing.TB, e *engine.Engine, vol engine.ID, size, n int64, seed uint64) {
	tb.Helper()
	count := n / extentSize
	stride := size / count / extentSize * extentSize
	r := newRand(seed)
	buf := make([]byte, extentSize)
	for i := range count {
		r.Read(buf)
		if err := e.WriteAt(context.Background(), vol, buf, i*stride); err != nil {
			tb.Fatalf("WriteAt(%d): %v", i*stride, err)
		}
	}
}

// writeRandomExtents writes n bytes of random data as 4 MiB extents at
// distinct random 4 MiB-aligned slots of a volume of size bytes.
func writeRandomExtents(tb testing.TB, e *engine.Engine, vol engine.ID, size, n int64, seed uint64) {
	tb.Helper()
	r := newRand(seed)
	slots := distinct(rand.New(r), size/extentSize, n/extentSize)
	buf := make([]byte, extentSize)
	for _, s := range slots {
		r.Read(buf)
		if err := e.WriteAt(context.Background(), vol, buf, s*extentSize); err != nil {
			tb.Fatalf("WriteAt(%d): %v", s*extentSize, err)
		}
	}
}

// distinct returns k distinct random integers in [0, n), in random order.
func distinct(r *rand.Rand, n, k int64) []int64 {
	if k > n {
		panic(fmt.Sprintf("distinct(%d, %d)", n, k))
	}
	seen := make(map[int64]bool, k)
	out := make([]int64, 0, k)
	for int64(len(out)) < k {
		v := r.Int64N(n)
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// alternate runs fns in turn, once each per b.Loop iteration (rotating
// which goes first), and returns the median time of each. On a shared
// machine a commit's fsync ranges from 0.2 to 8 ms from one second to the
// next; alternating makes every candidate meet the same conditions, and the
// median discards the stalls, so the ratio of two medians is stable where a
// ratio of two benchmarks run one after the other is not.
func alternate(b *testing.B, fns ...func()) []time.Duration {
	b.Helper()
	times := make([][]time.Duration, len(fns))
	for i := 0; b.Loop(); i++ {
		for j := range fns {
			k := (i + j) % len(fns)
			start := time.Now()
			fns[k]()
			times[k] = append(times[k], time.Since(start))
		}
	}
	meds := make([]time.Duration, len(fns))
	for k, ts := range times {
		slices.Sort(ts)
		meds[k] = ts[len(ts)/2]
	}
	return meds
}

// ms reports a duration in milliseconds as a metric named name-ms.
func ms(b *testing.B, d time.Duration, name string) {
	b.ReportMetric(float64(d)/float64(time.Millisecond), name+"-ms")
}

// sizedVolume is a volume of a benchmark's fixture.
type sizedVolume struct {
	disk int64
	env  *benchEnv
	vol  engine.ID
}

// BenchmarkSnapshot takes snapshots of a sparse volume holding the same
// data (4 MiB extents spread evenly), 1 GiB and 1 TiB in size: the cost must
// not depend on the size. The first iteration seals the head holding
// everything written; later ones seal empty heads, at the same metadata
// operations. ratio=1TiB:1GiB alternates snapshots of the two volumes and
// reports the ratio of the median times.
func BenchmarkSnapshot(b *testing.B) {
	ctx := context.Background()
	written := scale(8*MiB, 256*MiB)
	var vols []sizedVolume
	for _, disk := range []int64{GiB, TiB} {
		env := openBenchEnv(b, b.TempDir(), chunkstest.NewMem())
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		writeSpread(b, env.e, vol, disk, written, 1)
		vols = append(vols, sizedVolume{disk, env, vol})
	}
	snapshot := func(b *testing.B, v sizedVolume) func() {
		return func() {
			if _, err := v.env.e.Snapshot(ctx, v.vol); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, v := range vols {
		b.Run(fmt.Sprintf("disk=%s/written=%s", sizeName(v.disk), sizeName(written)), func(b *testing.B) {
			v.env.reset()
			for b.Loop() {
				snapshot(b, v)()
			}
			v.env.reportOps(b)
		})
	}
	b.Run(fmt.Sprintf("ratio=1TiB:1GiB/written=%s", sizeName(written)), func(b *testing.B) {
		t := alternate(b, snapshot(b, vols[0]), snapshot(b, vols[1]))
		ms(b, t[0], "1GiB")
		ms(b, t[1], "1TiB")
		b.ReportMetric(float64(t[1])/float64(t[0]), "ratio")
	})
}

// BenchmarkDiff diffs two snapshots between which 64 MiB changed, on a
// 1 GiB and a 1 TiB volume that hold the same data: the cost must depend on
// what changed, not on the size. ratio=1TiB:1GiB alternates the two.
func BenchmarkDiff(b *testing.B) {
	ctx := context.Background()
	written, changed := scale(8*MiB, 256*MiB), scale(4*MiB, 64*MiB)
	type pair struct {
		sizedVolume
		from, to engine.ID
	}
	var pairs []pair
	for _, disk := range []int64{GiB, TiB} {
		env := openBenchEnv(b, b.TempDir(), chunkstest.NewMem())
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		writeSpread(b, env.e, vol, disk, written, 1)
		from := must[engine.ID](b)(env.e.Snapshot(ctx, vol))
		writeSpread(b, env.e, vol, disk, changed, 2)
		to := must[engine.ID](b)(env.e.Snapshot(ctx, vol))
		pairs = append(pairs, pair{sizedVolume{disk, env, vol}, from, to})
	}
	diff := func(b *testing.B, p pair) func() {
		return func() {
			exts, err := p.env.e.Diff(ctx, p.from, p.to)
			if err != nil {
				b.Fatal(err)
			}
			var n int64
			for _, x := range exts {
				n += x.Length
			}
			if n != changed || len(exts) != int(changed/extentSize) {
				b.Fatalf("Diff = %d extents of %d bytes in all, want %d of %d", len(exts), n, changed/extentSize, changed)
			}
		}
	}
	for _, p := range pairs {
		b.Run(fmt.Sprintf("disk=%s/changed=%s", sizeName(p.disk), sizeName(changed)), func(b *testing.B) {
			p.env.reset()
			for b.Loop() {
				diff(b, p)()
			}
			p.env.reportOps(b)
		})
	}
	b.Run(fmt.Sprintf("ratio=1TiB:1GiB/changed=%s", sizeName(changed)), func(b *testing.B) {
		t := alternate(b, diff(b, pairs[0]), diff(b, pairs[1]))
		ms(b, t[0], "1GiB")
		ms(b, t[1], "1TiB")
		b.ReportMetric(float64(t[1])/float64(t[0]), "ratio")
	})
}

// BenchmarkIncrementalStorage measures what an incremental snapshot stores
// per byte changed: writes of 64 KiB (aligned) or 4 KiB at distinct random
// offsets of a volume full of random data, then a snapshot. stored/changed
// counts the pack bytes written plus the growth of bolt's B+tree pages;
// afterGC/changed counts the packs still held after a GC instead of those
// written (a 4 KiB write to a block written before in the same generation
// leaves its earlier chunk garbage). The same writes go to a qcow2 overlay
// of the same base (stored bytes: the overlay file's growth).
//
// The engine gets random bytes; qcow2 gets qemu-io's pattern fill, which it
// stores uncompressed, so its size does not depend on the bytes.
func BenchmarkIncrementalStorage(b *testing.B) {
	ctx := context.Background()
	disk := scale(64*MiB, GiB)
	writes := []struct {
		size  int64
		count int64
	}{
		{64 * KiB, scale(64, 1024)},
		{4 * KiB, scale(128, 4096)},
	}
	b.Run("disk="+sizeName(disk), func(b *testing.B) {
		dir := b.TempDir()
		env := openBenchEnv(b, dir, chunkstest.NewMem())
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		writeSpread(b, env.e, vol, disk, disk, 1)
		must[engine.ID](b)(env.e.Snapshot(ctx, vol))

		for _, w := range writes {
			changed := w.size * w.count
			b.Run(fmt.Sprintf("writes=%s/changed=%s/impl=engine", sizeName(w.size), sizeName(changed)), func(b *testing.B) {
				var stored, packs, pages, held int64
				buf := make([]byte, w.size)
				iter := uint64(0)
				for b.Loop() {
					b.StopTimer()
					iter++
					r := newRand(iter<<8 | uint64(w.size>>10))
					offs := distinct(rand.New(r), disk/w.size, w.count)
					packs0, pages0 := env.backend.Stats().PutBytes, env.metaPages(b)
					held0 := packBytes(b, env.store)
					b.StartTimer()
					for _, o := range offs {
						r.Read(buf)
						if err := env.e.WriteAt(ctx, vol, buf, o*w.size); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := env.e.Snapshot(ctx, vol); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					// Blocks written twice in the generation left chunks
					// that no entry references; GC (no grace period)
					// deletes the packs holding only those.
					if _, err := env.e.GC(ctx, engine.GCOptions{CompactBelow: 0.5}); err != nil {
						b.Fatal(err)
					}
					dp, dm := env.backend.Stats().PutBytes-packs0, env.metaPages(b)-pages0
					packs += dp
					pages += dm
					stored += dp + dm
					held += packBytes(b, env.store) - held0 + dm
					b.StartTimer()
				}
				total := float64(changed * int64(b.N))
				b.ReportMetric(float64(stored)/total, "stored/changed")
				b.ReportMetric(float64(held)/total, "afterGC/changed")
				b.ReportMetric(float64(packs)/total, "packs/changed")
				b.ReportMetric(float64(pages)/total, "meta/changed")
			})
		}

		qemuImg, err1 := exec.LookPath("qemu-img")
		qemuIO, err2 := exec.LookPath("qemu-io")
		if err := errors.Join(err1, err2); err != nil {
			b.Logf("no qcow2 baseline: %v", err)
			return
		}
		raw, baseQcow := filepath.Join(dir, "base.raw"), filepath.Join(dir, "base.qcow2")
		exportFile(b, env.e, vol, raw)
		run(b, qemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, baseQcow)
		if err := os.Remove(raw); err != nil {
			b.Fatal(err)
		}
		for _, w := range writes {
			changed := w.size * w.count
			b.Run(fmt.Sprintf("writes=%s/changed=%s/impl=qcow2", sizeName(w.size), sizeName(changed)), func(b *testing.B) {
				overlay := filepath.Join(dir, "overlay.qcow2")
				var stored int64
				iter := uint64(0)
				for b.Loop() {
					b.StopTimer()
					iter++
					r := rand.New(newRand(iter<<8 | uint64(w.size>>10)))
					offs := distinct(r, disk/w.size, w.count)
					os.Remove(overlay)
					run(b, qemuImg, "create", "-q", "-f", "qcow2", "-b", baseQcow, "-F", "qcow2", overlay)
					size0 := fileSize(b, overlay)
					b.StartTimer()
					// One qemu-io per 1024 writes: -c commands run in order.
					for len(offs) > 0 {
						k := min(len(offs), 1024)
						args := []string{"-f", "qcow2"}
						for i, o := range offs[:k] {
							args = append(args, "-c", fmt.Sprintf("write -q -P %d %d %d", 1+i%255, o*w.size, w.size))
						}
						run(b, qemuIO, append(args, overlay)...)
						offs = offs[k:]
					}
					b.StopTimer()
					stored += fileSize(b, overlay) - size0
					b.StartTimer()
				}
				b.ReportMetric(float64(stored)/float64(changed*int64(b.N)), "stored/changed")
			})
		}
	})
}

// packBytes returns the bytes of all the packs a store holds.
func packBytes(tb testing.TB, s *chunks.Store) int64 {
	tb.Helper()
	var n int64
	err := s.ListPacks(context.Background(), func(_ string, size int64) error {
		n += size
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args[:min(len(args), 6)], " "), err, out)
	}
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// exportFile exports an image into a new file at path.
func exportFile(tb testing.TB, e *engine.Engine, id engine.ID, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 4<<20)
	if _, err := e.Export(context.Background(), id, w, engine.ExportOptions{}); err != nil {
		tb.Fatal(err)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		tb.Fatal(err)
	}
}

// vhdOptions makes an export a fixed VHD: the image, then its footer.
var vhdOptions = engine.ExportOptions{VHD: true, UniqueID: [16]byte{1, 2, 3}, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}

// BenchmarkExport streams a volume holding a quarter of its size in random
// data (4 MiB extents at random places) as a fixed VHD to io.Discard, on
// the local pack backend, beside cat of the same image as a raw file from
// the page cache to /dev/null. ratio=engine:cat alternates the two and
// reports the ratio of their median throughputs.
func BenchmarkExport(b *testing.B) {
	ctx := context.Background()
	disk := scale(256*MiB, 4*GiB)
	data := disk / 4
	b.Run(fmt.Sprintf("disk=%s/data=%s", sizeName(disk), sizeName(data)), func(b *testing.B) {
		dir := b.TempDir()
		env := openBenchEnv(b, dir, openLocal(b, filepath.Join(dir, "packs")))
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		writeRandomExtents(b, env.e, vol, disk, data, 1)
		export := func() {
			n, err := env.e.Export(ctx, vol, io.Discard, vhdOptions)
			if err != nil {
				b.Fatal(err)
			}
			if n != disk+vhd.FooterSize {
				b.Fatalf("Export wrote %d bytes, want %d", n, disk+vhd.FooterSize)
			}
		}

		raw := filepath.Join(dir, "disk.raw")
		exportFile(b, env.e, vol, raw)
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer devNull.Close()
		cat := func() {
			cmd := exec.Command("cat", raw)
			cmd.Stdout = devNull
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
		cat() // into the page cache

		b.Run("impl=engine", func(b *testing.B) {
			env.reset()
			b.SetBytes(disk + vhd.FooterSize)
			for b.Loop() {
				export()
			}
			env.reportOps(b)
		})
		b.Run("impl=cat", func(b *testing.B) {
			b.SetBytes(disk)
			for b.Loop() {
				cat()
			}
		})
		b.Run("ratio=engine:cat", func(b *testing.B) {
			t := alternate(b, export, cat)
			mbps := func(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }
			e, c := mbps(disk+vhd.FooterSize, t[0]), mbps(disk, t[1])
			b.ReportMetric(e, "engine-MB/s")
			b.ReportMetric(c, "cat-MB/s")
			b.ReportMetric(e/c, "ratio")
		})
	})
}

// BenchmarkDurableWrite writes random 64 KiB-aligned data durably, 4 MiB
// per op: through the engine (on the local pack backend and bolt) and to a
// plain file with fsync. The engine is measured with 4 MiB WriteAt calls
// (one commit each) and with 64 KiB WriteAt calls (a commit each); the file
// with 64 KiB WriteAt calls and an fsync per 4 MiB or per 64 KiB.
// compare alternates the four and reports each one's median throughput and
// the engine's ratio to the file at the same durability granularity.
func BenchmarkDurableWrite(b *testing.B) {
	ctx := context.Background()
	const disk = GiB
	const batch = 4 * MiB
	const block = engine.BlockSize
	// pool supplies the bytes; a counter stamped in each block keeps every
	// block unique, so nothing deduplicates.
	pool := randBytes(newRand(7), 64*MiB)
	var stamp uint64
	next := func(r *rand.Rand, n int64) []byte {
		o := r.Int64N(int64(len(pool))/block-n/block+1) * block
		p := pool[o : o+n]
		for i := int64(0); i < n; i += block {
			stamp++
			binary.LittleEndian.PutUint64(p[i:], stamp)
		}
		return p
	}

	type engineCase struct {
		write int64
		env   *benchEnv
		vol   engine.ID
		r     *rand.Rand
	}
	var engines []*engineCase
	for i, write := range []int64{batch, block} {
		dir := b.TempDir()
		env := openBenchEnv(b, dir, openLocal(b, filepath.Join(dir, "packs")))
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		engines = append(engines, &engineCase{write, env, vol, rand.New(newRand(uint64(i + 1)))})
	}
	engineOp := func(b *testing.B, c *engineCase) func() {
		return func() {
			for range batch / c.write {
				off := c.r.Int64N((disk-c.write)/block+1) * block
				if err := c.env.e.WriteAt(ctx, c.vol, next(c.r, c.write), off); err != nil {
					b.Fatal(err)
				}
			}
		}
	}

	type fileCase struct {
		sync int64
		f    *os.File
		r    *rand.Rand
	}
	var files []*fileCase
	for i, sync := range []int64{batch, block} {
		f, err := os.Create(filepath.Join(b.TempDir(), "disk.raw"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(disk); err != nil {
			b.Fatal(err)
		}
		files = append(files, &fileCase{sync, f, rand.New(newRand(uint64(i + 10)))})
	}
	fileOp := func(b *testing.B, c *fileCase) func() {
		return func() {
			for i := int64(0); i < batch; i += block {
				if _, err := c.f.WriteAt(next(c.r, block), c.r.Int64N(disk/block)*block); err != nil {
					b.Fatal(err)
				}
				if (i+block)%c.sync == 0 {
					if err := c.f.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}

	for _, c := range engines {
		b.Run(fmt.Sprintf("disk=%s/impl=engine/write=%s", sizeName(disk), sizeName(c.write)), func(b *testing.B) {
			c.env.reset()
			b.SetBytes(batch)
			op := engineOp(b, c)
			for b.Loop() {
				op()
			}
			c.env.reportOps(b)
		})
	}
	for _, c := range files {
		b.Run(fmt.Sprintf("disk=%s/impl=file/sync=%s", sizeName(disk), sizeName(c.sync)), func(b *testing.B) {
			b.SetBytes(batch)
			op := fileOp(b, c)
			for b.Loop() {
				op()
			}
		})
	}
	b.Run(fmt.Sprintf("disk=%s/compare", sizeName(disk)), func(b *testing.B) {
		t := alternate(b, engineOp(b, engines[0]), fileOp(b, files[0]), engineOp(b, engines[1]), fileOp(b, files[1]))
		mbps := func(d time.Duration) float64 { return float64(batch) / d.Seconds() / 1e6 }
		b.ReportMetric(mbps(t[0]), "engine-4MiB-MB/s")
		b.ReportMetric(mbps(t[1]), "file-sync4MiB-MB/s")
		b.ReportMetric(mbps(t[2]), "engine-64KiB-MB/s")
		b.ReportMetric(mbps(t[3]), "file-sync64KiB-MB/s")
		b.ReportMetric(float64(t[1])/float64(t[0]), "ratio-4MiB")
		b.ReportMetric(float64(t[3])/float64(t[2]), "ratio-64KiB")
	})
}

// Environment of the child processes BenchmarkExportRSS starts.
const (
	childEnv = "DELTADISK_BENCH_CHILD" // "build" or "export"
	dirEnv   = "DELTADISK_BENCH_DIR"
	diskEnv  = "DELTADISK_BENCH_DISK"
	dataEnv  = "DELTADISK_BENCH_DATA"
	volEnv   = "DELTADISK_BENCH_VOL"
)

// BenchmarkExportRSS measures the peak resident memory of a process that
// exports a sparse 1 TiB volume to io.Discard. It re-executes the test
// binary twice: a child that builds the volume on the local pack backend
// and bolt in a temp dir, then a child that opens them and exports.
//
// Two figures are reported for the export child. maxrss-MiB is its
// ru_maxrss from wait4 (ProcessState.SysUsage). Go starts children with
// clone(CLONE_VM|CLONE_VFORK), and at execve Linux folds the high-water RSS
// of the mm being left (the parent's) into the child's maxrss, so that
// figure is max(parent's peak, child's peak); scripts/bench.sh runs this
// benchmark in a go test of its own to keep the parent small.
// peak-RSS-MiB is the child's own high-water mark (VmHWM of
// /proc/self/status, read as it exits), which starts afresh at execve.
func BenchmarkExportRSS(b *testing.B) {
	disk, data := TiB, scale(16*MiB, GiB)
	b.Run(fmt.Sprintf("disk=%s/data=%s", sizeName(disk), sizeName(data)), func(b *testing.B) {
		dir := b.TempDir()
		env := []string{dirEnv + "=" + dir, diskEnv + "=" + strconv.FormatInt(disk, 10), dataEnv + "=" + strconv.FormatInt(data, 10)}
		out, _ := runChild(b, "build", env)
		vol := out["vol"]
		buildHWM := childFloat(b, out, "hwm_kib") / 1024
		var hwm, maxrss, secs float64
		for b.Loop() {
			out, rss := runChild(b, "export", append(env, volEnv+"="+vol))
			hwm = max(hwm, childFloat(b, out, "hwm_kib")/1024)
			maxrss = max(maxrss, rss)
			secs += childFloat(b, out, "seconds")
		}
		b.ReportMetric(hwm, "peak-RSS-MiB")
		b.ReportMetric(buildHWM, "build-peak-RSS-MiB")
		b.ReportMetric(maxrss, "maxrss-MiB")
		b.ReportMetric(secs/float64(b.N), "export-s")
	})
}

// runChild runs the test binary as a benchmark child and returns the
// key=value pairs of its result line and its ru_maxrss in MiB.
func runChild(b *testing.B, mode string, env []string) (map[string]string, float64) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child %s: %v\n%s", mode, err, out)
	}
	res := make(map[string]string)
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "benchchild:"); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				res[k] = v
			}
		}
	}
	if len(res) == 0 {
		b.Fatalf("child %s printed no result:\n%s", mode, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Fatalf("child %s: no rusage", mode)
	}
	return res, float64(ru.Maxrss) / 1024 // Maxrss is in KiB on Linux
}

func childFloat(b *testing.B, out map[string]string, key string) float64 {
	b.Helper()
	v, err := strconv.ParseFloat(out[key], 64)
	if err != nil {
		b.Fatalf("child result %s: %v", key, err)
	}
	return v
}

// highWaterKiB returns this process's peak resident set (VmHWM) in KiB.
func highWaterKiB(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// TestBenchChild is the body of BenchmarkExportRSS's child processes. It
// does nothing unless DELTADISK_BENCH_CHILD is set (it does not skip, since
// CI counts a skip as a failure).
func TestBenchChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		return
	}
	dir := os.Getenv(dirEnv)
	disk, err1 := strconv.ParseInt(os.Getenv(diskEnv), 10, 64)
	data, err2 := strconv.ParseInt(os.Getenv(dataEnv), 10, 64)
	if err := errors.Join(err1, err2); err != nil || dir == "" {
		t.Fatalf("bad child environment: %v", err)
	}
	ctx := context.Background()
	env := openBenchEnv(t, dir, openLocal(t, filepath.Join(dir, "packs")))
	switch mode {
	case "build":
		vol := must[engine.ID](t)(env.e.CreateVolume(ctx, disk))
		writeRandomExtents(t, env.e, vol, disk, data, 1)
		fmt.Printf("benchchild: vol=%d hwm_kib=%d\n", vol, highWaterKiB(t))
	case "export":
		vol, err := strconv.ParseUint(os.Getenv(volEnv), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		n, err := env.e.Export(ctx, engine.ID(vol), io.Discard, vhdOptions)
		if err != nil {
			t.Fatal(err)
		}
		if n != disk+vhd.FooterSize {
			t.Fatalf("Export wrote %d bytes, want %d", n, disk+vhd.FooterSize)
		}
		st := env.backend.Stats()
		fmt.Printf("benchchild: seconds=%.3f reads=%d readbytes=%d hwm_kib=%d\n",
			time.Since(start).Seconds(), st.ReadAts, st.ReadBytes, highWaterKiB(t))
	default:
		t.Fatalf("unknown child mode %q", mode)
	}
}

// BenchmarkCachedRead reads 4 KiB at random 4 KiB-aligned offsets of a
// filled volume (random data, so chunks are stored raw) through three
// engines over the same stores: without the block cache, with a cache a
// quarter of the volume (the default 64 MiB at the full size) and with one
// that holds all of it. Each cache is warmed by one sequential read of the
// volume. ratio=off:on alternates the three over the same offsets, 64 reads
// per candidate per iteration, and reports each one's median time per read,
// its hit rate, and the speed-ups off/quarter and off/all.
func BenchmarkCachedRead(b *testing.B) {
	ctx := context.Background()
	disk := scale(32*MiB, 256*MiB)
	const readSize, batch = 4 * KiB, 64
	b.Run(fmt.Sprintf("disk=%s/read=4KiB", sizeName(disk)), func(b *testing.B) {
		dir := b.TempDir()
		env := openBenchEnv(b, dir, openLocal(b, filepath.Join(dir, "packs")))
		vol := must[engine.ID](b)(env.e.CreateVolume(ctx, disk))
		writeSpread(b, env.e, vol, disk, disk, 1)
		open := func(cacheBytes int64) *engine.Engine {
			cfg := engine.DefaultConfig()
			cfg.Meta, cfg.Zones, cfg.CacheBytes = env.meta, []engine.Zone{{Name: "z1", Store: env.store}}, cacheBytes
			e := must[*engine.Engine](b)(engine.Open(ctx, cfg))
			warm := make([]byte, extentSize)
			for off := int64(0); off < disk; off += extentSize {
				if err := e.ReadAt(ctx, vol, warm, off); err != nil {
					b.Fatal(err)
				}
			}
			return e
		}
		engines := []*engine.Engine{open(0), open(disk / 4), open(disk)}
		// Every candidate draws the same sequence of offsets from its own
		// source, so each meets the same reads whatever the order alternate
		// runs them in.
		reads := func(e *engine.Engine) func() {
			r := rand.New(newRand(2))
			buf := make([]byte, readSize)
			return func() {
				for range batch {
					if err := e.ReadAt(ctx, vol, buf, r.Int64N(disk/readSize)*readSize); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.Run("ratio=off:on", func(b *testing.B) {
			var before []engine.CacheStats
			for _, e := range engines {
				before = append(before, e.CacheStats())
			}
			t := alternate(b, reads(engines[0]), reads(engines[1]), reads(engines[2]))
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / batch }
			for i, name := range []string{"off", "quarter", "all"} {
				b.ReportMetric(us(t[i]), name+"-us/read")
				if i > 0 {
					st := engines[i].CacheStats()
					hits, misses := st.Hits-before[i].Hits, st.Misses-before[i].Misses
					b.ReportMetric(float64(hits)/float64(hits+misses), name+"-hitrate")
					b.ReportMetric(float64(t[0])/float64(t[i]), "ratio-off:"+name)
				}
			}
		})
	})
}

// BenchmarkWriteBackFlush is one cycle of what a guest does to an attached
// disk: 32 writes of 4 KiB at random places of a 1 GiB volume, through a
// WriteBack, then a Flush, on local packs and bolt. It reports the time of
// the flush alone beside the cycle's, which is what bounds small random
// writes over NBD (fio's --fsync=32 waits for each flush). "commit" flushes
// by committing the blocks; "journal" appends the writes to the journal
// and fsyncs it, and folds the blocks in the background when 64 MiB of
// them are buffered or 5 s have passed.
func BenchmarkWriteBackFlush(b *testing.B) {
	for _, journal := range []bool{false, true} {
		name := map[bool]string{false: "commit", true: "journal"}[journal]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			configure := func(*engine.Config) {}
			if journal {
				configure = func(c *engine.Config) { c.JournalDir = filepath.Join(dir, "journal") }
			}
			env := newEnvConfigured(b, dir, openLocal(b, filepath.Join(dir, "packs")), func(s meta.Store) meta.Store { return s }, configure)
			vol := must[engine.ID](b)(env.e.CreateVolume(ctx, 1<<30))
			wb := must[*engine.WriteBack](b)(env.e.OpenWriteBack(ctx, vol, 0))
			b.Cleanup(func() { wb.Close(ctx) })
			r := newRand(1)
			rng := rand.New(rand.NewPCG(1, 2))
			p := make([]byte, 4096)
			var flushing time.Duration
			b.ResetTimer()
			for b.Loop() {
				for range 32 {
					r.Read(p)
					if err := wb.WriteAt(ctx, p, rng.Int64N(1<<30/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				if err := wb.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				flushing += time.Since(start)
			}
			b.ReportMetric(float64(flushing.Microseconds())/float64(b.N), "flush-µs/op")
		})
	}
}
