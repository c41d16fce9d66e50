package engine_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/engine"
)

// openZoned opens an engine over three zones, each a local pack directory.
func openZoned(b *testing.B) (*engine.Engine, []string) {
	b.Helper()
	dir := b.TempDir()
	names := []string{"r-1", "r-2", "r-3"}
	var zones []engine.Zone
	for _, n := range names {
		cfg := chunks.DefaultConfig()
		cfg.Backend = openLocal(b, filepath.Join(dir, n))
		cfg.Compress = true
		store, err := chunks.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		zones = append(zones, engine.Zone{Name: n, Store: store})
	}
	db := openBolt(b, dir)
	b.Cleanup(func() { db.Close() })
	ecfg := engine.DefaultConfig()
	ecfg.Meta, ecfg.Zones = db, zones
	e, err := engine.Open(context.Background(), ecfg)
	if err != nil {
		b.Fatal(err)
	}
	return e, names
}

// BenchmarkZoneRedundantWrite: durable 4 MiB writes to a volume in one zone
// and to one in three zones (each zone a directory here, all on the one
// disk of this machine, so the three writes compete for it; on separate
// disks they would run side by side). ratio is the three-zone write's
// median time over the one-zone write's.
func BenchmarkZoneRedundantWrite(b *testing.B) {
	ctx := context.Background()
	e, zones := openZoned(b)
	const disk, write = GiB, 4 * MiB
	lrs := must[engine.ID](b)(e.CreateVolume(ctx, disk, zones[0]))
	zrs := must[engine.ID](b)(e.CreateVolume(ctx, disk, zones...))
	r := newRand(11)
	op := func(vol engine.ID) func() {
		return func() {
			p := randBytes(r, write)
			off := int64(r.Uint64()%uint64(disk/write)) * write
			if err := e.WriteAt(ctx, vol, p, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	t := alternate(b, op(lrs), op(zrs))
	mbps := func(d time.Duration) float64 { return float64(write) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(t[0]), "lrs-MB/s")
	b.ReportMetric(mbps(t[1]), "zrs-MB/s")
	b.ReportMetric(float64(t[1])/float64(t[0]), "ratio")
}

// BenchmarkReplication: a zone-redundant snapshot of a one-zone volume
// copies into the two other zones only the blocks changed since the last
// replicated snapshot. copied/changed is the bytes replication copied
// over twice the bytes changed (two zones to fill): 1.00 is the floor.
func BenchmarkReplication(b *testing.B) {
	ctx := context.Background()
	for _, changed := range []float64{0.01, 0.10} {
		b.Run(fmt.Sprintf("changed=%.0f%%", changed*100), func(b *testing.B) {
			e, zones := openZoned(b)
			disk := scale(64*MiB, GiB)
			vol := must[engine.ID](b)(e.CreateVolume(ctx, disk, zones[0]))
			writeSpread(b, e, vol, disk, disk/2, 1) // half the disk holds data
			must[engine.ID](b)(e.Snapshot(ctx, vol, zones...))
			if _, err := e.Replicate(ctx); err != nil {
				b.Fatal(err)
			}
			blocks := int64(float64(disk/engine.BlockSize) * changed)
			var copied, want int64
			seed := uint64(2)
			for b.Loop() {
				seed++
				writeRandomBlocks(b, e, vol, disk, blocks, seed)
				must[engine.ID](b)(e.Snapshot(ctx, vol, zones...))
				before := e.ReplicatedBytes()
				if _, err := e.Replicate(ctx); err != nil {
					b.Fatal(err)
				}
				copied += e.ReplicatedBytes() - before
				want += 2 * blocks * engine.BlockSize
			}
			b.ReportMetric(float64(copied)/float64(want), "copied/changed")
		})
	}
}

// writeRandomBlocks writes n distinct random whole blocks.
func writeRandomBlocks(tb testing.TB, e *engine.Engine, vol engine.ID, size, n int64, seed uint64) {
	tb.Helper()
	r := newRand(seed)
	for _, blk := range distinct(rand.New(newRand(seed+1<<32)), size/engine.BlockSize, n) {
		if err := e.WriteAt(context.Background(), vol, randBytes(r, engine.BlockSize), blk*engine.BlockSize); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkCopyVerification: verifying a copy by Fingerprint against the
// way it was done before, SHA-256 over the whole exported image, on a
// sparse volume with 1 % of it holding data. ratio is the export hash's
// median time over the fingerprint's.
func BenchmarkCopyVerification(b *testing.B) {
	ctx := context.Background()
	e, _ := openZoned(b)
	disk := scale(1*GiB, 16*GiB)
	vol := must[engine.ID](b)(e.CreateVolume(ctx, disk))
	writeSpread(b, e, vol, disk, disk/100/extentSize*extentSize, 1)
	snap := must[engine.ID](b)(e.Snapshot(ctx, vol))
	t := alternate(b,
		func() {
			if _, err := e.Fingerprint(ctx, snap, disk); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			h := sha256.New()
			if _, err := e.Export(ctx, snap, h, engine.ExportOptions{Length: disk}); err != nil {
				b.Fatal(err)
			}
		})
	ms(b, t[0], "fingerprint")
	ms(b, t[1], "export-sha256")
	b.ReportMetric(float64(t[1])/float64(t[0]), "ratio")
}
