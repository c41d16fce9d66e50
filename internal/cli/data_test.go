package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

// dataRun is a run of an image filled with a pattern of its own (seed),
// or zeroed (seed 0).
type dataRun struct {
	off, n int64
	seed   uint64
}

// fillPattern fills p with bytes that differ from one seed and offset to
// the next, so that no two blocks of a test image are alike.
func fillPattern(p []byte, off int64, seed uint64) {
	if seed == 0 {
		clear(p)
		return
	}
	x := seed*0x9E3779B97F4A7C15 ^ uint64(off)
	for i := range p {
		if i%8 == 0 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		p[i] = byte(x >> (8 * (i % 8)))
	}
}

// imageBytes is an image of size bytes holding the runs, in order.
func imageBytes(size int64, runs ...dataRun) []byte {
	b := make([]byte, size)
	for _, r := range runs {
		fillPattern(b[r.off:r.off+r.n], r.off, r.seed)
	}
	return b
}

// writeSparse writes b to path as a sparse file: zero 64 KiB blocks are
// holes.
func writeSparse(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
	const blk = 64 << 10
	for off := 0; off < len(b); off += blk {
		p := b[off:min(off+blk, len(b))]
		if !isZero(p) {
			if _, err := f.WriteAt(p, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// padded is b followed by zeros up to size.
func padded(b []byte, size int64) []byte {
	out := make([]byte, size)
	copy(out, b)
	return out
}

// runCtx runs a command line in-process with ctx.
func (s *stack) runCtx(ctx context.Context, args ...string) result {
	s.t.Helper()
	var out, errOut bytes.Buffer
	g := &globals{
		stdout: &out, stderr: &errOut,
		getenv:  func(k string) string { return s.env[k] },
		homeDir: func() (string, error) { return "", errors.New("no home directory in tests") },
	}
	code := g.run(ctx, args)
	return result{out.String(), errOut.String(), code}
}

// checkFile fails unless the file at path holds want.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %d bytes, want %d", path, len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s differs from what was written, first at byte %d", path, i)
			}
		}
	}
}

// checkPadded fails unless the file at path is size bytes: want, then
// zeros. It reads the file in pieces, for files larger than a test should
// hold in memory.
func checkPadded(t *testing.T, path string, want []byte, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		t.Fatalf("%s: %v, want %d bytes", path, fi.Size(), size)
	}
	buf := make([]byte, chunkSize)
	for off := int64(0); off < size; off += chunkSize {
		p := buf[:min(chunkSize, size-off)]
		if _, err := f.ReadAt(p, off); err != nil {
			t.Fatal(err)
		}
		w := zeros[:len(p)]
		if off < int64(len(want)) {
			w = padded(want[off:min(off+chunkSize, int64(len(want)))], int64(len(p)))
		}
		if !bytes.Equal(p, w) {
			t.Fatalf("%s differs from what was written in the 4 MiB at %d", path, off)
		}
	}
}

// noLeftovers fails if a download left its partial file or state.
func noLeftovers(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{out + ".partial", out + ".partial.json", out + ".partial.json.tmp"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was left behind", p)
		}
	}
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no block counts (syscall.Stat_t) on this platform", path)
	}
	return st.Blocks * 512
}

const (
	kib = int64(1 << 10)
	mb  = int64(1 << 20)
)

// TestDataCommands: a raw image uploaded with --create, downloaded as raw
// and VHD, uploaded again unchanged (nothing sent), changed (only the
// changed chunks sent, zeros cleared), and the diff between the
// snapshots taken before and after: exactly the bytes changed.
func TestDataCommands(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.ok("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")

	// 40 MiB and 1000 bytes: not a whole number of pages.
	size := 40*mb + 1000
	runs1 := []dataRun{{0, 64 * kib, 1}, {5*mb + 64*kib, mb, 2}, {20 * mb, 4 * mb, 3}, {40 * mb, 1000, 4}}
	img1 := imageBytes(size, runs1...)
	path1 := filepath.Join(dir, "img1.raw")
	writeSparse(t, path1, img1)

	up := s.object("disk", "upload", "-g", "rg", "-n", "d1", "--file", path1, "--create", "--sku", "Standard_LRS")
	want := map[string]any{
		"disk": diskID("rg", "d1"), "diskState": "Unattached", "file": path1, "format": "raw", "imageBytes": float64(size),
		// Chunks 0, 1 and 5 (4 MiB each), and the last 1000 bytes padded
		// to a 64 KiB block.
		"writtenBytes": float64(12*mb + 64*kib), "unchangedBytes": 0.0, "zeroBytes": float64(28 * mb), "clearedBytes": 0.0,
	}
	if diff := cmp.Diff(want, up); diff != "" {
		t.Errorf("disk upload --create (-want +got):\n%s", diff)
	}
	diskSize := 41 * mb // rounded up to a whole MiB
	if got := s.ok("disk", "show", "-g", "rg", "-n", "d1", "--query", "[diskSizeBytes, diskState, creationData.createOption]", "-o", "tsv"); got != "42991616\nUnattached\nUpload\n" {
		t.Errorf("the uploaded disk: %q", got)
	}
	s.ok("snapshot", "create", "-g", "rg", "-n", "s1", "--source", "d1", "--incremental", "-o", "none")

	raw := filepath.Join(dir, "s1.raw")
	down := s.object("snapshot", "download", "-g", "rg", "-n", "s1", "--file", raw)
	want = map[string]any{
		"source": strings.Replace(diskID("rg", "s1"), "/disks/", "/snapshots/", 1), "file": raw, "format": "raw",
		"sizeBytes": float64(diskSize), "dataBytes": float64(64*kib + mb + 4*mb + 64*kib),
		"downloadedBytes": float64(64*kib + mb + 4*mb + 64*kib), "resumedBytes": 0.0,
	}
	if diff := cmp.Diff(want, down); diff != "" {
		t.Errorf("snapshot download (-want +got):\n%s", diff)
	}
	checkFile(t, raw, padded(img1, diskSize))
	noLeftovers(t, raw)
	if n := allocatedBytes(t, raw); n > 8*mb {
		t.Errorf("%s has %d bytes allocated: the holes were written", raw, n)
	}
	if got := s.ok("snapshot", "show", "-g", "rg", "-n", "s1", "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
		t.Errorf("snapshot s1 still has its SAS after the download")
	}

	vhdPath := filepath.Join(dir, "s1.vhd")
	if got := s.ok("snapshot", "download", "-g", "rg", "-n", "s1", "--file", vhdPath, "--query", "[format, sizeBytes]", "-o", "tsv"); got != "vhd\n42992128\n" {
		t.Errorf("snapshot download --file s1.vhd = %q", got)
	}
	b, err := os.ReadFile(vhdPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:diskSize], padded(img1, diskSize)) {
		t.Errorf("%s: the disk's bytes differ", vhdPath)
	}
	if f, err := vhd.Parse(b[diskSize:]); err != nil || f.CurrentSize != diskSize {
		t.Errorf("%s: footer %+v, %v", vhdPath, f, err)
	}
	noLeftovers(t, vhdPath)

	// The same image again: every chunk is on the disk already.
	if got := s.ok("disk", "upload", "-g", "rg", "-n", "d1", "--file", path1, "--query", "[writtenBytes, unchangedBytes, clearedBytes]", "-o", "tsv"); got != "0\n12648448\n0\n" {
		t.Errorf("uploading the same image again: written, unchanged, cleared = %q", strings.Fields(got))
	}

	// Changes: new data at 8 MiB, zeros over the first run and over the
	// first 256 KiB of the chunk at 20 MiB.
	img2 := imageBytes(size, append(runs1, dataRun{8 * mb, 128 * kib, 5}, dataRun{0, 64 * kib, 0}, dataRun{20 * mb, 256 * kib, 0})...)
	path2 := filepath.Join(dir, "img2.raw")
	writeSparse(t, path2, img2)
	up = s.object("disk", "upload", "-g", "rg", "-n", "d1", "--file", path2)
	for k, v := range map[string]float64{"writtenBytes": float64(8 * mb), "unchangedBytes": float64(4*mb + 64*kib), "clearedBytes": float64(64 * kib)} {
		if up[k] != v {
			t.Errorf("disk upload of the changed image: %s = %v, want %v", k, up[k], v)
		}
	}
	s.ok("snapshot", "create", "-g", "rg", "-n", "s2", "--source", "d1", "--incremental", "-o", "none")

	var diff diffResult
	if err := json.Unmarshal([]byte(s.ok("snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2")), &diff); err != nil {
		t.Fatal(err)
	}
	wantDiff := diffResult{
		From: want["source"].(string), To: strings.Replace(want["source"].(string), "/s1", "/s2", 1),
		ChangedBytes: 128 * kib, ClearedBytes: 64*kib + 256*kib, RangeCount: 3,
		Ranges: []diffRange{
			{Start: 0, End: 64*kib - 1, Length: 64 * kib, Kind: "cleared"},
			{Start: 8 * mb, End: 8*mb + 128*kib - 1, Length: 128 * kib, Kind: "changed"},
			{Start: 20 * mb, End: 20*mb + 256*kib - 1, Length: 256 * kib, Kind: "cleared"},
		},
	}
	if d := cmp.Diff(wantDiff, diff); d != "" {
		t.Errorf("snapshot diff (-want +got):\n%s", d)
	}
	table := s.ok("snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2", "-o", "table")
	wantTable := `Start     End       Length    Kind
--------  --------  --------  -------
0         65535     65536     cleared
8388608   8519679   131072    changed
20971520  21233663  262144    cleared

Ranges    ChangedBytes    ClearedBytes
--------  --------------  --------------
3         131072          327680
`
	if table != wantTable {
		t.Errorf("snapshot diff -o table =\n%s\nwant\n%s", table, wantTable)
	}
	if got := s.ok("snapshot", "diff", "-g", "rg", "--from", s1ID(), "--to", "d1", "--query", "{changed: changedBytes, cleared: clearedBytes}", "-o", "tsv"); got != "131072\t327680\n" {
		t.Errorf("snapshot diff --from ID --to DISK --query = %q", got)
	}
	if got := s.ok("snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2", "--query", "ranges[?kind=='changed'].[start, end]", "-o", "tsv"); got != "8388608\t8519679\n" {
		t.Errorf("snapshot diff --query ranges[?kind=='changed'] = %q", got)
	}
	if got := s.ok("snapshot", "diff", "-g", "rg", "--from", "s2", "--to", "s2", "-o", "table"); !strings.HasSuffix(got, "0         0               0\n") {
		t.Errorf("a diff of a snapshot with itself =\n%s", got)
	}
	for _, n := range []string{"s1", "s2"} {
		if got := s.ok("snapshot", "show", "-g", "rg", "-n", n, "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
			t.Errorf("snapshot %s still has its SAS after the diff", n)
		}
	}

	raw2 := filepath.Join(dir, "s2.img")
	s.ok("snapshot", "download", "-g", "rg", "-n", "s2", "--file", raw2, "-o", "none")
	checkFile(t, raw2, padded(img2, diskSize))

	// The disk itself, once restored from s1.
	s.ok("disk", "create", "-g", "rg", "-n", "restored", "--source", "s1", "-o", "none")
	raw3 := filepath.Join(dir, "restored.raw")
	s.ok("disk", "download", "-g", "rg", "-n", "restored", "--file", raw3, "-o", "none")
	checkFile(t, raw3, padded(img1, diskSize))
}

func s1ID() string { return strings.Replace(diskID("rg", "s1"), "/disks/", "/snapshots/", 1) }

// TestDataUploadVHD: a fixed VHD with --create, a raw image onto an Upload
// disk made with disk create (the footer made for it), and the refusal of
// a VHD of another size.
func TestDataUploadVHD(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.ok("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")

	data := imageBytes(24*mb, dataRun{mb, 3 * mb, 7}, dataRun{23 * mb, mb, 8})
	f, err := vhd.New(24*mb, [16]byte{1, 2, 3}, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	footer, _ := f.MarshalBinary()
	path := filepath.Join(dir, "img.vhd")
	writeSparse(t, path, append(bytes.Clone(data), footer...))

	if got := s.ok("disk", "upload", "-g", "rg", "-n", "v1", "--file", path, "--create", "--query", "[format, imageBytes, diskState]", "-o", "tsv"); got != "vhd\n25165824\nUnattached\n" {
		t.Errorf("disk upload --create of a VHD = %q", got)
	}
	out := filepath.Join(dir, "v1.vhd")
	s.ok("disk", "download", "-g", "rg", "-n", "v1", "--file", out, "-o", "none")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:24*mb], data) {
		t.Errorf("v1's bytes differ from the VHD's")
	}
	if _, err := vhd.Parse(b[24*mb:]); err != nil {
		t.Errorf("v1's footer: %v", err)
	}

	// An Upload disk of 32 MiB: a 24 MiB VHD is refused before anything
	// is written, a raw image of 10 MiB is taken and padded.
	s.ok("disk", "create", "-g", "rg", "-n", "u1", "--upload-type", "Upload", "--upload-size-bytes", "33554944", "-o", "none")
	s.fails(exitError, []string{"is a VHD of a 25165824-byte disk, and disk 'u1' awaits an upload of 33554432 bytes", "--upload-size-bytes 25166336"},
		"disk", "upload", "-g", "rg", "-n", "u1", "--file", path)
	if got := s.ok("disk", "show", "-g", "rg", "-n", "u1", "--query", "diskState", "-o", "tsv"); got != "ReadyToUpload\n" {
		t.Errorf("u1 after a refused upload: %q", got)
	}
	rawPath := filepath.Join(dir, "small.raw")
	writeSparse(t, rawPath, data[:10*mb])
	if got := s.ok("disk", "upload", "-g", "rg", "-n", "u1", "--file", rawPath, "--query", "[format, diskState]", "-o", "tsv"); got != "raw\nUnattached\n" {
		t.Errorf("raw image onto an Upload disk = %q", got)
	}
	out = filepath.Join(dir, "u1.raw")
	s.ok("disk", "download", "-g", "rg", "-n", "u1", "--file", out, "-o", "none")
	checkFile(t, out, padded(data[:10*mb], 32*mb))
}

// TestDataUploadResume: an upload cut off after part of the image (here,
// an earlier upload of the first half) sends only the rest when run
// again.
func TestDataUploadResume(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.ok("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")
	full := imageBytes(32*mb, dataRun{0, 32 * mb, 9})
	half := padded(full[:16*mb], 32*mb)
	halfPath, fullPath := filepath.Join(dir, "half.raw"), filepath.Join(dir, "full.raw")
	writeSparse(t, halfPath, half)
	writeSparse(t, fullPath, full)
	// The first half stands for an upload cut off half-way.
	s.ok("disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1", "-o", "none")
	s.ok("disk", "upload", "-g", "rg", "-n", "d", "--file", halfPath, "-o", "none")
	if got := s.ok("disk", "upload", "-g", "rg", "-n", "d", "--file", fullPath, "--query", "[writtenBytes, unchangedBytes]", "-o", "tsv"); got != "16777216\n16777216\n" {
		t.Errorf("resumed upload: written, unchanged = %q, want half each", strings.Fields(got))
	}
	out := filepath.Join(dir, "d.raw")
	s.ok("disk", "download", "-g", "rg", "-n", "d", "--file", out, "-o", "none")
	checkPadded(t, out, full, 1<<30)
}

// TestDataDownloadInterrupted: a download cancelled part-way keeps its
// partial file and state, revokes its grant, and the next run continues
// from where it stopped.
func TestDataDownloadInterrupted(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.ok("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")
	img := imageBytes(64*mb, dataRun{0, 64 * mb, 11})
	path := filepath.Join(dir, "img.raw")
	writeSparse(t, path, img)
	s.ok("disk", "upload", "-g", "rg", "-n", "d", "--file", path, "--create", "-o", "none")
	s.ok("snapshot", "create", "-g", "rg", "-n", "s", "--source", "d", "--incremental", "-o", "none")

	out := filepath.Join(dir, "s.raw")
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		// Cancel once two 4 MiB ranges are written (one at a time, so the
		// first is recorded by then).
		for ctx.Err() == nil {
			if fi, err := os.Stat(out + ".partial"); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Blocks*512 > 2*chunkSize {
					cancel()
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	})
	r := s.runCtx(ctx, "snapshot", "download", "-g", "rg", "-n", "s", "--file", out, "--parallel", "1")
	cancel()
	wg.Wait()
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "ERROR: interrupted") || !strings.Contains(r.stderr, "run the command again to resume") {
		t.Fatalf("interrupted download: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%s exists after an interrupted download", out)
	}
	var st downloadState
	if b, err := os.ReadFile(out + ".partial.json"); err != nil || json.Unmarshal(b, &st) != nil || len(st.Done) == 0 {
		t.Fatalf("the state of the interrupted download: %v, %+v", err, st)
	}
	if got := s.ok("snapshot", "show", "-g", "rg", "-n", "s", "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
		t.Errorf("the interrupted download did not revoke its grant")
	}
	res := s.object("snapshot", "download", "-g", "rg", "-n", "s", "--file", out)
	if res["resumedBytes"].(float64) < float64(chunkSize) || res["resumedBytes"].(float64)+res["downloadedBytes"].(float64) != float64(64*mb) {
		t.Errorf("resumed download: %v", res)
	}
	checkFile(t, out, img)
	noLeftovers(t, out)

	// A state of another snapshot is not continued.
	s.ok("snapshot", "create", "-g", "rg", "-n", "s2", "--source", "d", "--incremental", "-o", "none")
	if err := os.WriteFile(out+".partial", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+".partial.json", []byte(`{"version":1,"resource":"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/snapshots/other","format":"raw","done":[[0,67108864]]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.run("snapshot", "download", "-g", "rg", "-n", "s2", "--file", out, "--query", "resumedBytes", "-o", "tsv")
	if r.code != 0 || r.stdout != "0\n" || !strings.Contains(r.stderr, "starting over") {
		t.Errorf("download over another snapshot's state: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	checkFile(t, out, img)
}

// TestDataBadInput: what the data commands refuse, with a message that
// says what to do, a non-zero exit code, and nothing written.
func TestDataBadInput(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.ok("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")
	s.ok("disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1", "-o", "none")

	raw := filepath.Join(dir, "img.raw")
	writeSparse(t, raw, imageBytes(2*mb, dataRun{0, mb, 1}))
	s.fails(exitUsage, []string{"is not a fixed VHD: its last 512 bytes are not a valid VHD footer", "--format raw"},
		"disk", "upload", "-g", "rg", "-n", "d", "--file", raw, "--format", "vhd")

	f, _ := vhd.New(2*mb, [16]byte{}, time.Now())
	footer, _ := f.MarshalBinary()
	footer[70] ^= 0xff // the checksum no longer matches
	bad := filepath.Join(dir, "bad.vhd")
	writeSparse(t, bad, append(imageBytes(2*mb, dataRun{0, mb, 1}), footer...))
	s.fails(exitUsage, []string{"ends in a VHD footer that deltadisk cannot upload", "checksum", "qemu-img convert"},
		"disk", "upload", "-g", "rg", "-n", "d", "--file", bad)

	qcow := filepath.Join(dir, "img.qcow2")
	writeSparse(t, qcow, append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 1<<16)...))
	s.fails(exitUsage, []string{"is a qcow2 image", "qemu-img convert -O raw"}, "disk", "upload", "-g", "rg", "-n", "d", "--file", qcow)
	s.fails(exitError, []string{"--file: open", "no such file"}, "disk", "upload", "-g", "rg", "-n", "d", "--file", filepath.Join(dir, "nope"))
	s.fails(exitUsage, []string{"the following arguments are required: --file"}, "disk", "upload", "-g", "rg", "-n", "d")

	big := filepath.Join(dir, "big.raw")
	writeSparse(t, big, imageBytes(1<<30+mb, dataRun{1 << 30, mb, 2}))
	s.fails(exitError, []string{"holds 1074790400 bytes, more than disk 'd' (1073741824 bytes)", "deltadisk disk update -g rg -n d --size-gb 2"},
		"disk", "upload", "-g", "rg", "-n", "d", "--file", big)
	if got := s.ok("disk", "show", "-g", "rg", "-n", "d", "--query", "diskState", "-o", "tsv"); got != "Unattached\n" {
		t.Errorf("disk d after a refused upload: %s", got)
	}

	s.fails(exitNotFound, []string{"(ResourceNotFound)"}, "disk", "upload", "-g", "rg", "-n", "missing", "--file", raw)
	s.fails(exitError, []string{"disk 'd' already exists", "drop --create"}, "disk", "upload", "-g", "rg", "-n", "d", "--file", raw, "--create")

	out := filepath.Join(dir, "out.vhd")
	s.fails(exitNotFound, []string{"(ResourceNotFound)"}, "snapshot", "download", "-g", "rg", "-n", "missing", "--file", out)
	s.fails(exitUsage, []string{"argument --format: invalid choice: 'qcow2'"}, "snapshot", "download", "-g", "rg", "-n", "s", "--file", out, "--format", "qcow2")
	s.fails(exitUsage, []string{"is a directory"}, "snapshot", "download", "-g", "rg", "-n", "s", "--file", dir)
	s.ok("snapshot", "create", "-g", "rg", "-n", "s", "--source", "d", "--incremental", "-o", "none")
	s.ok("snapshot", "grant-access", "-g", "rg", "-n", "s", "--duration-in-seconds", "600", "-o", "none")
	s.fails(exitError, []string{"snapshot 's' already has an active SAS", "deltadisk snapshot revoke-access -g rg -n s"},
		"snapshot", "download", "-g", "rg", "-n", "s", "--file", out)
	s.fails(exitError, []string{"already has an active SAS"}, "snapshot", "diff", "-g", "rg", "--from", "s", "--to", "d")
	s.ok("snapshot", "revoke-access", "-g", "rg", "-n", "s")
	noLeftovers(t, out)
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written by a failed download", out)
	}

	s.fails(exitNotFound, []string{"(ResourceNotFound)"}, "snapshot", "diff", "-g", "rg", "--from", "missing", "--to", "s")
	s.fails(exitUsage, []string{"is not a snapshot id"}, "snapshot", "diff", "--from", diskID("rg", "d"), "--to", "s")
	s.fails(exitUsage, []string{"the following arguments are required: --from, --to"}, "snapshot", "diff", "-g", "rg")
	// Another disk's snapshot: the server's refusal, as it words it.
	s.ok("disk", "create", "-g", "rg", "-n", "other", "--size-gb", "1", "-o", "none")
	s.ok("snapshot", "create", "-g", "rg", "-n", "o1", "--source", "other", "--incremental", "-o", "none")
	s.fails(exitError, []string{"ERROR: (PreviousSnapshotOperationNotSupported)", "not an incremental snapshot of the same disk"},
		"snapshot", "diff", "-g", "rg", "--from", "o1", "--to", "s")
	for _, n := range []string{"o1", "s"} {
		if got := s.ok("snapshot", "show", "-g", "rg", "-n", n, "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
			t.Errorf("a failed diff left snapshot %s with a SAS", n)
		}
	}
}

// TestProgressBar: the bar shows bytes, rate and time left; without a
// terminal nothing is drawn.
func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressBar(&buf, "uploading d1", 8*mb)
	for range 8 {
		p.add(mb)
		time.Sleep(20 * time.Millisecond)
	}
	p.finish()
	out := buf.String()
	for _, want := range []string{"uploading d1", "100%", "8.0 MiB", "MiB/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress bar lacks %q:\n%q", want, out)
		}
	}
	g := &globals{stderr: &buf}
	if p := g.newProgress("x", 10); p != nil {
		t.Errorf("newProgress drew a bar on a buffer, which is no terminal")
	}
	var nilBar *progress
	nilBar.add(1) // a nil bar is quiet
	nilBar.finish()
	nilBar.abort()
}
