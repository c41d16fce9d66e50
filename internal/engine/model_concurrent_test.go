package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// opKind is what one operation of a concurrent batch does.
type opKind int

const (
	opWrite opKind = iota
	opZero
	opSnapshot
	opClone
	opFreeze
	opDelete // of a snapshot
	opReplicate
)

func (k opKind) String() string {
	return [...]string{"write", "zero", "snapshot", "clone", "freeze", "delete", "replicate"}[k]
}

// batchOp is one operation of a concurrent batch: what was drawn, then what
// came of it.
type batchOp struct {
	kind opKind
	id   engine.ID // the volume written, the source, the snapshot deleted
	off  int
	n    int
	p    []byte // the data written; nil for zero
	// guarded writes go through WriteAtIf or ZeroIf with a guard that
	// counts them in a record of the caller's; abort makes the guard fail.
	guarded, abort bool
	// inTx runs the Tx form inside an Update that writes (or, for a
	// delete, removes) the caller's record of the image in the same commit.
	inTx  bool
	size  int64 // of a clone
	zones []string

	err  error
	out  engine.ID   // the image made
	info engine.Info // its Stat right after the batch
	data []byte      // its content right after the batch
}

func (o *batchOp) String() string {
	s := fmt.Sprintf("%v %d", o.kind, o.id)
	switch o.kind {
	case opWrite, opZero:
		s += fmt.Sprintf(" at %d+%d guarded=%v abort=%v", o.off, o.n, o.guarded, o.abort)
	case opSnapshot, opClone, opFreeze:
		s += fmt.Sprintf(" tx=%v → %d (lineage %d gen %d, base %d@%d)", o.inTx, o.out, o.info.Lineage, o.info.Gen, o.info.Base, o.info.BaseGen)
	case opDelete:
		s += fmt.Sprintf(" tx=%v", o.inTx)
	}
	return s + fmt.Sprintf(": %v", o.err)
}

// recKey is the caller's record of an image made inside its transaction.
func recKey(id engine.ID) []byte { return fmt.Appendf(nil, "t/rec/%d", id) }

// guardKey is the caller's count of the guarded writes into a volume.
func guardKey(id engine.ID) []byte { return fmt.Appendf(nil, "t/guard/%d", id) }

// concurrent is the model of TestModelConcurrent: the sequential model,
// and the caller's records that must commit with the engine's changes.
type concurrent struct {
	*model
	recs   map[engine.ID]bool   // images made in a caller's transaction, not deleted in one
	guards map[engine.ID]uint64 // guarded writes committed, per volume
}

// createVolume creates a volume of 1 MiB: 16 blocks, which a batch's
// writes often share, and small enough that the many copies of its data
// the search for an order makes stay cheap.
func (c *concurrent) createVolume() {
	id, err := c.env.e.CreateVolume(c.ctx(), 1<<20, c.placement()...)
	if err != nil {
		c.t.Fatalf("CreateVolume: %v", err)
	}
	c.lineages++
	c.images[id] = &modelImage{kind: engine.KindVolume, data: make([]byte, 1<<20), lineage: c.lineages}
}

// near draws an image of a kind (0: any) from the focus volume's lineage,
// or, now and then or when it has none, from all; ok is false if there is
// none of the kind at all.
func (c *concurrent) near(focus engine.ID, kind engine.Kind, label string) (engine.ID, bool) {
	var near []engine.ID
	for _, id := range c.ids(kind) {
		if c.images[id].lineage == c.images[focus].lineage {
			near = append(near, id)
		}
	}
	if len(near) > 0 && rapid.IntRange(0, 3).Draw(c.t, label+" elsewhere") > 0 {
		return rapid.SampledFrom(near).Draw(c.t, label), true
	}
	return c.pick(kind, label)
}

// drawBatch draws 2 to 4 operations, most of them on one focus volume and
// its snapshots, so that they collide: writes over overlapping ranges,
// snapshots and clones of the volume being written, deletes of the
// snapshot being cloned.
func (c *concurrent) drawBatch() []*batchOp {
	focus, _ := c.pick(engine.KindVolume, "focus")
	var batch []*batchOp
	for range rapid.IntRange(2, 4).Draw(c.t, "batch") {
		o := &batchOp{inTx: rapid.Bool().Draw(c.t, "in tx")}
		vol, _ := c.near(focus, engine.KindVolume, "volume")
		switch rapid.IntRange(0, 9).Draw(c.t, "concurrent op") {
		case 0, 1, 2, 3:
			o.kind, o.id = opWrite, vol
			if rapid.IntRange(0, 4).Draw(c.t, "zero") == 0 {
				o.kind = opZero
			}
			o.off, o.n = c.span(len(c.images[vol].data))
			if o.kind == opWrite {
				o.p = content(c.t, o.n)
			}
			switch rapid.IntRange(0, 3).Draw(c.t, "guard") {
			case 0:
				o.guarded = true
			case 1:
				o.guarded, o.abort = true, true
			}
		case 4, 5:
			o.kind, o.id, o.zones = opSnapshot, vol, c.placement()
		case 6, 7:
			o.kind, o.zones = opClone, c.placement()
			if rapid.Bool().Draw(c.t, "freeze") {
				o.kind = opFreeze
			}
			o.id, _ = c.near(focus, 0, "source")
			o.size = int64(len(c.images[o.id].data)) + int64(rapid.IntRange(0, 1).Draw(c.t, "extra MiB"))<<20
		case 8:
			id, ok := c.near(focus, engine.KindSnapshot, "snapshot")
			if !ok {
				o.kind = opReplicate
				break
			}
			o.kind, o.id = opDelete, id
		case 9:
			o.kind = opReplicate
		}
		batch = append(batch, o)
	}
	return batch
}

// run does the operation; it runs in a goroutine of its own, so it only
// records what happened.
func (o *batchOp) run(e *engine.Engine, s meta.Store) {
	ctx := context.Background()
	guard := func(tx meta.Tx) error {
		var n uint64
		v, err := tx.Get(guardKey(o.id))
		switch {
		case err == nil:
			if n, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				return err
			}
		case !errors.Is(err, meta.ErrNotFound):
			return err
		}
		if err := tx.Put(guardKey(o.id), strconv.AppendUint(nil, n+1, 10)); err != nil {
			return err
		}
		if o.abort {
			return errAbort
		}
		return nil
	}
	// made runs a Tx form that makes an image and records it beside.
	made := func(fn func(tx meta.Tx) (engine.ID, error)) {
		o.err = s.Update(ctx, func(tx meta.Tx) error {
			var err error
			if o.out, err = fn(tx); err != nil {
				return err
			}
			return tx.Put(recKey(o.out), nil)
		})
		if o.err == nil {
			e.Kick()
		}
	}
	switch {
	case o.kind == opWrite && o.guarded:
		o.err = e.WriteAtIf(ctx, o.id, o.p, int64(o.off), guard)
	case o.kind == opWrite:
		o.err = e.WriteAt(ctx, o.id, o.p, int64(o.off))
	case o.kind == opZero && o.guarded:
		o.err = e.ZeroIf(ctx, o.id, int64(o.off), int64(o.n), guard)
	case o.kind == opZero:
		o.err = e.Zero(ctx, o.id, int64(o.off), int64(o.n))
	case o.kind == opSnapshot && o.inTx:
		made(func(tx meta.Tx) (engine.ID, error) { return e.SnapshotTx(tx, o.id, o.zones...) })
	case o.kind == opSnapshot:
		o.out, o.err = e.Snapshot(ctx, o.id, o.zones...)
	case o.kind == opClone && o.inTx:
		made(func(tx meta.Tx) (engine.ID, error) { return e.CloneTx(tx, o.id, o.size, o.zones...) })
	case o.kind == opClone:
		o.out, o.err = e.Clone(ctx, o.id, o.size, o.zones...)
	case o.kind == opFreeze && o.inTx:
		made(func(tx meta.Tx) (engine.ID, error) { return e.FreezeTx(tx, o.id, o.zones...) })
	case o.kind == opFreeze:
		o.out, o.err = e.Freeze(ctx, o.id, o.zones...)
	case o.kind == opDelete && o.inTx:
		var r engine.Release
		o.err = s.Update(ctx, func(tx meta.Tx) error {
			var err error
			if r, err = e.DeleteTx(tx, o.id); err != nil {
				return err
			}
			return tx.Delete(recKey(o.id))
		})
		if o.err == nil {
			o.err = e.Collect(ctx, r)
		}
	case o.kind == opDelete:
		o.err = e.Delete(ctx, o.id)
	case o.kind == opReplicate:
		_, o.err = e.Replicate(ctx)
	}
}

// runBatch releases the batch's operations together, each in a goroutine
// of its own, and waits for them all.
func (c *concurrent) runBatch(batch []*batchOp) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, o := range batch {
		wg.Go(func() {
			<-start
			o.run(c.env.e, c.env.meta)
		})
	}
	close(start)
	wg.Wait()
}

// observe checks that each operation failed, if at all, only as the
// batch's races allow, and reads what the batch left before anything else
// can change it: the images it made and the volumes it touched (returned).
func (c *concurrent) observe(batch []*batchOp) map[engine.ID][]byte {
	vols := map[engine.ID][]byte{}
	for _, o := range batch {
		switch o.kind {
		case opWrite, opZero:
			var want error
			if o.abort {
				want = errAbort
			}
			if !errors.Is(o.err, want) {
				c.t.Fatalf("%v: want error %v", o, want)
			}
			if o.guarded && !o.abort {
				c.guards[o.id]++
			}
			vols[o.id] = nil
		case opSnapshot, opClone, opFreeze:
			src := c.images[o.id]
			// The batch deletes snapshots, never volumes: only a
			// snapshot source can be gone.
			if o.err != nil && (src.kind != engine.KindSnapshot || !errors.Is(o.err, engine.ErrNotFound)) {
				c.t.Fatalf("%v: want no error", o)
			}
			if src.kind == engine.KindVolume {
				vols[o.id] = nil
			}
			if o.err != nil {
				break
			}
			var err error
			if o.info, err = c.env.e.Stat(c.ctx(), o.out); err != nil {
				c.t.Fatalf("%v: Stat of the image made: %v", o, err)
			}
			o.data = read(c.t, c.env.e, o.out, o.info.Size)
			if o.inTx {
				c.recs[o.out] = true
			}
		case opDelete:
			if o.err != nil && !errors.Is(o.err, engine.ErrNotFound) {
				c.t.Fatalf("%v: want no error or ErrNotFound", o)
			}
			if o.err != nil {
				break
			}
			if _, err := c.env.e.Stat(c.ctx(), o.id); !errors.Is(err, engine.ErrNotFound) {
				c.t.Fatalf("%v: Stat after = %v, want ErrNotFound", o, err)
			}
			if o.inTx {
				delete(c.recs, o.id)
			}
		case opReplicate:
			if o.err != nil {
				c.t.Fatalf("%v: want no error", o)
			}
		}
	}
	for id := range vols {
		vols[id] = read(c.t, c.env.e, id, int64(len(c.images[id].data)))
	}
	return vols
}

// fork returns a copy of the model that apply may change. The copy shares
// the images' data, so apply replaces a slice rather than write into it.
func (m *model) fork() *model {
	f := *m
	f.images = make(map[engine.ID]*modelImage, len(m.images))
	for id, img := range m.images {
		cp := *img
		f.images[id] = &cp
	}
	f.seqs = maps.Clone(m.seqs)
	return &f
}

// apply does the operation to the model as it turned out, and reports
// whether the model agrees with its outcome: the same error, and an image
// made that reads as the model's. sealed holds, per lineage, the
// generation the operations applied so far sealed last.
func (o *batchOp) apply(m *model, sealed map[engine.LineageID]engine.Generation) bool {
	switch o.kind {
	case opWrite, opZero:
		if o.err != nil {
			return true // the guard refused it, and nothing of it commits
		}
		img := m.images[o.id]
		img.data = bytes.Clone(img.data)
		if o.kind == opWrite {
			copy(img.data[o.off:], o.p)
		} else {
			clear(img.data[o.off : o.off+o.n])
		}
	case opDelete:
		if _, live := m.images[o.id]; live != (o.err == nil) {
			return false
		}
		delete(m.images, o.id)
	case opSnapshot, opClone, opFreeze:
		src, live := m.images[o.id]
		if live != (o.err == nil) {
			return false
		}
		if !live {
			return true
		}
		if src.kind == engine.KindVolume {
			// Each seals the volume's head, which numbers the seals in
			// the order they committed; the model's order of
			// snapshots, which its diffs go by, must be that one.
			l, g := o.info.Base, o.info.BaseGen
			if o.kind == opSnapshot {
				l, g = o.info.Lineage, o.info.Gen
			}
			if g <= sealed[l] {
				return false
			}
			sealed[l] = g
		}
		switch o.kind {
		case opSnapshot:
			m.snapshotted(o.id, o.out)
		case opClone:
			m.cloned(o.id, o.out, o.size)
		default:
			m.frozen(o.id, o.out)
		}
		return bytes.Equal(m.images[o.out].data, o.data)
	}
	return true
}

// linearize looks for an order of the batch that, applied one at a time to
// the model, agrees with every outcome and leaves every volume the batch
// touched as it reads now. It returns the model after that order, or nil
// if there is none: depth first over the at most 4! orders, an order
// dropped at its first disagreement.
func (c *concurrent) linearize(batch []*batchOp, vols map[engine.ID][]byte) *model {
	all := 1<<len(batch) - 1
	var try func(m *model, done int, sealed map[engine.LineageID]engine.Generation) *model
	try = func(m *model, done int, sealed map[engine.LineageID]engine.Generation) *model {
		if done == all {
			for id, want := range vols {
				if !bytes.Equal(m.images[id].data, want) {
					return nil
				}
			}
			return m
		}
		for i, o := range batch {
			if done&(1<<i) != 0 {
				continue
			}
			f, s := m.fork(), maps.Clone(sealed)
			if !o.apply(f, s) {
				continue
			}
			if after := try(f, done|1<<i, s); after != nil {
				return after
			}
		}
		return nil
	}
	return try(c.model, 0, map[engine.LineageID]engine.Generation{})
}

// checkRecords checks that the caller's records are exactly those that
// committed: one per image a Tx form made and no DeleteTx removed, and a
// count of each volume's guarded writes that were not refused.
func (c *concurrent) checkRecords() {
	want := map[string]string{}
	for id := range c.recs {
		want[string(recKey(id))] = ""
	}
	for id, n := range c.guards {
		want[string(guardKey(id))] = strconv.FormatUint(n, 10)
	}
	got := map[string]string{}
	err := c.env.meta.View(c.ctx(), func(tx meta.Tx) error {
		clear(got)
		return tx.Scan([]byte("t/"), []byte("t0"), func(k, v []byte) error {
			got[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		c.t.Fatalf("reading the caller's records: %v", err)
	}
	if !maps.Equal(got, want) {
		c.t.Fatalf("caller's records = %v, want %v", got, want)
	}
}

// batch runs one batch of operations at once and moves the model on by
// the order that explains what they did.
func (c *concurrent) batch() {
	batch := c.drawBatch()
	c.runBatch(batch)
	vols := c.observe(batch)
	after := c.linearize(batch, vols)
	if after == nil {
		var b strings.Builder
		for _, o := range batch {
			fmt.Fprintf(&b, "\n\t%v", o)
		}
		c.t.Fatalf("no order of the batch, one at a time, does what it did at once:%s", b.String())
	}
	*c.model = *after
	c.checkRecords()
}

// TestModelConcurrent is TestModel with operations running at once. Each
// step runs a batch of 2 to 4 writes (WriteAt, Zero, and their guarded
// forms, some refused), snapshots, clones, freezes (plain or Tx forms in a
// caller's transaction), deletes of snapshots and replications, mostly on
// one volume and its snapshots so that they collide, released together in
// goroutines of their own. What they did must be what some order of them,
// one at a time, does to the model (they are linearizable): every error
// the one that order gives, every image made reading as its source did
// between whole writes, never amid one, and every volume ending as that
// order leaves it. The caller's records commit with the engine's changes,
// or not at all. Between batches volumes are created, grown and flattened
// and GC runs, one at a time; the history ends as TestModel's does.
func TestModelConcurrent(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		z := newZoneEnv(t)
		c := &concurrent{
			model:  &model{t: rt, env: z.env, zones: z, images: make(map[engine.ID]*modelImage), seqs: make(map[int]int)},
			recs:   map[engine.ID]bool{},
			guards: map[engine.ID]uint64{},
		}
		c.createVolume()
		for range rapid.IntRange(1, 8).Draw(rt, "steps") {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0:
				c.createVolume()
			case 1:
				c.grow()
			case 2:
				c.flatten()
			case 3:
				c.gc()
			default:
				c.batch()
			}
			c.diff()
			if id, ok := c.pick(0, "verify"); ok {
				c.verify(id)
			}
		}
		c.finish()
	})
}

// TestReplicateRacingDelete: an image deleted while replication copies its
// chunks is done with, not a failure, so Replicate must not report it gone
// (TestModelConcurrent found this, racing the two).
func TestReplicateRacingDelete(t *testing.T) {
	ctx := t.Context()
	z, hs := newHookZoneEnv(t, "engine.(*Engine).place")
	vol := must[engine.ID](t)(z.e.CreateVolume(ctx, 1<<20, "r-1"))
	if err := z.e.WriteAt(ctx, vol, randomData(1, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(z.e.Snapshot(ctx, vol, z.zones...))
	del := func() {
		if err := z.e.Delete(ctx, snap); err != nil {
			t.Error(err)
		}
	}
	hs.hook.Store(&del)
	if _, err := z.e.Replicate(ctx); err != nil {
		t.Fatalf("Replicate with its image deleted meanwhile: %v", err)
	}
	if hs.hook.Load() != nil {
		t.Fatal("the delete never ran: replication copied nothing")
	}
	if n := must[int](t)(z.e.PendingImages(ctx)); n != 0 {
		t.Fatalf("PendingImages = %d after the only pending image was deleted, want 0", n)
	}
	checkClean(t, z.e, true)
}
