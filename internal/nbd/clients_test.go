package nbd

// Real NBD clients against the server: qemu-io and qemu-img (Debian's
// qemu-utils), nbdinfo and nbdcopy (libnbd-bin), over TCP and a unix socket.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deltadisk/deltadisk/internal/tooltest"
)

// needTool returns the path of a client program. Without it the test is
// skipped, unless DELTADISK_CI is set, where it fails.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	return tooltest.Path(t, name, pkg)
}

// runTool runs a client and returns its combined output; failing is fatal.
func runTool(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := runToolErr(t, path, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return out
}

func runToolErr(t *testing.T, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

// logBuffer collects a Server's log, to show which requests a client sent.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// requests returns the logged requests of export, one "op flags off len"
// per line, and forgets them.
func (b *logBuffer) requests(export string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var reqs []string
	for line := range strings.Lines(b.buf.String()) {
		if !strings.Contains(line, `msg="nbd: request"`) || !strings.Contains(line, " export="+logName(export)+" ") {
			continue
		}
		reqs = append(reqs, strings.TrimSpace(line[strings.Index(line, " op="):]))
	}
	b.buf.Reset()
	return reqs
}

// endpoint is one way to reach the server: a URI per export name.
type endpoint struct {
	name string
	uri  func(export string) string
}

// clientServer serves one Server on a 127.0.0.1 port and on a unix socket.
type clientServer struct {
	*Server
	log       *logBuffer
	endpoints []endpoint
	tcpAddr   string
}

func startClientServer(t *testing.T) *clientServer {
	t.Helper()
	lb := &logBuffer{}
	s := NewServer(Config{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, tcp)
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nbd.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, unix)

	addr := tcp.Addr().String()
	return &clientServer{
		Server:  s,
		log:     lb,
		tcpAddr: addr,
		endpoints: []endpoint{
			{"tcp", func(name string) string { return "nbd://" + addr + "/" + name }},
			{"unix", func(name string) string { return "nbd+unix:///" + name + "?socket=" + sock }},
		},
	}
}

func (s *clientServer) export(t *testing.T, name string, d Device, readOnly bool) {
	t.Helper()
	remove, err := s.Export(name, d, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
}

// randomImage returns size bytes of random data with zero runs: a sparse
// source for copies.
func randomImage(seed uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	clear(b[size/8 : size/4])
	clear(b[size/2 : size/2+65536+1000])
	return b
}

func TestNbdinfo(t *testing.T) {
	nbdinfo := needTool(t, "nbdinfo", "libnbd-bin")
	s := startClientServer(t)
	s.export(t, "disk", newMemDevice(t, 8<<20), false)
	s.export(t, "ro", newMemDevice(t, 1<<20), true)

	type info struct {
		Name      string `json:"export-name"`
		Size      int64  `json:"export-size"`
		ReadOnly  bool   `json:"is_read_only"`
		CanFlush  bool   `json:"can_flush"`
		CanFUA    bool   `json:"can_fua"`
		CanTrim   bool   `json:"can_trim"`
		CanZero   bool   `json:"can_zero"`
		CanFast   bool   `json:"can_fast_zero"`
		CanMulti  bool   `json:"can_multi_conn"`
		CanCache  bool   `json:"can_cache"`
		MinBlock  int    `json:"block_size_minimum"`
		PrefBlock int    `json:"block_size_preferred"`
		MaxBlock  int    `json:"block_size_maximum"`
	}
	type output struct {
		Protocol   string `json:"protocol"`
		Structured bool   `json:"structured"`
		Exports    []info `json:"exports"`
	}
	disk := info{Name: "disk", Size: 8 << 20, CanFlush: true, CanFUA: true, CanTrim: true, CanZero: true, CanFast: true,
		CanMulti: true, MinBlock: 512, PrefBlock: 64 << 10, MaxBlock: 4 << 20}
	ro := info{Name: "ro", Size: 1 << 20, ReadOnly: true, CanFlush: true, CanFUA: true, CanMulti: true,
		MinBlock: 512, PrefBlock: 64 << 10, MaxBlock: 4 << 20}

	for _, ep := range s.endpoints {
		t.Run(ep.name, func(t *testing.T) {
			for _, want := range []info{disk, ro} {
				var got output
				out := runTool(t, nbdinfo, "--json", ep.uri(want.Name))
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("nbdinfo --json output %q: %v", out, err)
				}
				if diff := cmp.Diff(output{Protocol: "newstyle-fixed", Exports: []info{want}}, got); diff != "" {
					t.Errorf("nbdinfo %s (-want +got):\n%s", ep.uri(want.Name), diff)
				}
			}
			if out, err := runToolErr(t, nbdinfo, ep.uri("nope")); err == nil {
				t.Errorf("nbdinfo on an unknown export succeeded:\n%s", out)
			}
		})
	}
	// Listing is refused: export names are the only secret. nbdinfo
	// fails, and says nothing of the exports.
	t.Run("list", func(t *testing.T) {
		out, err := runToolErr(t, nbdinfo, "--list", "--json", "nbd://"+s.tcpAddr)
		if err == nil || strings.Contains(out, `"disk"`) || strings.Contains(out, `"ro"`) {
			t.Errorf("nbdinfo --list = %v:\n%s\nwant it refused, naming no export", err, out)
		}
	})
}

func TestQemuIO(t *testing.T) {
	qemuIO := needTool(t, "qemu-io", "qemu-utils")
	s := startClientServer(t)
	for _, ep := range s.endpoints {
		t.Run(ep.name, func(t *testing.T) {
			const size = 1 << 20
			name := "qio-" + ep.name
			d := newMemDevice(t, size)
			initial := pattern(0x11, size)
			d.fill(initial)
			s.export(t, name, d, false)

			out := runTool(t, qemuIO, "-f", "raw", ep.uri(name),
				"-c", "write -P 0xab 1k 3k",
				"-c", "read -P 0xab 1k 3k",
				"-c", "flush",
				"-c", "discard 64k 64k",
				"-c", "write -z 128k 64k",
				// Not sector-aligned: qemu aligns it itself (read-modify-write
				// of sector 0) since the server advertised a 512-byte minimum.
				"-c", "write -P 0xcd 100 50",
				"-c", "read -P 0xcd 100 50",
				"-c", "read -P 0x00 128k 64k",
			)
			if strings.Contains(out, "fail") || strings.Contains(out, "error") {
				t.Errorf("qemu-io reported a failure:\n%s", out)
			}
			t.Logf("requests qemu-io sent:\n%s", strings.Join(s.log.requests(name), "\n"))

			m := model(bytes.Clone(initial))
			m.write(1024, bytes.Repeat([]byte{0xab}, 3072))
			m.trim(64<<10, 64<<10)
			m.zero(128<<10, 64<<10)
			m.write(100, bytes.Repeat([]byte{0xcd}, 50))
			if got := d.bytes(); !bytes.Equal(got, m) {
				t.Errorf("device after qemu-io differs from model at byte %d", firstDiff(got, m))
			}
			if d.zeros.Load() < 2 {
				t.Errorf("discard and write -z made %d Device.Zero calls, want 2", d.zeros.Load())
			}
		})
	}
	t.Run("read_only", func(t *testing.T) {
		d := newMemDevice(t, 1<<20)
		s.export(t, "qio-ro", d, true)
		out, err := runToolErr(t, qemuIO, "-f", "raw", s.endpoints[0].uri("qio-ro"), "-c", "write -P 0xab 0 4k")
		// qemu sees NBD_FLAG_READ_ONLY and refuses to open the image
		// read-write ("Permission denied"), so no write is even sent.
		if err == nil {
			t.Errorf("qemu-io write to a read-only export succeeded:\n%s", out)
		}
		if d.writes.Load() != 0 {
			t.Errorf("read-only export was written")
		}
		// Opened read-only, it reads.
		runTool(t, qemuIO, "-r", "-f", "raw", s.endpoints[0].uri("qio-ro"), "-c", "read -P 0 0 64k")
	})
}

func TestQemuImgConvert(t *testing.T) {
	qemuImg := needTool(t, "qemu-img", "qemu-utils")
	s := startClientServer(t)
	for i, ep := range s.endpoints {
		t.Run(ep.name, func(t *testing.T) {
			const size = 8 << 20
			name := "img-" + ep.name
			dir := t.TempDir()
			d := newMemDevice(t, size)
			d.fill(randomImage(uint64(i), size))
			s.export(t, name, d, false)

			out := filepath.Join(dir, "out.raw")
			runTool(t, qemuImg, "convert", "-f", "raw", "-O", "raw", ep.uri(name), out)
			compareFile(t, out, d.bytes())

			in := filepath.Join(dir, "in.raw")
			want := randomImage(uint64(i)+100, size)
			if err := os.WriteFile(in, want, 0o644); err != nil {
				t.Fatal(err)
			}
			// -n: the NBD export exists already; qemu-img must not create it.
			runTool(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", in, ep.uri(name))
			if got := d.bytes(); !bytes.Equal(got, want) {
				t.Errorf("device after qemu-img convert differs from the image at byte %d", firstDiff(got, want))
			}
			t.Logf("requests qemu-img sent: %d", len(s.log.requests(name)))
		})
	}
}

func TestNbdcopy(t *testing.T) {
	nbdcopy := needTool(t, "nbdcopy", "libnbd-bin")
	s := startClientServer(t)
	for i, ep := range s.endpoints {
		t.Run(ep.name, func(t *testing.T) {
			const size = 8 << 20
			name := "copy-" + ep.name
			dir := t.TempDir()
			d := newMemDevice(t, size)
			d.fill(pattern(3, size))
			s.export(t, name, d, false)

			in := filepath.Join(dir, "in.raw")
			want := randomImage(uint64(i)+200, size)
			if err := os.WriteFile(in, want, 0o644); err != nil {
				t.Fatal(err)
			}
			// Several connections at once (the export allows multi-conn),
			// then a flush on each.
			runTool(t, nbdcopy, "--connections=4", "--flush", in, ep.uri(name))
			if got := d.bytes(); !bytes.Equal(got, want) {
				t.Errorf("device after nbdcopy differs from the image at byte %d", firstDiff(got, want))
			}
			reqs := s.log.requests(name)
			flushes := 0
			for _, r := range reqs {
				if strings.HasPrefix(r, "op=flush") {
					flushes++
				}
			}
			t.Logf("nbdcopy sent %d requests, %d of them flushes", len(reqs), flushes)

			out := filepath.Join(dir, "out.raw")
			runTool(t, nbdcopy, ep.uri(name), out)
			compareFile(t, out, want)
		})
	}
}

func compareFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s (%d bytes) differs from the device (%d bytes) at byte %d", filepath.Base(path), len(got), len(want), firstDiff(got, want))
	}
}
