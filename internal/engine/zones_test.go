package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// zoneEnv is an engine over three in-memory zones, each behind a fault
// injector whose faults fire only while its zone is marked down.
type zoneEnv struct {
	e     *engine.Engine
	env   *testEnv
	mems  map[string]*chunkstest.Mem
	down  map[string]*atomic.Bool
	zones []string
}

func newZoneEnv(t *testing.T) *zoneEnv {
	t.Helper()
	return newZoneEnvWith(t, func(m meta.Store) meta.Store { return m })
}

// newZoneEnvWith is newZoneEnv with the engine's metadata store wrapped.
func newZoneEnvWith(t *testing.T, wrap func(meta.Store) meta.Store) *zoneEnv {
	t.Helper()
	env := newEnv(t) // for its metadata store and clock
	z := &zoneEnv{env: env, mems: map[string]*chunkstest.Mem{}, down: map[string]*atomic.Bool{}, zones: []string{"r-1", "r-2", "r-3"}}
	var cfgZones []engine.Zone
	for _, name := range z.zones {
		mem := chunkstest.NewMem()
		down := new(atomic.Bool)
		isDown := func(string) bool { return down.Load() }
		faulty := chunkstest.Faulty(mem,
			chunkstest.Fault{Op: chunkstest.OpPut, Match: isDown, Err: syscall.EROFS},
			chunkstest.Fault{Op: chunkstest.OpReadAt, Match: isDown, Err: syscall.EIO})
		cfg := chunks.DefaultConfig()
		cfg.Backend = faulty
		cfg.Now = func() time.Time { return env.now }
		store, err := chunks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		z.mems[name], z.down[name] = mem, down
		cfgZones = append(cfgZones, engine.Zone{Name: name, Store: store})
	}
	ecfg := engine.DefaultConfig()
	ecfg.Meta = wrap(env.meta)
	ecfg.Zones = cfgZones
	ecfg.Now = func() time.Time { return env.now }
	e, err := engine.Open(context.Background(), ecfg)
	if err != nil {
		t.Fatal(err)
	}
	z.e = e
	env.e = e // the helpers that take a testEnv use the zoned engine
	return z
}

// stored returns the bytes a zone's backend holds.
func (z *zoneEnv) stored(t *testing.T, zone string) int64 {
	t.Helper()
	var n int64
	if err := z.mems[zone].List(context.Background(), "", func(_ string, size int64) error {
		n += size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// wipe deletes every object of a zone: the zone's disks were replaced.
func (z *zoneEnv) wipe(t *testing.T, zone string) {
	t.Helper()
	ctx := context.Background()
	var names []string
	z.mems[zone].List(ctx, "", func(name string, _ int64) error {
		names = append(names, name)
		return nil
	})
	for _, n := range names {
		if err := z.mems[zone].Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func scrub(t *testing.T, e *engine.Engine, repair bool) engine.ScrubReport {
	t.Helper()
	rep, err := e.Scrub(context.Background(), engine.ScrubOptions{Repair: repair})
	if err != nil {
		t.Fatalf("Scrub: %v", err)
	}
	return rep
}

// TestZoneRedundantWrites: a volume placed in three zones has every block
// in each of them when the write returns, and a volume placed in one zone
// touches no other.
func TestZoneRedundantWrites(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	zrs := must[engine.ID](t)(z.e.CreateVolume(ctx, 4<<20, z.zones...))
	data := randomData(1, 1<<20)
	if err := z.e.WriteAt(ctx, zrs, data, 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range z.zones {
		if got := z.stored(t, name); got < int64(len(data)) {
			t.Errorf("zone %s holds %d bytes after a 1 MiB write to a volume in all zones", name, got)
		}
	}
	before := z.stored(t, "r-2")
	lrs := must[engine.ID](t)(z.e.CreateVolume(ctx, 4<<20, "r-1"))
	if err := z.e.WriteAt(ctx, lrs, randomData(2, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if got := z.stored(t, "r-2"); got != before {
		t.Errorf("a write to a volume in zone r-1 stored %d bytes in zone r-2", got-before)
	}
	info := must[engine.Info](t)(z.e.Stat(ctx, zrs))
	if !slices.Equal(info.Zones, z.zones) || info.Pending {
		t.Errorf("Stat = zones %v pending %v, want %v and not pending", info.Zones, info.Pending, z.zones)
	}
	if _, err := z.e.CreateVolume(ctx, 1<<20, "elsewhere-1"); !errors.Is(err, engine.ErrNoZone) {
		t.Errorf("CreateVolume in an unknown zone = %v, want ErrNoZone", err)
	}
	checkClean(t, z.e, true)
	if rep := scrub(t, z.e, false); rep.Missing+rep.Corrupt != 0 || rep.Copies == 0 {
		t.Errorf("scrub of a healthy store: %+v", rep)
	}
}

// TestZoneWriteFailure: while one zone of a volume's placement refuses
// writes, writes to the volume fail and change nothing; once it is back
// they succeed.
func TestZoneWriteFailure(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 2<<20, z.zones...))
	old := randomData(3, 2<<20)
	if err := z.e.WriteAt(ctx, vol, old, 0); err != nil {
		t.Fatal(err)
	}
	z.down["r-3"].Store(true)
	err := z.e.WriteAt(ctx, vol, randomData(4, 1<<20), 0)
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write with zone r-3 read-only = %v, want EROFS", err)
	}
	z.down["r-3"].Store(false)
	if got := read(t, z.e, vol, 2<<20); !bytes.Equal(got, old) {
		t.Fatal("a failed write changed the volume")
	}
	if err := z.e.WriteAt(ctx, vol, randomData(4, 1<<20), 0); err != nil {
		t.Fatalf("write after the zone came back: %v", err)
	}
	checkClean(t, z.e, true)
}

// TestZoneLossAndScrub: with one zone failing every read, every image still
// reads whole from the others and the failures are counted; once the zone
// comes back empty, scrub finds its copies missing and repair rewrites
// them, so that losing the two other zones then loses nothing.
func TestZoneLossAndScrub(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 4<<20, z.zones...))
	data := randomData(5, 4<<20)
	if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(z.e.Snapshot(ctx, vol))

	z.down["r-1"].Store(true)
	for _, id := range []engine.ID{vol, snap} {
		if got := read(t, z.e, id, 4<<20); !bytes.Equal(got, data) {
			t.Fatalf("image %d reads differently with zone r-1 down", id)
		}
		if got := exportRaw(t, z.e, id); !bytes.Equal(got, data) {
			t.Fatalf("image %d exports differently with zone r-1 down", id)
		}
	}
	// The first failure makes r-1 the zone tried last, so 128 chunk reads
	// cost one failed read, not 128.
	if f := z.e.ZoneFaults(); f["r-1"] != 1 || f["r-2"] != 0 {
		t.Errorf("ZoneFaults = %v, want one failure, counted against r-1", f)
	}

	// While it is down, scrub reports its copies missing and a repair
	// cannot write them back, but neither stops at the failing zone.
	rep := scrub(t, z.e, true)
	if rep.Zones[0].Missing != rep.Zones[0].Copies || rep.Zones[0].Copies == 0 || rep.Repaired != 0 ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "zone r-1: repair failed") {
		t.Fatalf("scrub --repair with r-1 down: %+v", rep)
	}
	z.env.now = z.env.now.Add(time.Hour)
	if _, err := z.e.GC(ctx, engine.DefaultGCOptions()); err != nil {
		t.Fatalf("GC with r-1 down (reads fail, listing works): %v", err)
	}

	// The zone comes back with its storage replaced.
	z.wipe(t, "r-1")
	z.down["r-1"].Store(false)
	rep = scrub(t, z.e, false)
	if rep.Missing == 0 || rep.Missing != rep.Zones[0].Missing || rep.Repaired != 0 {
		t.Fatalf("scrub after losing r-1: %+v, want its copies missing and nothing repaired", rep)
	}
	rep = scrub(t, z.e, true)
	if rep.Repaired != rep.Missing || rep.Unrecoverable != 0 {
		t.Fatalf("scrub --repair: %+v, want every missing copy repaired", rep)
	}
	if rep := scrub(t, z.e, false); rep.Missing+rep.Corrupt != 0 {
		t.Fatalf("scrub after repair: %+v, want clean", rep)
	}
	z.down["r-2"].Store(true)
	z.down["r-3"].Store(true)
	if got := read(t, z.e, snap, 4<<20); !bytes.Equal(got, data) {
		t.Fatal("the repaired zone alone does not hold the snapshot")
	}
	z.down["r-2"].Store(false)
	z.down["r-3"].Store(false)
	checkClean(t, z.e, true)
}

// TestScrubRepairsCorruption: a damaged copy is found by scrub and rewritten
// from a good one; a chunk whose every copy is damaged is reported as
// unrecoverable rather than papered over.
func TestScrubRepairsCorruption(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1", "r-2"))
	data := randomData(6, 1<<20)
	if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	flip := func(zone string) {
		mem := z.mems[zone]
		var name string
		mem.List(ctx, "", func(n string, _ int64) error { name = n; return nil })
		size := z.stored(t, zone)
		p := make([]byte, size)
		if err := mem.ReadAt(ctx, name, p, 0); err != nil {
			t.Fatal(err)
		}
		p[size/2] ^= 0xff // inside some chunk's record
		if err := mem.Put(ctx, name, p); err != nil {
			t.Fatal(err)
		}
	}
	flip("r-2")
	rep := scrub(t, z.e, true)
	if rep.Corrupt != 1 || rep.Repaired != 1 || rep.Zones[1].Corrupt != 1 {
		t.Fatalf("scrub of one damaged copy: %+v, want it found in r-2 and repaired", rep)
	}
	if rep := scrub(t, z.e, false); rep.Corrupt+rep.Missing != 0 {
		t.Fatalf("scrub after repair: %+v", rep)
	}
	if got := read(t, z.e, vol, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("volume reads differently after repair")
	}

	lrs := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-3"))
	if err := z.e.WriteAt(ctx, lrs, randomData(7, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	flip("r-3")
	if rep := scrub(t, z.e, true); rep.Corrupt != 1 || rep.Unrecoverable != 1 || rep.Repaired != 0 {
		t.Fatalf("scrub of a damaged single copy: %+v, want it corrupt and unrecoverable", rep)
	}
}

// TestPendingReplication: a snapshot in three zones of a volume in one is
// created at once and pending; Replicate fills the other zones, and for a
// later snapshot copies only the blocks changed since the last.
func TestPendingReplication(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 8<<20, "r-1"))
	data := randomData(8, 8<<20)
	if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	s1 := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	if info := must[engine.Info](t)(z.e.Stat(ctx, s1)); !info.Pending || !slices.Equal(info.Zones, z.zones) {
		t.Fatalf("ZRS snapshot of an LRS volume: %+v, want pending in every zone", info)
	}
	if z.stored(t, "r-2") != 0 {
		t.Fatal("taking the snapshot copied data; it must be O(1)")
	}
	select {
	case <-z.e.ReplicationNeeded():
	default:
		t.Error("no replication signal after a pending snapshot")
	}
	if n, err := z.e.PendingImages(ctx); n != 1 || err != nil {
		t.Errorf("PendingImages = %d, %v; want 1", n, err)
	}
	before := z.e.ReplicatedBytes()
	if n, err := z.e.Replicate(ctx); err != nil || n != 1 {
		t.Fatalf("Replicate = %d, %v; want 1 image done", n, err)
	}
	if n, err := z.e.PendingImages(ctx); n != 0 || err != nil {
		t.Errorf("PendingImages after Replicate = %d, %v; want 0", n, err)
	}
	if got, want := z.e.ReplicatedBytes()-before, int64(2*len(data)); got != want {
		t.Errorf("first replication copied %d bytes, want %d (8 MiB into two zones)", got, want)
	}
	if info := must[engine.Info](t)(z.e.Stat(ctx, s1)); info.Pending {
		t.Fatal("still pending after Replicate")
	}

	// Change 3 blocks; the next snapshot moves only those.
	for _, b := range []int64{1, 40, 77} {
		if err := z.e.WriteAt(ctx, vol, randomData(uint64(100+b), engine.BlockSize), b*engine.BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	s2 := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	before = z.e.ReplicatedBytes()
	if n, err := z.e.Replicate(ctx); err != nil || n != 1 {
		t.Fatalf("Replicate = %d, %v", n, err)
	}
	if got, want := z.e.ReplicatedBytes()-before, int64(2*3*engine.BlockSize); got != want {
		t.Errorf("second replication copied %d bytes, want %d (3 changed blocks into two zones)", got, want)
	}
	want := read(t, z.e, s2, 8<<20)
	z.down["r-1"].Store(true)
	if got := read(t, z.e, s2, 8<<20); !bytes.Equal(got, want) {
		t.Fatal("the replicated snapshot does not read whole without the volume's zone")
	}
	if got := read(t, z.e, s1, 8<<20); !bytes.Equal(got, data) {
		t.Fatal("the first snapshot does not read whole without the volume's zone")
	}
	z.down["r-1"].Store(false)

	// A zone-redundant volume cloned from a one-zone snapshot is pending
	// too, and so is a snapshot taken of it before replication ran.
	s3 := must[engine.ID](t)(z.e.Snapshot(ctx, vol))
	clone := must[engine.ID](t)(z.e.Clone(ctx, s3, 8<<20, z.zones...))
	cs := must[engine.ID](t)(z.e.Snapshot(ctx, clone))
	for _, id := range []engine.ID{s3, clone, cs} {
		info := must[engine.Info](t)(z.e.Stat(ctx, id))
		if info.Pending != (id != s3) {
			t.Errorf("image %d: pending %v", id, info.Pending)
		}
	}
	if n, err := z.e.Replicate(ctx); err != nil || n != 2 {
		t.Fatalf("Replicate = %d, %v; want the clone and its snapshot", n, err)
	}
	z.down["r-1"].Store(true)
	if got := read(t, z.e, cs, 8<<20); !bytes.Equal(got, want) {
		t.Fatal("the clone's snapshot does not read whole without zone r-1")
	}
	z.down["r-1"].Store(false)
	checkClean(t, z.e, true)
}

// TestReplicationRetriesAfterZoneFailure: replication into a failing zone
// leaves the snapshot pending, and the next run finishes it.
func TestReplicationRetriesAfterZoneFailure(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1"))
	if err := z.e.WriteAt(ctx, vol, randomData(9, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	z.down["r-3"].Store(true)
	if n, err := z.e.Replicate(ctx); n != 0 || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Replicate with r-3 read-only = %d, %v", n, err)
	}
	if got := z.e.ReplicatedBytes(); got != 0 {
		t.Errorf("a failed replication counted %d bytes replicated", got)
	}
	if !must[engine.Info](t)(z.e.Stat(ctx, snap)).Pending {
		t.Fatal("snapshot not pending after a failed replication")
	}
	z.down["r-3"].Store(false)
	if n, err := z.e.Replicate(ctx); n != 1 || err != nil {
		t.Fatalf("Replicate after the zone came back = %d, %v", n, err)
	}
	checkClean(t, z.e, true)
}

// TestZoneNumbersSurviveReordering: zones keep their numbers when the
// configuration lists them in another order, so chunk locations keep
// pointing at the right store.
func TestZoneNumbersSurviveReordering(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-2"))
	data := randomData(10, 1<<20)
	if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	var zones []engine.Zone
	for _, name := range []string{"r-3", "r-2"} {
		cfg := chunks.DefaultConfig()
		cfg.Backend = z.mems[name]
		store, err := chunks.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, engine.Zone{Name: name, Store: store})
	}
	ecfg := engine.DefaultConfig()
	ecfg.Meta, ecfg.Zones = z.env.meta, zones
	e2, err := engine.Open(ctx, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, e2, vol, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("reads differ after reordering the zones")
	}
	if got := must[engine.Info](t)(e2.Stat(ctx, vol)).Zones; !slices.Equal(got, []string{"r-2"}) {
		t.Fatalf("zones after reordering = %v", got)
	}
}

// TestScrubFindsUnplacedChunks: an image that claims to be fully placed
// (its pending mark lost) while some zones lack its chunks is found by
// scrub, and repair makes the missing copies.
func TestScrubFindsUnplacedChunks(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1"))
	data := randomData(11, 1<<20)
	if err := z.e.WriteAt(ctx, vol, data, 0); err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	// Lose the pending mark (key 'P' + id), as a bug might.
	if err := z.env.meta.Update(ctx, func(tx meta.Tx) error {
		return tx.Delete(binary.BigEndian.AppendUint64([]byte{'P'}, uint64(snap)))
	}); err != nil {
		t.Fatal(err)
	}
	rep := scrub(t, z.e, false)
	if rep.Unplaced != 2*16 || rep.Zones[1].Unplaced != 16 || rep.Missing+rep.Corrupt != 0 {
		t.Fatalf("scrub: %+v, want 16 chunks unplaced in r-2 and r-3", rep)
	}
	rep = scrub(t, z.e, true)
	if rep.Repaired != 2*16 {
		t.Fatalf("scrub --repair: %+v, want 32 copies made", rep)
	}
	if rep := scrub(t, z.e, false); rep.Unplaced != 0 {
		t.Fatalf("scrub after repair: %+v", rep)
	}
	z.readsWithout(t, "r-1", snap, data)
}

// TestCompactionReadsAroundDamage: compacting a zone whose pack holds a
// damaged copy reads that chunk from another zone, so compaction goes on
// and its rewrite repairs the copy.
func TestCompactionReadsAroundDamage(t *testing.T) {
	ctx := t.Context()
	z := newZoneEnv(t)
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1", "r-2"))
	data := randomData(12, 1<<20)
	for off := int64(0); off < 1<<20; off += 512 << 10 { // two writes: two small packs per zone
		if err := z.e.WriteAt(ctx, vol, data[off:off+512<<10], off); err != nil {
			t.Fatal(err)
		}
	}
	mem := z.mems["r-2"]
	var name string
	mem.List(ctx, "", func(n string, _ int64) error { name = n; return nil })
	var size int64
	mem.List(ctx, name, func(_ string, n int64) error { size = n; return nil })
	p := make([]byte, size)
	if err := mem.ReadAt(ctx, name, p, 0); err != nil {
		t.Fatal(err)
	}
	p[size/2] ^= 0xff
	if err := mem.Put(ctx, name, p); err != nil {
		t.Fatal(err)
	}
	z.env.now = z.env.now.Add(time.Hour)
	st, err := z.e.GC(ctx, engine.DefaultGCOptions())
	if err != nil || st.PacksCompacted < 4 {
		t.Fatalf("GC = %+v, %v; want both zones' small packs merged", st, err)
	}
	if rep := scrub(t, z.e, false); rep.Missing+rep.Corrupt+rep.Unplaced != 0 {
		t.Fatalf("scrub after compaction: %+v, want the damaged copy rewritten", rep)
	}
	z.readsWithout(t, "r-1", vol, data)
}
