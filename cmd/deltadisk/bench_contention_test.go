package main_test

// BenchmarkWritesUnderChurn measures how much the control plane slows the
// data plane: 8 writers Put Page 64 KiB at random offsets into their own
// disks (one write grant each, as an upload does), first with the control
// plane idle, then while 2 clients create and delete other disks at about
// 20 operations a second in all, then as fast as they can. It reports Put
// Pages a second in each phase and each busy phase's ratio to the idle one
// measured in the same round, so that a noisy machine moves both sides.
//
// By default each phase lasts 1 s, so that CI's -benchtime=1x run stays
// quick; DELTADISK_BENCH_FULL=1 makes each 10 s, the figure. Run
// rounds with -benchtime=3x and the reported ratios are the medians.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

func BenchmarkWritesUnderChurn(b *testing.B) {
	const (
		writers   = 8
		churners  = 2
		pageBytes = 64 << 10
		diskBytes = 1 << 30
	)
	phase := time.Second
	if os.Getenv(benchFullEnv) != "" {
		phase = 10 * time.Second
	}
	dd := startBenchDeltadisk(b)
	httpc := benchHTTPClient(dd.pool)
	clients := make([]*pageblob.Client, writers)
	for i := range clients {
		name := fmt.Sprintf("w%d", i)
		dd.uploadDisk(b, name, diskBytes+vhd.FooterSize)
		clients[i] = benchPageClient(b, dd.grant(b, name, true, armcompute.AccessLevelWrite), httpc)
	}
	page := randomBytes(pageBytes, 1)

	// writeFor runs the writers for d and returns Put Pages a second.
	writeFor := func(ctx context.Context, d time.Duration) float64 {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var n atomic.Int64
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
				for ctx.Err() == nil {
					off := r.Int64N(diskBytes/pageBytes) * pageBytes
					_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page)), blob.HTTPRange{Offset: off, Count: pageBytes}, nil)
					if err != nil {
						if ctx.Err() == nil {
							b.Errorf("writer %d: %v", i, err)
						}
						return
					}
					n.Add(1)
				}
			})
		}
		start := time.Now()
		wg.Wait()
		return float64(n.Load()) / time.Since(start).Seconds()
	}

	// churn creates and deletes disks on churners goroutines until ctx
	// ends, each operation at most every interval (0: flat out), and
	// reports operations a second.
	var seq atomic.Int64
	churn := func(ctx context.Context, interval time.Duration, ops *atomic.Int64) {
		var wg sync.WaitGroup
		for range churners {
			wg.Go(func() {
				tick := time.NewTicker(max(interval, time.Nanosecond))
				defer tick.Stop()
				for ctx.Err() == nil {
					name := fmt.Sprintf("churn%d", seq.Add(1))
					if !dd.churnOnce(ctx, b, name, func() bool {
						if interval == 0 {
							return ctx.Err() == nil
						}
						select {
						case <-ctx.Done():
							return false
						case <-tick.C:
							return true
						}
					}, ops) {
						return
					}
				}
			})
		}
		wg.Wait()
	}

	var idle, slow, fast, slowOps, fastOps []float64
	for range b.N {
		ctx := b.Context()
		idle = append(idle, writeFor(ctx, phase))
		for _, busy := range []struct {
			interval   time.Duration
			rates, ops *[]float64
		}{
			{churners * time.Second / 20, &slow, &slowOps}, // 20 a second in all
			{0, &fast, &fastOps},
		} {
			cctx, cancel := context.WithCancel(ctx)
			var ops atomic.Int64
			done := make(chan struct{})
			go func() { churn(cctx, busy.interval, &ops); close(done) }()
			start := time.Now()
			*busy.rates = append(*busy.rates, writeFor(ctx, phase))
			*busy.ops = append(*busy.ops, float64(ops.Load())/time.Since(start).Seconds())
			cancel()
			<-done
		}
	}
	ratios := func(busy []float64) []float64 {
		out := make([]float64, len(busy))
		for i := range busy {
			out[i] = busy[i] / idle[i]
		}
		return out
	}
	b.ReportMetric(median(idle), "idle-putpage/s")
	b.ReportMetric(median(slow), "churn20-putpage/s")
	b.ReportMetric(median(fast), "churnmax-putpage/s")
	b.ReportMetric(median(ratios(slow)), "churn20-ratio")
	b.ReportMetric(median(ratios(fast)), "churnmax-ratio")
	b.ReportMetric(median(slowOps), "churn20-ops/s")
	b.ReportMetric(median(fastOps), "churnmax-ops/s")
	b.ReportMetric(0, "ns/op")
}

// churnOnce creates an Empty disk and deletes it, each operation after
// wait allows, counting both in ops. It returns false when the benchmark
// phase ended.
func (dd *benchDeltadisk) churnOnce(ctx context.Context, b *testing.B, name string, wait func() bool, ops *atomic.Int64) bool {
	if !wait() {
		return false
	}
	p, err := dd.disks.BeginCreateOrUpdate(ctx, dd.rgName, name, armcompute.Disk{Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](1), CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}}}, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, nil)
	}
	if err != nil {
		if ctx.Err() == nil {
			b.Errorf("create %s: %v", name, err)
		}
		return false
	}
	ops.Add(1)
	// The delete is paced like the create, and runs even when the phase
	// just ended, so that no disk is left to grow the next phase's lists.
	wait()
	dp, err := dd.disks.BeginDelete(context.WithoutCancel(ctx), dd.rgName, name, nil)
	if err == nil {
		_, err = dp.PollUntilDone(context.WithoutCancel(ctx), nil)
	}
	if err != nil {
		b.Errorf("delete %s: %v", name, err)
		return false
	}
	ops.Add(1)
	return ctx.Err() == nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
