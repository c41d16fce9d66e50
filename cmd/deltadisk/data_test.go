package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

// The data commands of the real binary against the real server: upload,
// download and diff as a user runs them.

const (
	dataKiB = int64(1 << 10)
	dataMiB = int64(1 << 20)
	dataGiB = int64(1 << 30)
)

// dataWrite is a run of an image: a pattern of its own (seed), or zeros
// (seed 0).
type dataWrite struct {
	off, n int64
	seed   uint64
}

// dataPattern fills p with bytes unique to seed and offset.
func dataPattern(p []byte, off int64, seed uint64) {
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

// dataImage writes a sparse image of size bytes with the runs applied in
// order, optionally followed by a fixed VHD footer.
func dataImage(t *testing.T, path string, size int64, footer bool, runs ...dataWrite) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total := size
	if footer {
		total += vhd.FooterSize
	}
	if err := f.Truncate(total); err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		p := make([]byte, r.n)
		dataPattern(p, r.off, r.seed)
		if _, err := f.WriteAt(p, r.off); err != nil {
			t.Fatal(err)
		}
	}
	if footer {
		ft, err := vhd.New(size, [16]byte{0xd, 0xd}, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ft.MarshalBinary()
		if _, err := f.WriteAt(b, size); err != nil {
			t.Fatal(err)
		}
	}
}

// dataHash is the SHA-256 of the first n bytes of a file.
func dataHash(t *testing.T, path string, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if m, err := io.Copy(h, io.LimitReader(f, n)); err != nil || m != n {
		t.Fatalf("hashing %s: %d bytes, %v; want %d", path, m, err, n)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func dataSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dataAllocated is the bytes a file takes on disk.
func dataAllocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// cliJSON runs a client command that must succeed and decodes its JSON.
func (s *server) cliJSON(v any, args ...string) {
	s.t.Helper()
	out := s.cliOK(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("deltadisk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cliFails runs a client command that must fail with code, print nothing
// on stdout, and say each of want on stderr.
func (s *server) cliFails(code int, want []string, args ...string) {
	s.t.Helper()
	r := s.deltadiskCLI(args...)
	if r.code != code || r.stdout != "" {
		s.t.Errorf("deltadisk %s: exit %d, stdout %q; want exit %d and nothing; stderr:\n%s", strings.Join(args, " "), r.code, r.stdout, code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			s.t.Errorf("deltadisk %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
}

// TestDataSession: a 1 GiB sparse image with a few MiB scattered over it,
// uploaded raw and as a VHD and downloaded back, with identical hashes;
// changes between two snapshots, and the diff's totals equal to them; a
// restore; and the refusals of bad input.
func TestDataSession(t *testing.T) {
	s := startServer(t, t.TempDir(), "")
	dir := t.TempDir()
	s.cliOK("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")

	// 24 runs of 256 KiB, 64 KiB-aligned, at most one per 16 MiB.
	var runs []dataWrite
	chunks := map[int64]bool{}
	for i := range int64(24) {
		off := i*40*dataMiB + (i*7919%64)*64*dataKiB
		if off+256*dataKiB > dataGiB {
			break
		}
		runs = append(runs, dataWrite{off, 256 * dataKiB, uint64(i + 1)})
		for c := off / (4 * dataMiB); c <= (off+256*dataKiB-1)/(4*dataMiB); c++ {
			chunks[c] = true
		}
	}
	dataBytes := int64(len(runs)) * 256 * dataKiB
	img := filepath.Join(dir, "img.raw")
	dataImage(t, img, dataGiB, false, runs...)
	want := dataHash(t, img, dataGiB)

	start := time.Now()
	var up map[string]any
	s.cliJSON(&up, "disk", "upload", "-g", "rg", "-n", "d1", "--file", img, "--create")
	t.Logf("upload of a 1 GiB image holding %d MiB: %v", dataBytes>>20, time.Since(start))
	if up["format"] != "raw" || up["imageBytes"] != float64(dataGiB) || up["writtenBytes"] != float64(int64(len(chunks))*4*dataMiB) || up["diskState"] != "Unattached" {
		t.Errorf("disk upload --create = %v; want %d chunks of 4 MiB written", up, len(chunks))
	}
	s.cliOK("snapshot", "create", "-g", "rg", "-n", "s1", "--source", "d1", "--incremental", "-o", "none")

	for _, name := range []string{"s1.raw", "s1.vhd"} {
		out := filepath.Join(dir, name)
		start := time.Now()
		var down map[string]any
		s.cliJSON(&down, "snapshot", "download", "-g", "rg", "-n", "s1", "--file", out)
		t.Logf("download as %s: %v", name, time.Since(start))
		if down["dataBytes"] != float64(dataBytes) || down["downloadedBytes"] != float64(dataBytes) {
			t.Errorf("snapshot download --file %s = %v; want %d bytes of data", name, down, dataBytes)
		}
		if got := dataHash(t, out, dataGiB); got != want {
			t.Errorf("%s: the hash of its disk bytes differs from the image's", name)
		}
		if n := dataAllocated(t, out); n > 4*dataBytes {
			t.Errorf("%s takes %d bytes on disk: its holes were written", name, n)
		}
		for _, p := range []string{out + ".partial", out + ".partial.json"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s was left behind", p)
			}
		}
	}
	if n := dataSize(t, filepath.Join(dir, "s1.raw")); n != dataGiB {
		t.Errorf("s1.raw is %d bytes", n)
	}
	vhdFile, err := os.Open(filepath.Join(dir, "s1.vhd"))
	if err != nil {
		t.Fatal(err)
	}
	footer := make([]byte, vhd.FooterSize)
	if _, err := vhdFile.ReadAt(footer, dataGiB); err != nil {
		t.Fatal(err)
	}
	vhdFile.Close()
	if f, err := vhd.Parse(footer); err != nil || f.CurrentSize != dataGiB {
		t.Errorf("s1.vhd's footer: %+v, %v", f, err)
	}

	// The same image as a fixed VHD, onto a disk made for it.
	imgVHD := filepath.Join(dir, "img.vhd")
	dataImage(t, imgVHD, dataGiB, true, runs...)
	if got := s.cliOK("disk", "upload", "-g", "rg", "-n", "d2", "--file", imgVHD, "--create", "--query", "[format, diskState]", "-o", "tsv"); got != "vhd\nUnattached\n" {
		t.Errorf("disk upload of a VHD = %q", got)
	}
	d2 := filepath.Join(dir, "d2.raw")
	s.cliOK("disk", "download", "-g", "rg", "-n", "d2", "--file", d2, "-o", "none")
	if dataHash(t, d2, dataGiB) != want {
		t.Errorf("d2, uploaded as a VHD, reads back differently")
	}

	// Changes, 64 KiB-aligned: 384 KiB written where there were zeros,
	// 256 KiB of data zeroed.
	changes := []dataWrite{{100 * dataMiB, 64 * dataKiB, 101}, {300 * dataMiB, 128 * dataKiB, 102}, {900 * dataMiB, 192 * dataKiB, 103}, {runs[3].off, 256 * dataKiB, 0}}
	img2 := filepath.Join(dir, "img2.raw")
	dataImage(t, img2, dataGiB, false, append(runs, changes...)...)
	s.cliOK("disk", "upload", "-g", "rg", "-n", "d1", "--file", img2, "-o", "none")
	s.cliOK("snapshot", "create", "-g", "rg", "-n", "s2", "--source", "d1", "--incremental", "-o", "none")
	var diff struct {
		ChangedBytes, ClearedBytes int64
		RangeCount                 int
		Ranges                     []struct {
			Start, End, Length int64
			Kind               string
		}
	}
	s.cliJSON(&diff, "snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2")
	if diff.ChangedBytes != 384*dataKiB || diff.ClearedBytes != 256*dataKiB || diff.RangeCount != 4 || len(diff.Ranges) != 4 {
		t.Errorf("snapshot diff = %+v; want 384 KiB changed, 256 KiB cleared, in 4 ranges", diff)
	}
	if got := s.cliOK("snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2", "-o", "table"); !strings.Contains(got, "Ranges    ChangedBytes    ClearedBytes\n") ||
		!strings.HasSuffix(got, "4         393216          262144\n") || !strings.Contains(got, "104857600  104923135  65536     changed\n") {
		t.Errorf("snapshot diff -o table =\n%s", got)
	}
	if got := s.cliOK("snapshot", "diff", "-g", "rg", "--from", "s1", "--to", "s2", "--query", "ranges[?kind=='cleared'].[start, length]", "-o", "tsv"); got != fmt.Sprintf("%d\t262144\n", runs[3].off) {
		t.Errorf("snapshot diff --query cleared ranges = %q", got)
	}

	// Restore s1 to a new disk: the first image again.
	s.cliOK("disk", "create", "-g", "rg", "-n", "restored", "--source", "s1", "-o", "none")
	restored := filepath.Join(dir, "restored.raw")
	s.cliOK("disk", "download", "-g", "rg", "-n", "restored", "--file", restored, "-o", "none")
	if dataHash(t, restored, dataGiB) != want {
		t.Errorf("the disk restored from s1 differs from the first image")
	}
	s2 := filepath.Join(dir, "s2.raw")
	s.cliOK("snapshot", "download", "-g", "rg", "-n", "s2", "--file", s2, "-o", "none")
	if dataHash(t, s2, dataGiB) != dataHash(t, img2, dataGiB) {
		t.Errorf("s2 differs from the changed image")
	}

	// Bad input.
	s.cliFails(2, []string{"is not a fixed VHD", "--format raw"}, "disk", "upload", "-g", "rg", "-n", "d1", "--file", img, "--format", "vhd")
	bad := filepath.Join(dir, "bad.vhd")
	dataImage(t, bad, 20*dataMiB, true, dataWrite{0, dataMiB, 1})
	if f, err := os.OpenFile(bad, os.O_WRONLY, 0); err == nil {
		_, _ = f.WriteAt([]byte{0xff}, 20*dataMiB+70) // breaks the checksum
		f.Close()
	}
	s.cliFails(2, []string{"ends in a VHD footer that deltadisk cannot upload", "checksum"}, "disk", "upload", "-g", "rg", "-n", "d1", "--file", bad)
	big := filepath.Join(dir, "big.raw")
	dataImage(t, big, dataGiB+dataMiB, false, dataWrite{dataGiB, dataMiB, 9})
	s.cliFails(1, []string{"more than disk 'd1'", "disk update -g rg -n d1 --size-gb 2"}, "disk", "upload", "-g", "rg", "-n", "d1", "--file", big)
	s.cliFails(3, []string{"(ResourceNotFound)"}, "snapshot", "download", "-g", "rg", "-n", "nope", "--file", filepath.Join(dir, "nope.vhd"))
	if _, err := os.Stat(filepath.Join(dir, "nope.vhd.partial")); err == nil {
		t.Errorf("a download of a missing snapshot left a partial file")
	}
	s.cliFails(3, []string{"(ResourceNotFound)"}, "snapshot", "diff", "-g", "rg", "--from", "nope", "--to", "s2")
	if got := s.cliOK("disk", "show", "-g", "rg", "-n", "d1", "--query", "diskState", "-o", "tsv"); got != "Unattached\n" {
		t.Errorf("d1 after the refusals: %q", got)
	}
}

// dataProxy forwards TCP connections to the server. It can slow what the
// server sends, and cut every connection and refuse new ones (an outage),
// so that a transfer can be interrupted where a test wants.
type dataProxy struct {
	ln     net.Listener
	target string
	rate   atomic.Int64 // bytes per second from the server; 0 is unlimited

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  bool
	next  time.Time // when the throttle lets the next bytes through
}

func startDataProxy(t *testing.T, ln net.Listener, target string) *dataProxy {
	p := &dataProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut(false)
	})
	return p
}

func (p *dataProxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(s, c)
		s.Close()
	}()
	buf := make([]byte, 16<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			p.throttle(n)
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *dataProxy) throttle(n int) {
	r := p.rate.Load()
	if r == 0 {
		return
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(int64(n) * int64(time.Second) / r))
	wait := time.Until(p.next)
	p.mu.Unlock()
	time.Sleep(wait)
}

// cut closes every connection; with down, new ones are refused until up.
func (p *dataProxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *dataProxy) up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// startProxiedServer runs the real binary behind a dataProxy: its public
// URL, and so every URL a client gets (ARM, token, SAS), is the proxy's.
func startProxiedServer(t *testing.T) (*server, *dataProxy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := tmp.Addr().String()
	tmp.Close()
	proxy := startDataProxy(t, ln, listen)

	s := &server{t: t, dir: t.TempDir()}
	s.cmd = exec.Command(binary, "serve", "--data-dir", s.dir, "--listen", listen, "--public-url", "https://"+ln.Addr().String())
	s.stderr = &bytes.Buffer{}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	credPath := filepath.Join(s.dir, "credentials.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("deltadisk serve did not write its credentials; stderr:\n%s", s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
		if b, err := os.ReadFile(credPath); err == nil && json.Unmarshal(b, &s.creds) == nil {
			if c, err := net.Dial("tcp", listen); err == nil {
				c.Close()
				return s, proxy
			}
		}
	}
}

// dataDone is how many bytes a download's state records as written.
func dataDone(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var st struct{ Done [][2]int64 }
	if json.Unmarshal(b, &st) != nil {
		return 0
	}
	var n int64
	for _, r := range st.Done {
		n += r[1] - r[0]
	}
	return n
}

// TestDataDownloadInterrupted: a download stopped by SIGINT, then one cut
// off by an outage of the connection (the server unreachable, even to
// revoke), each continued by running the command again, and the file
// identical to the image at the end.
func TestDataDownloadInterrupted(t *testing.T) {
	s, proxy := startProxiedServer(t)
	dir := t.TempDir()
	s.cliOK("group", "create", "-n", "rg", "-l", "eastus", "-o", "none")
	size := 40 * dataMiB
	img := filepath.Join(dir, "img.raw")
	dataImage(t, img, size, false, dataWrite{0, size, 42})
	want := dataHash(t, img, size)
	s.cliOK("disk", "upload", "-g", "rg", "-n", "d", "--file", img, "--create", "-o", "none")
	s.cliOK("snapshot", "create", "-g", "rg", "-n", "s", "--source", "d", "--incremental", "-o", "none")

	out := filepath.Join(dir, "s.raw")
	state := out + ".partial.json"
	// start runs the download in the background once the proxy is slowed
	// to 4 MiB/s, and waits until its state records more than after.
	start := func(after int64) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		proxy.rate.Store(4 * dataMiB)
		cmd := exec.Command(binary, "snapshot", "download", "-g", "rg", "-n", "s", "--file", out, "--parallel", "2", "--data-dir", s.dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for dataDone(state) <= after {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("the download recorded no progress; stderr:\n%s", &stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd, &stdout, &stderr
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}

	// SIGINT: exit 130, the partial file and its state kept, the grant
	// revoked.
	cmd, stdout, stderr := start(0)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(cmd.Wait()); code != 130 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "ERROR: interrupted") ||
		!strings.Contains(stderr.String(), "run the command again to resume") {
		t.Fatalf("download stopped by SIGINT: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatalf("%s exists after an interrupted download", out)
	}
	first := dataDone(state)
	if got := s.cliOK("snapshot", "show", "-g", "rg", "-n", "s", "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
		t.Errorf("the interrupted download left its grant")
	}

	// An outage: every connection cut and refused. The command fails
	// with a clear error, cannot revoke, and keeps what it has.
	cmd, stdout, stderr = start(first)
	proxy.cut(true)
	code := exitCode(cmd.Wait())
	second := dataDone(state)
	if code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "the partial download is kept in "+out+".partial: run the command again to resume it") ||
		!strings.Contains(stderr.String(), "could not revoke") || second <= first {
		t.Fatalf("download cut off: exit %d, %d then %d bytes recorded, stdout %q, stderr:\n%s", code, first, second, stdout, stderr)
	}
	if strings.Contains(stderr.String(), "sig=") {
		t.Errorf("an error message shows the SAS:\n%s", stderr)
	}
	t.Logf("a download cut off reports:\n%s", stderr)

	// Back up: the grant the cut-off run could not revoke is the one the
	// next run continues with, and revokes.
	proxy.up()
	proxy.rate.Store(0)
	if got := s.cliOK("snapshot", "show", "-g", "rg", "-n", "s", "--query", "diskState", "-o", "tsv"); got != "ActiveSAS\n" {
		t.Errorf("after the outage, snapshot s is %q, want the grant the cut-off run held still in force", got)
	}
	var res map[string]any
	s.cliJSON(&res, "snapshot", "download", "-g", "rg", "-n", "s", "--file", out)
	if res["resumedBytes"] != float64(second) || res["downloadedBytes"] != float64(size-second) {
		t.Errorf("resumed download = %v; want %d bytes resumed", res, second)
	}
	if dataHash(t, out, size) != want || dataSize(t, out) != size {
		t.Errorf("the resumed download differs from the image")
	}
	for _, p := range []string{out + ".partial", state} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was left behind", p)
		}
	}
	if got := s.cliOK("snapshot", "show", "-g", "rg", "-n", "s", "--query", "diskState", "-o", "tsv"); got == "ActiveSAS\n" {
		t.Errorf("the resumed download left its grant")
	}
}
