package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"pgregory.net/rapid"

	"github.com/deltadisk/deltadisk/internal/engine"
)

// modelImage is the reference for one image: its full bytes.
type modelImage struct {
	kind    engine.Kind
	data    []byte
	lineage int // the model's lineage number: diffs work within one
	seq     int // order within the lineage: a snapshot's, or the head's
}

// model runs random histories against the engine and against plain byte
// slices, checking after every step that they agree.
type model struct {
	t        *rapid.T
	env      *testEnv
	zones    *zoneEnv
	images   map[engine.ID]*modelImage
	lineages int
	seqs     map[int]int
}

func (m *model) ctx() context.Context { return context.Background() }

// placement draws where a new image goes: the default (the first zone, or
// the source's placement), one zone, or all three.
func (m *model) placement() []string {
	return rapid.SampledFrom([][]string{nil, {"r-2"}, {"r-1", "r-2", "r-3"}}).Draw(m.t, "zones")
}

func (m *model) ids(kind engine.Kind) []engine.ID {
	var out []engine.ID
	for id, img := range m.images {
		if kind == 0 || img.kind == kind {
			out = append(out, id)
		}
	}
	// Map order is random; sort for reproducible draws.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (m *model) pick(kind engine.Kind, label string) (engine.ID, bool) {
	ids := m.ids(kind)
	if len(ids) == 0 {
		return 0, false
	}
	return rapid.SampledFrom(ids).Draw(m.t, label), true
}

// content draws block-aligned or sector-aligned data mixing random bytes,
// zeros and repeated patterns (so that dedupe and zero blocks both occur).
func content(t *rapid.T, n int) []byte {
	p := make([]byte, n)
	switch rapid.IntRange(0, 3).Draw(t, "content") {
	case 0: // zeros
	case 1:
		b := byte(rapid.IntRange(1, 3).Draw(t, "pattern"))
		for i := range p {
			p[i] = b
		}
	default:
		r := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1))
		for i := range p {
			p[i] = byte(r.Uint32())
		}
	}
	return p
}

func (m *model) createVolume() {
	size := int64(rapid.IntRange(1, 3).Draw(m.t, "size MiB")) << 20
	id, err := m.env.e.CreateVolume(m.ctx(), size, m.placement()...)
	if err != nil {
		m.t.Fatalf("CreateVolume: %v", err)
	}
	m.lineages++
	m.images[id] = &modelImage{kind: engine.KindVolume, data: make([]byte, size), lineage: m.lineages}
}

func (m *model) write(zero bool) {
	id, ok := m.pick(engine.KindVolume, "volume")
	if !ok {
		return
	}
	img := m.images[id]
	off, n := m.span(len(img.data))
	var err error
	if zero {
		err = m.env.e.Zero(m.ctx(), id, int64(off), int64(n))
		clear(img.data[off : off+n])
	} else {
		p := content(m.t, n)
		err = m.env.e.WriteAt(m.ctx(), id, p, int64(off))
		copy(img.data[off:], p)
	}
	if err != nil {
		m.t.Fatalf("write/zero %d at %d+%d: %v", id, off, n, err)
	}
}

// span draws the range of a write into an image of size bytes: whole
// blocks, or sectors that may start and end inside blocks.
func (m *model) span(size int) (off, n int) {
	if rapid.Bool().Draw(m.t, "block aligned") {
		blocks := size / engine.BlockSize
		b := rapid.IntRange(0, blocks-1).Draw(m.t, "block")
		return b * engine.BlockSize, rapid.IntRange(1, min(blocks-b, 20)).Draw(m.t, "blocks") * engine.BlockSize
	}
	sectors := size / engine.SectorSize
	s := rapid.IntRange(0, sectors-1).Draw(m.t, "sector")
	return s * engine.SectorSize, rapid.IntRange(1, min(sectors-s, 300)).Draw(m.t, "sectors") * engine.SectorSize
}

func (m *model) snapshot() {
	id, ok := m.pick(engine.KindVolume, "volume")
	if !ok {
		return
	}
	sid, err := m.env.e.Snapshot(m.ctx(), id, m.placement()...)
	if err != nil {
		m.t.Fatalf("Snapshot(%d): %v", id, err)
	}
	m.snapshotted(id, sid)
}

// snapshotted records that snapshot sid was taken of volume vol. It, like
// cloned and frozen, copies the data it keeps, so that no two images share
// a slice that a write changes in place.
func (m *model) snapshotted(vol, sid engine.ID) {
	img := m.images[vol]
	m.seqs[img.lineage]++
	m.images[sid] = &modelImage{kind: engine.KindSnapshot, data: bytes.Clone(img.data), lineage: img.lineage, seq: m.seqs[img.lineage]}
	img.seq = m.seqs[img.lineage] + 1 // the head is newer than every snapshot
}

func (m *model) clone() {
	src, ok := m.pick(0, "source")
	if !ok {
		return
	}
	s := m.images[src]
	size := int64(len(s.data)) + int64(rapid.IntRange(0, 1).Draw(m.t, "extra MiB"))<<20
	id, err := m.env.e.Clone(m.ctx(), src, size, m.placement()...)
	if err != nil {
		m.t.Fatalf("Clone(%d): %v", src, err)
	}
	m.cloned(src, id, size)
}

// cloned records that volume id of size bytes was cloned from src.
func (m *model) cloned(src, id engine.ID, size int64) {
	s := m.images[src]
	if s.kind == engine.KindVolume {
		// Cloning a volume seals its head: later snapshots are newer.
		m.seqs[s.lineage]++
		s.seq = m.seqs[s.lineage] + 1
	}
	data := make([]byte, size)
	copy(data, s.data)
	m.lineages++
	m.images[id] = &modelImage{kind: engine.KindVolume, data: data, lineage: m.lineages}
}

func (m *model) freeze() {
	src, ok := m.pick(0, "source")
	if !ok {
		return
	}
	id, err := m.env.e.Freeze(m.ctx(), src, m.placement()...)
	if err != nil {
		m.t.Fatalf("Freeze(%d): %v", src, err)
	}
	m.frozen(src, id)
}

// frozen records that snapshot id was frozen from src.
func (m *model) frozen(src, id engine.ID) {
	s := m.images[src]
	if s.kind == engine.KindVolume {
		m.seqs[s.lineage]++
		s.seq = m.seqs[s.lineage] + 1
	}
	m.lineages++
	m.images[id] = &modelImage{kind: engine.KindSnapshot, data: bytes.Clone(s.data), lineage: m.lineages}
}

func (m *model) delete() {
	id, ok := m.pick(0, "image")
	if !ok {
		return
	}
	if err := m.env.e.Delete(m.ctx(), id); err != nil {
		m.t.Fatalf("Delete(%d): %v", id, err)
	}
	delete(m.images, id)
	if _, err := m.env.e.Stat(m.ctx(), id); !errors.Is(err, engine.ErrNotFound) {
		m.t.Fatalf("Stat(deleted %d) = %v, want ErrNotFound", id, err)
	}
}

func (m *model) grow() {
	id, ok := m.pick(engine.KindVolume, "volume")
	if !ok {
		return
	}
	img := m.images[id]
	size := len(img.data) + rapid.IntRange(0, 2).Draw(m.t, "grow MiB")<<20
	if err := m.env.e.Grow(m.ctx(), id, int64(size)); err != nil {
		m.t.Fatalf("Grow(%d, %d): %v", id, size, err)
	}
	img.data = append(img.data, make([]byte, size-len(img.data))...)
}

func (m *model) flatten() {
	id, ok := m.pick(engine.KindVolume, "volume")
	if !ok {
		return
	}
	if err := m.env.e.Flatten(m.ctx(), id); err != nil {
		m.t.Fatalf("Flatten(%d): %v", id, err)
	}
	if info, err := m.env.e.Stat(m.ctx(), id); err != nil || info.Base != 0 {
		m.t.Fatalf("Stat(flattened %d) = %+v, %v; want no base", id, info, err)
	}
}

func (m *model) gc() {
	opts := engine.DefaultGCOptions()
	m.env.now = m.env.now.Add(2 * opts.Grace)
	if _, err := m.env.e.GC(m.ctx(), opts); err != nil {
		m.t.Fatalf("GC: %v", err)
	}
}

func (m *model) replicate() {
	if _, err := m.env.e.Replicate(m.ctx()); err != nil {
		m.t.Fatalf("Replicate: %v", err)
	}
}

// placed checks, once nothing is pending, that each zone of every image's
// placement alone holds all of the image: the other zones are made to
// fail every read.
func (m *model) placed() {
	m.replicate()
	for _, id := range m.ids(0) {
		info, err := m.env.e.Stat(m.ctx(), id)
		if err != nil || info.Pending {
			m.t.Fatalf("Stat(%d) after Replicate = %+v, %v; want not pending", id, info, err)
		}
		for _, only := range info.Zones {
			for _, z := range m.zones.zones {
				m.zones.down[z].Store(z != only)
			}
			m.verify(id)
		}
	}
	for _, z := range m.zones.zones {
		m.zones.down[z].Store(false)
	}
}

// diff checks Diff between two images of one lineage against the model.
func (m *model) diff() {
	a, ok := m.pick(0, "from")
	if !ok {
		return
	}
	b, _ := m.pick(0, "to")
	ma, mb := m.images[a], m.images[b]
	got, err := m.env.e.Diff(m.ctx(), a, b)
	switch {
	case ma.lineage != mb.lineage:
		if !errors.Is(err, engine.ErrNotSameLineage) {
			m.t.Fatalf("Diff(%d, %d) across lineages = %v, want ErrNotSameLineage", a, b, err)
		}
		return
	case ma.seq > mb.seq:
		if !errors.Is(err, engine.ErrOrder) {
			m.t.Fatalf("Diff(%d, %d) newer to older = %v, want ErrOrder", a, b, err)
		}
		return
	case err != nil:
		m.t.Fatalf("Diff(%d, %d): %v", a, b, err)
	}
	want := modelDiff(ma.data, mb.data)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		m.t.Fatalf("Diff(%d, %d) = %v, want %v", a, b, got, want)
	}
}

func modelDiff(a, b []byte) []engine.Extent {
	var out []engine.Extent
	for off := 0; off < len(b); off += engine.BlockSize {
		var pa []byte
		if off < len(a) {
			pa = a[off : off+engine.BlockSize]
		} else {
			pa = make([]byte, engine.BlockSize)
		}
		pb := b[off : off+engine.BlockSize]
		if bytes.Equal(pa, pb) {
			continue
		}
		cleared := bytes.Equal(pb, make([]byte, engine.BlockSize))
		if n := len(out); n > 0 && out[n-1].Cleared == cleared && out[n-1].Offset+out[n-1].Length == int64(off) {
			out[n-1].Length += engine.BlockSize
			continue
		}
		out = append(out, engine.Extent{Offset: int64(off), Length: engine.BlockSize, Cleared: cleared})
	}
	return out
}

func (m *model) verify(id engine.ID) {
	img := m.images[id]
	got := read(m.t, m.env.e, id, int64(len(img.data)))
	if !bytes.Equal(got, img.data) {
		m.t.Fatalf("image %d (%v) reads differently from the model (first difference at %d)", id, img.kind, firstDiff(got, img.data))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestModel is the reference-model property test: random histories of
// write, zero, snapshot, freeze, delete, clone, flatten, grow, GC,
// replication and diff over three zones with random placements, after each
// of which every image must read as the model says; at the end each zone
// of every image's placement must hold all of it. Reproduce a failure with
// the seed rapid prints (-rapid.seed=N).
func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		z := newZoneEnv(t)
		m := &model{t: rt, env: z.env, zones: z, images: make(map[engine.ID]*modelImage), seqs: make(map[int]int)}
		m.createVolume()
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 13).Draw(rt, "op") {
			case 0:
				m.createVolume()
			case 1, 2, 3:
				m.write(false)
			case 4:
				m.write(true)
			case 5, 6:
				m.snapshot()
			case 7:
				m.delete()
			case 8:
				m.clone()
			case 9:
				m.flatten()
			case 10:
				m.grow()
			case 11:
				m.gc()
			case 12:
				m.freeze()
			case 13:
				m.replicate()
			}
			m.diff()
			if id, ok := m.pick(0, "verify"); ok {
				m.verify(id)
			}
		}
		m.finish()
	})
}

// finish ends a history: every image reads and exports as the model says,
// the engine's check is clean, each zone of every placement holds all of
// its images, and deleting everything leaves nothing behind once
// collected.
func (m *model) finish() {
	for _, id := range m.ids(0) {
		m.verify(id)
		img := m.images[id]
		if got := exportRaw(m.t, m.env.e, id); !bytes.Equal(got, img.data) {
			m.t.Fatalf("Export(%d) differs from the model at %d", id, firstDiff(got, img.data))
		}
	}
	checkClean(m.t, m.env.e, true)
	m.placed()
	for _, id := range m.ids(0) {
		if err := m.env.e.Delete(m.ctx(), id); err != nil {
			m.t.Fatalf("Delete(%d): %v", id, err)
		}
	}
	m.gc()
	rep, err := m.env.e.Check(m.ctx(), engine.CheckOptions{})
	if err != nil || rep.Err() != nil {
		m.t.Fatalf("Check after deleting all: %v %v", err, rep.Err())
	}
	if rep.MapEntries != 0 || rep.Chunks != 0 || rep.Lineages != 0 || rep.Packs != 0 {
		m.t.Fatalf("after deleting every image and GC: %+v, want an empty store", rep)
	}
}
