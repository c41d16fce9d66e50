package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/tooltest"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// TestExportVHD: a snapshot exported as a fixed VHD is the raw image plus a
// valid footer, and qemu-img reads it as the same disk.
func TestExportVHD(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	const size = 21 << 20 // not a size whose CHS geometry is exact
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*31/4096 + 1)
	}
	for _, off := range []int64{0, 9 << 20, size - 3<<20} {
		if err := env.e.WriteAt(ctx, vol, data, off); err != nil {
			t.Fatal(err)
		}
	}
	snap := must[engine.ID](t)(env.e.Snapshot(ctx, vol))
	// Writes after the snapshot must not show in its export.
	if err := env.e.WriteAt(ctx, vol, bytes.Repeat([]byte{0xee}, 1<<20), 5<<20); err != nil {
		t.Fatal(err)
	}
	raw := exportRaw(t, env.e, snap)
	if int64(len(raw)) != size || !bytes.Equal(raw, read(t, env.e, snap, size)) {
		t.Fatalf("raw export (%d bytes) differs from the snapshot's reads", len(raw))
	}
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	when := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	n, err := env.e.Export(ctx, snap, &buf, engine.ExportOptions{VHD: true, UniqueID: id, Time: when})
	if err != nil {
		t.Fatal(err)
	}
	if n != size+vhd.FooterSize || int64(buf.Len()) != n {
		t.Fatalf("VHD export wrote %d bytes (returned %d), want %d", buf.Len(), n, size+vhd.FooterSize)
	}
	if !bytes.Equal(buf.Bytes()[:size], raw) {
		t.Fatalf("VHD export's data differs from the raw export")
	}
	f, err := vhd.Parse(buf.Bytes()[size:])
	if err != nil {
		t.Fatalf("footer: %v", err)
	}
	if f.CurrentSize != size || f.UniqueID != id || !f.Timestamp.Equal(when) {
		t.Errorf("footer = size %d id %x time %v, want %d %x %v", f.CurrentSize, f.UniqueID, f.Timestamp, size, id, when)
	}

	qemu := tooltest.Path(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	vhdPath, rawPath := filepath.Join(dir, "snap.vhd"), filepath.Join(dir, "snap.raw")
	if err := os.WriteFile(vhdPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(qemu, "info", "--output=json", "-f", "vpc", vhdPath).Output()
	if err != nil {
		t.Fatalf("qemu-img info: %v", err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.VirtualSize != size {
		t.Errorf("qemu-img sees virtual size %d, want %d", info.VirtualSize, size)
	}
	if out, err := exec.Command(qemu, "compare", "-s", "-f", "vpc", "-F", "raw", vhdPath, rawPath).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare: %v: %s", err, out)
	}
}

// TestUsage checks the space accounting of a chain against what its writes
// did.
func TestUsage(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	e := env.e
	vol := must[engine.ID](t)(e.CreateVolume(ctx, 8<<20))
	block := func(b byte) []byte { return bytes.Repeat([]byte{b}, engine.BlockSize) }
	for i := range 10 { // blocks 0-9
		if err := e.WriteAt(ctx, vol, block(byte(i+1)), int64(i)*engine.BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	s1 := must[engine.ID](t)(e.Snapshot(ctx, vol))
	for i := range 4 { // overwrite blocks 0-3
		if err := e.WriteAt(ctx, vol, block(byte(100+i)), int64(i)*engine.BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	s2 := must[engine.ID](t)(e.Snapshot(ctx, vol))
	if err := e.Zero(ctx, vol, 0, engine.BlockSize); err != nil { // clear block 0
		t.Fatal(err)
	}
	const B = engine.BlockSize
	tests := []struct {
		id   engine.ID
		want engine.Usage
	}{
		// s1: 10 blocks; s2 overwrote 4 of them, so deleting s1 drops 4.
		{s1, engine.Usage{Size: 8 << 20, Allocated: 10 * B, Changed: 10 * B, Exclusive: 4 * B}},
		// s2: changed 4; the head cleared block 0, so deleting s2 drops 1.
		{s2, engine.Usage{Size: 8 << 20, Allocated: 10 * B, Changed: 4 * B, Exclusive: 1 * B}},
		// the head: one changed block, and it is zero: nothing to free.
		{vol, engine.Usage{Size: 8 << 20, Allocated: 9 * B, Changed: 1 * B}},
	}
	for _, tc := range tests {
		got, err := e.Usage(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		stored := got.ExclusiveStored
		got.ExclusiveStored = 0
		if got != tc.want {
			t.Errorf("Usage(%d) = %+v, want %+v", tc.id, got, tc.want)
		}
		if (stored > 0) != (tc.want.Exclusive > 0) || stored > tc.want.Exclusive {
			t.Errorf("Usage(%d).ExclusiveStored = %d for %d exclusive bytes", tc.id, stored, tc.want.Exclusive)
		}
	}
}

// TestGCMergesSmallPacks: single-block writes leave a pack each; GC merges
// them and everything still reads the same.
func TestGCMergesSmallPacks(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, 4<<20))
	want := make([]byte, 4<<20)
	for i := range 20 {
		p := bytes.Repeat([]byte{byte(i + 1), byte(i * 3)}, engine.BlockSize/2)
		copy(want[i*2*engine.BlockSize:], p)
		if err := env.e.WriteAt(ctx, vol, p, int64(i*2*engine.BlockSize)); err != nil {
			t.Fatal(err)
		}
	}
	packs := func() int {
		n := 0
		_ = env.store.ListPacks(ctx, func(string, int64) error { n++; return nil })
		return n
	}
	if n := packs(); n != 20 {
		t.Fatalf("%d packs after 20 single-block writes, want 20", n)
	}
	env.now = env.now.Add(time.Hour)
	st, err := env.e.GC(ctx, engine.DefaultGCOptions())
	if err != nil {
		t.Fatal(err)
	}
	if st.PacksCompacted != 20 || packs() != 1 {
		t.Fatalf("GC compacted %d packs, %d remain; want 20 merged into 1", st.PacksCompacted, packs())
	}
	if got := read(t, env.e, vol, 4<<20); !bytes.Equal(got, want) {
		t.Fatalf("volume reads differently after the merge")
	}
	checkClean(t, env.e, true)
}

// TestExportRange: any range of the VHD stream (data, footer, or across
// both) equals the same bytes of the whole export.
func TestExportRange(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	const size = 2 << 20
	vol := must[engine.ID](t)(env.e.CreateVolume(ctx, size))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i/700 + 1)
	}
	if err := env.e.WriteAt(ctx, vol, data, 512<<10); err != nil {
		t.Fatal(err)
	}
	opts := engine.ExportOptions{VHD: true, UniqueID: [16]byte{9}, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var whole bytes.Buffer
	if _, err := env.e.Export(ctx, vol, &whole, opts); err != nil {
		t.Fatal(err)
	}
	total := int64(whole.Len())
	for _, r := range [][2]int64{{0, 1}, {0, 0}, {100, 1000}, {512<<10 - 7, 20}, {600 << 10, 70 << 10}, {size - 10, 20}, {size, 512}, {size + 100, 0}, {total - 1, 1}} {
		o := opts
		o.Offset, o.Length = r[0], r[1]
		var buf bytes.Buffer
		n, err := env.e.Export(ctx, vol, &buf, o)
		end := total
		if r[1] > 0 {
			end = r[0] + r[1]
		}
		if err != nil || n != end-r[0] || !bytes.Equal(buf.Bytes(), whole.Bytes()[r[0]:end]) {
			t.Errorf("Export range %v: %d bytes, %v; want %d bytes equal to the whole export's", r, n, err, end-r[0])
		}
	}
	o := opts
	o.Offset, o.Length = total-1, 2
	if _, err := env.e.Export(ctx, vol, io.Discard, o); !errors.Is(err, engine.ErrOutOfRange) {
		t.Errorf("range past the end = %v, want ErrOutOfRange", err)
	}
}

// TestFingerprint: images with the same bytes have the same fingerprint
// whatever their history (written in another order, zeros written or
// never written, a clone), and one changed byte changes it.
func TestFingerprint(t *testing.T) {
	ctx := t.Context()
	env := newEnv(t)
	e := env.e
	const size = 4 << 20
	a := must[engine.ID](t)(e.CreateVolume(ctx, size))
	b := must[engine.ID](t)(e.CreateVolume(ctx, 8<<20))
	data := randomData(1, 1<<20)
	if err := e.WriteAt(ctx, a, data, 1<<20); err != nil {
		t.Fatal(err)
	}
	for off := int64(1 << 20); off > 0; off -= engine.BlockSize { // backwards, block by block
		if err := e.WriteAt(ctx, b, data[off-engine.BlockSize:off], (1<<20)+off-engine.BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WriteAt(ctx, b, make([]byte, 1<<20), 0); err != nil { // zeros, written
		t.Fatal(err)
	}
	snap := must[engine.ID](t)(e.Snapshot(ctx, a))
	clone := must[engine.ID](t)(e.Clone(ctx, snap, size))
	fp := func(id engine.ID) [32]byte { return must[[32]byte](t)(e.Fingerprint(ctx, id, size)) }
	want := fp(a)
	for _, id := range []engine.ID{b, snap, clone} {
		if fp(id) != want {
			t.Errorf("image %d: fingerprint differs from image %d's, same bytes", id, a)
		}
	}
	if err := e.WriteAt(ctx, clone, []byte{1: 1, 511: 0}, 3<<20); err != nil {
		t.Fatal(err)
	}
	if fp(clone) == want {
		t.Error("one changed byte left the fingerprint unchanged")
	}
	if must[[32]byte](t)(e.Fingerprint(ctx, a, 8<<20)) == want {
		t.Error("fingerprints of different lengths agree")
	}
	if _, err := e.Fingerprint(ctx, a, 1000); !errors.Is(err, engine.ErrUnaligned) {
		t.Errorf("Fingerprint of an unaligned length = %v, want ErrUnaligned", err)
	}
}
