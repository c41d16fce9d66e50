package main_test

// BenchmarkManyWriters measures the page-blob write path under many
// clients: 32 azblob clients each Put Page 64 KiB at random aligned
// offsets into their own 1 GiB disk (a write grant each), every page
// unique, and the same 32 clients send the same PUTs to an HTTPS server
// that only reads and discards the bodies (this test binary as a child,
// with deltadisk's certificate). The two alternate in phases within each
// round, so a noisy machine slows both; the reported ratio is the median
// of the rounds' deltadisk/discard MB/s.
//
// A sustained phase then writes to deltadisk alone and samples, every
// second, the space its data directory takes on disk (allocated blocks:
// packs, metadata, journal) against the live data, the distinct blocks
// written times 64 KiB (they neither compress nor deduplicate). It reports
// the largest ratio seen once at least 64 MiB are live, and the last.
//
// By default phases last 1 s and the sustained phase 2 s, so that CI's
// -benchtime=1x run stays quick; DELTADISK_BENCH_FULL=1 makes the phases
// 15 s and the sustained phase 4 minutes (the figures). Rerun with
// -benchtime=3x for medians of three rounds. DELTADISK_BENCH_SERVER_PROFILE
// profiles the server, as in BenchmarkUploadCPU.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

func BenchmarkManyWriters(b *testing.B) {
	const (
		writers   = 32
		pageBytes = 64 << 10
		diskBytes = 1 << 30
		pages     = diskBytes / pageBytes
	)
	phase, sustained := time.Second, 2*time.Second
	if os.Getenv(benchFullEnv) != "" {
		phase, sustained = 15*time.Second, 4*time.Minute
	}
	useProfiledServer(b)
	dd := startBenchDeltadisk(b)
	httpc := benchHTTPClient(dd.pool)
	empty := filepath.Join(b.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	discardURL, discardPID := startServeContent(b, empty, dd.dir)

	type writer struct {
		dd, discard *pageblob.Client
		page        []byte
		n           uint64
		written     []uint64 // a bit per page of the disk deltadisk holds
	}
	ws := make([]*writer, writers)
	for i := range ws {
		name := fmt.Sprintf("w%d", i)
		dd.uploadDisk(b, name, diskBytes+vhd.FooterSize)
		ws[i] = &writer{
			dd:      benchPageClient(b, dd.grant(b, name, true, armcompute.AccessLevelWrite), httpc),
			discard: benchPageClient(b, fmt.Sprintf("%s/bench/%s", discardURL, name), httpc),
			page:    randomBytes(pageBytes, uint64(i)+1),
			written: make([]uint64, pages/64),
		}
	}
	// live is the bytes of distinct pages written to deltadisk so far.
	var live atomic.Int64

	// writeFor runs every writer against one server for d and returns the
	// bytes they sent.
	writeFor := func(ctx context.Context, d time.Duration, toDD bool) int64 {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var sent atomic.Int64
		var wg sync.WaitGroup
		for i, w := range ws {
			c := w.discard
			if toDD {
				c = w.dd
			}
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
				for ctx.Err() == nil {
					w.n++
					stampBlocks(w.page, uint64(i)<<48|w.n) // every page unique
					p := r.Int64N(pages)
					_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(w.page)),
						blob.HTTPRange{Offset: p * pageBytes, Count: pageBytes}, nil)
					if err != nil {
						if ctx.Err() == nil {
							b.Errorf("writer %d: %v", i, err)
						}
						return
					}
					sent.Add(pageBytes)
					if toDD && w.written[p/64]&(1<<(p%64)) == 0 {
						w.written[p/64] |= 1 << (p % 64)
						live.Add(pageBytes)
					}
				}
			})
		}
		wg.Wait()
		return sent.Load()
	}

	var ddRates, discardRates, ratios []float64
	var ddCPU, discardCPU time.Duration
	var ddSent, discardSent int64
	for i := range b.N {
		var rate [2]float64
		for j := range 2 {
			toDD := (i+j)%2 == 0 // alternate which goes first
			pid := discardPID
			if toDD {
				pid = dd.pid
			}
			c0 := processCPU(b, pid)
			start := time.Now()
			n := writeFor(b.Context(), phase, toDD)
			rate[boolIndex(toDD)] = mbps(n, time.Since(start))
			cpu := processCPU(b, pid) - c0
			if toDD {
				ddCPU += cpu
				ddSent += n
			} else {
				discardCPU += cpu
				discardSent += n
			}
		}
		discardRates = append(discardRates, rate[0])
		ddRates = append(ddRates, rate[1])
		ratios = append(ratios, rate[1]/rate[0])
	}
	b.ReportMetric(median(ddRates), "deltadisk-MB/s")
	b.ReportMetric(median(discardRates), "discard-MB/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(cpuPerGiB(ddCPU, ddSent), "deltadisk-cpu-s/GiB")
	b.ReportMetric(cpuPerGiB(discardCPU, discardSent), "discard-cpu-s/GiB")

	// The sustained phase, with the data directory sampled each second.
	ctx, cancel := context.WithCancel(b.Context())
	var maxRatio, lastRatio float64
	var maxAt time.Duration
	sampled := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l := live.Load()
			if l < 64<<20 {
				continue
			}
			r := float64(allocatedBytes(b, dd.dir)) / float64(l)
			lastRatio = r
			if r > maxRatio {
				maxRatio, maxAt = r, time.Since(start)
			}
		}
	}()
	n := writeFor(b.Context(), sustained, true)
	elapsed := time.Since(start)
	cancel()
	<-sampled
	if l := live.Load(); l >= 64<<20 {
		lastRatio = float64(allocatedBytes(b, dd.dir)) / float64(l)
		maxRatio = max(maxRatio, lastRatio)
	}
	b.Logf("sustained: %.0f MB/s for %v, %d MiB live, on-disk/live max %.2f (at %v), last %.2f",
		mbps(n, elapsed), elapsed.Round(time.Second), live.Load()>>20, maxRatio, maxAt.Round(time.Second), lastRatio)
	b.ReportMetric(mbps(n, elapsed), "sustained-MB/s")
	b.ReportMetric(maxRatio, "ondisk/live-max")
	b.ReportMetric(lastRatio, "ondisk/live-last")
	b.ReportMetric(0, "ns/op")
}

func boolIndex(v bool) int {
	if v {
		return 1
	}
	return 0
}

func cpuPerGiB(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return cpu.Seconds() / (float64(n) / (1 << 30))
}

// allocatedBytes is the space the files under dir take on disk: their
// allocated blocks, not their sizes (sparse or preallocated files differ).
func allocatedBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a pack or segment removed meanwhile
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && d.Type().IsRegular() {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Errorf("measure %s: %v", dir, err)
	}
	return n
}
