package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// model applies requests to a plain byte slice, as a correct server would.
type model []byte

func (m model) write(off int, p []byte) { copy(m[off:], p) }
func (m model) zero(off, n int)         { clear(m[off : off+n]) }

// trim zeroes the whole sectors inside [off, off+n), which is what the
// server does (the protocol allows anything).
func (m model) trim(off, n int) {
	a, b := int(alignUp(int64(off))), int(alignDown(int64(off+n)))
	if a < b {
		clear(m[a:b])
	}
}

func TestCommands(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	initial := pattern(9, testSize)
	d.fill(initial)
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	m := model(bytes.Clone(initial))

	type op struct {
		typ   uint16
		flags uint16
		off   int
		n     int
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"write_aligned", []op{{cmdWrite, 0, 4096, 8192}}},
		{"write_fua", []op{{cmdWrite, cmdFlagFUA, 65536, 512}}},
		{"write_unaligned_inside_sector", []op{{cmdWrite, 0, 1000, 10}}},
		{"write_unaligned_to_sector_end", []op{{cmdWrite, 0, 1100, 436}}},
		{"write_unaligned_from_sector_start", []op{{cmdWrite, 0, 2048, 100}}},
		{"write_unaligned_two_partial_sectors", []op{{cmdWrite, 0, 3000, 700}}},
		{"write_unaligned_long", []op{{cmdWrite, 0, 10001, 100000}}},
		{"write_one_byte_at_end", []op{{cmdWrite, 0, testSize - 1, 1}}},
		{"write_zero_length", []op{{cmdWrite, 0, 777, 0}}},
		{"write_zeroes_aligned", []op{{cmdWriteZeroes, 0, 8192, 4096}}},
		{"write_zeroes_unaligned", []op{{cmdWriteZeroes, 0, 20001, 3333}}},
		{"write_zeroes_no_hole_fua", []op{{cmdWriteZeroes, cmdFlagNoHole | cmdFlagFUA, 30000, 5000}}},
		{"write_zeroes_fast", []op{{cmdWriteZeroes, cmdFlagFastZero, 40000, 100}}},
		{"trim_aligned", []op{{cmdTrim, 0, 65536, 65536}}},
		{"trim_unaligned", []op{{cmdTrim, cmdFlagFUA, 200001, 3000}}},
		{"trim_inside_sector", []op{{cmdTrim, 0, 300001, 100}}},
		{"flush", []op{{cmdWrite, 0, 500000, 5}, {cmdFlush, 0, 0, 0}, {cmdFlush, cmdFlagFUA, 0, 0}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, o := range tc.ops {
				var payload []byte
				switch o.typ {
				case cmdWrite:
					payload = pattern(byte(i*13), o.n)
					m.write(o.off, payload)
				case cmdWriteZeroes:
					m.zero(o.off, o.n)
				case cmdTrim:
					m.trim(o.off, o.n)
				}
				c.mustDo(o.typ, o.flags, uint64(o.off), uint32(o.n), payload)
			}
			if got := d.bytes(); !bytes.Equal(got, m) {
				t.Fatalf("device differs from model at byte %d", firstDiff(got, m))
			}
			// Reads, aligned or not, see the same.
			for _, r := range [][2]int{{0, 512}, {1, 1}, {999, 1500}, {testSize - 700, 700}, {tc.ops[0].off, max(tc.ops[0].n, 1)}} {
				if got := c.read(uint64(r[0]), uint32(r[1])); !bytes.Equal(got, m[r[0]:r[0]+r[1]]) {
					t.Errorf("read(off %d, len %d) differs from model at byte %d", r[0], r[1], firstDiff(got, m[r[0]:]))
				}
			}
		})
	}
	t.Run("read_zero_length", func(t *testing.T) {
		if got := c.read(4096, 0); len(got) != 0 {
			t.Errorf("read of length 0 returned %d bytes", len(got))
		}
	})
	t.Run("read_fua", func(t *testing.T) {
		if errno, _ := c.do(cmdRead, cmdFlagFUA, 0, 512, nil); errno != 0 {
			t.Errorf("read with FUA: errno %d, want 0", errno)
		}
	})
	c.disconnect()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestCommandErrors(t *testing.T) {
	s := startServer(t, Config{MaxRequest: 64 << 10})
	d := newMemDevice(t, testSize)
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")

	tests := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		n       uint32
		payload bool // send n bytes of payload
		want    uint32
	}{
		{"read_past_end", cmdRead, 0, testSize - 512, 1024, false, errInval},
		{"read_offset_past_end", cmdRead, 0, testSize + 512, 512, false, errInval},
		{"read_offset_overflow", cmdRead, 0, 1<<64 - 512, 1024, false, errInval},
		{"write_past_end", cmdWrite, 0, testSize - 1, 2, true, errNoSpc},
		{"write_zeroes_past_end", cmdWriteZeroes, 0, testSize, 512, false, errNoSpc},
		{"trim_past_end", cmdTrim, 0, testSize - 512, 4096, false, errInval},
		{"read_too_long", cmdRead, 0, 0, 64<<10 + 512, false, errInval},
		{"write_too_long", cmdWrite, 0, 0, 64<<10 + 512, true, errInval},
		{"cache", cmdCache, 0, 0, 512, false, errInval},
		{"block_status", cmdBlockStatus, 0, 0, 512, false, errInval},
		{"resize", 8, 0, 0, 0, false, errInval},
		{"unknown_command", 99, 0, 0, 512, false, errInval},
		{"unknown_flag", cmdRead, 1 << 9, 0, 512, false, errInval},
		{"df_flag", cmdRead, 1 << 2, 0, 512, false, errInval},
		{"no_hole_on_write", cmdWrite, cmdFlagNoHole, 0, 512, true, errInval},
		{"fast_zero_on_trim", cmdTrim, cmdFlagFastZero, 0, 512, false, errInval},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var payload []byte
			if tc.payload {
				payload = pattern(1, int(tc.n))
			}
			if errno, _ := c.do(tc.typ, tc.flags, tc.off, tc.n, payload); errno != tc.want {
				t.Errorf("%s errno = %d, want %d", tc.name, errno, tc.want)
			}
			// The payload of a refused write was consumed: the next request
			// is framed correctly.
			c.mustDo(cmdFlush, 0, 0, 0, nil)
		})
	}
	if d.writes.Load() != 0 || d.zeros.Load() != 0 {
		t.Errorf("refused requests reached the device: %d writes, %d zeros", d.writes.Load(), d.zeros.Load())
	}
	c.disconnect()
}

func TestReadOnly(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	d.fill(pattern(5, testSize))
	s.export(t, "ro", d, true)
	c := connect(t, s.addr, "ro")
	for _, tc := range []struct {
		typ     uint16
		payload []byte
	}{{cmdWrite, pattern(1, 4096)}, {cmdTrim, nil}, {cmdWriteZeroes, nil}} {
		if errno, _ := c.do(tc.typ, 0, 0, 4096, tc.payload); errno != errPerm {
			t.Errorf("%s on a read-only export: errno %d, want EPERM", cmdName(tc.typ), errno)
		}
	}
	c.mustDo(cmdFlush, 0, 0, 0, nil)
	if got := c.read(100, 1000); !bytes.Equal(got, pattern(5, testSize)[100:1100]) {
		t.Errorf("read of read-only export differs")
	}
	if d.writes.Load() != 0 || d.zeros.Load() != 0 {
		t.Errorf("read-only export was written: %d writes, %d zeros", d.writes.Load(), d.zeros.Load())
	}
	c.disconnect()
}

func TestDeviceErrors(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	fail := map[string]error{}
	var mu sync.Mutex
	d.before = func(_ context.Context, op string, _, _ int64) error {
		mu.Lock()
		defer mu.Unlock()
		return fail[op]
	}
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	tests := []struct {
		name    string
		failOp  string
		err     error
		typ     uint16
		off, n  int
		payload bool
		want    uint32
	}{
		{"read_eio", "ReadAt", errors.New("disk on fire"), cmdRead, 0, 512, false, errIO},
		{"write_eio", "WriteAt", errors.New("disk on fire"), cmdWrite, 0, 512, true, errIO},
		{"write_nospace", "WriteAt", fmt.Errorf("quota: %w", ErrNoSpace), cmdWrite, 0, 512, true, errNoSpc},
		{"write_enospc", "WriteAt", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, cmdWrite, 0, 512, true, errNoSpc},
		{"rmw_read_fails", "ReadAt", errors.New("disk on fire"), cmdWrite, 10, 10, true, errIO},
		{"zero_nospace", "Zero", syscall.EDQUOT, cmdWriteZeroes, 0, 4096, false, errNoSpc},
		{"write_eacces", "WriteAt", &os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, cmdWrite, 0, 512, true, errPerm},
		{"zero_erofs", "Zero", fmt.Errorf("zone z: %w", syscall.EROFS), cmdWriteZeroes, 0, 4096, false, errPerm},
		{"trim_eio", "Zero", errors.New("disk on fire"), cmdTrim, 0, 4096, false, errIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			clear(fail)
			fail[tc.failOp] = tc.err
			mu.Unlock()
			var payload []byte
			if tc.payload {
				payload = pattern(2, tc.n)
			}
			if errno, _ := c.do(tc.typ, 0, uint64(tc.off), uint32(tc.n), payload); errno != tc.want {
				t.Errorf("errno = %d, want %d", errno, tc.want)
			}
		})
	}
	mu.Lock()
	clear(fail)
	mu.Unlock()
	c.read(0, 512) // the connection survives device errors
	c.disconnect()
}

// TestRandomAgainstModel drives random requests, mostly unaligned, from
// several connections in turn and compares the device with the model after
// each.
func TestRandomAgainstModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const size = 64 << 10
	s := startServer(t, Config{})
	d := newMemDevice(t, size)
	s.export(t, "disk", d, false)
	conns := []*client{connect(t, s.addr, "disk"), connect(t, s.addr, "disk")}
	m := make(model, size)
	for i := range 400 {
		c := conns[rng.IntN(len(conns))]
		off := rng.IntN(size)
		n := rng.IntN(min(size-off, 3000) + 1)
		switch rng.IntN(4) {
		case 0:
			p := pattern(byte(i), n)
			m.write(off, p)
			c.mustDo(cmdWrite, 0, uint64(off), uint32(n), p)
		case 1:
			m.zero(off, n)
			c.mustDo(cmdWriteZeroes, 0, uint64(off), uint32(n), nil)
		case 2:
			m.trim(off, n)
			c.mustDo(cmdTrim, 0, uint64(off), uint32(n), nil)
		case 3:
			if got := c.read(uint64(off), uint32(n)); !bytes.Equal(got, m[off:off+n]) {
				t.Fatalf("step %d: read(off %d, len %d) differs from model at %d", i, off, n, firstDiff(got, m[off:]))
			}
		}
		if got := d.bytes(); !bytes.Equal(got, m) {
			t.Fatalf("step %d: device differs from model at byte %d", i, firstDiff(got, m))
		}
	}
	for _, c := range conns {
		c.disconnect()
	}
}

func TestPipelined(t *testing.T) {
	const maxInFlight = 8
	s := startServer(t, Config{MaxInFlight: maxInFlight})
	d := newMemDevice(t, testSize)
	d.before = func(context.Context, string, int64, int64) error {
		time.Sleep(2 * time.Millisecond) // let requests overlap
		return nil
	}
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")

	// 64 writes to distinct 4 KiB blocks, then 64 reads of them, all sent
	// before any reply is read.
	const n = 64
	handles := map[uint64]int{} // handle → block; reads are n+block
	var batch []byte
	for i := range n {
		batch = append(batch, encodeRequest(cmdWrite, 0, uint64(i+1), uint64(i*4096), 4096)...)
		batch = append(batch, pattern(byte(i), 4096)...)
		handles[uint64(i+1)] = i
	}
	for i := range n {
		batch = append(batch, encodeRequest(cmdRead, 0, uint64(n+i+1), uint64(i*4096+100), 1000)...)
		handles[uint64(n+i+1)] = n + i
	}
	errc := make(chan error, 1)
	go func() { _, err := c.nc.Write(batch); errc <- err }()

	seen := map[uint64]bool{}
	for range 2 * n {
		r, err := c.recv(func(h uint64) int {
			if handles[h] >= n {
				return 1000
			}
			return 0
		})
		if err != nil {
			t.Fatal(err)
		}
		i, ok := handles[r.handle]
		if !ok || seen[r.handle] {
			t.Fatalf("reply for unknown or repeated handle %d", r.handle)
		}
		seen[r.handle] = true
		if r.errno != 0 {
			t.Fatalf("handle %d: errno %d", r.handle, r.errno)
		}
		if i >= n {
			// Reads may overtake the writes they follow: only check that
			// they return the block's new or old (zero) contents.
			b := i - n
			want := pattern(byte(b), 4096)[100:1100]
			if !bytes.Equal(r.data, want) && !bytes.Equal(r.data, make([]byte, 1000)) {
				t.Errorf("read of block %d returned neither old nor new data", b)
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := d.maxFlight.Load(); got < 2 || got > maxInFlight {
		t.Errorf("device saw up to %d calls at once, want 2..%d", got, maxInFlight)
	}
	for i := range n {
		if got := c.read(uint64(i*4096), 4096); !bytes.Equal(got, pattern(byte(i), 4096)) {
			t.Errorf("block %d differs after pipelined writes", i)
		}
	}
	c.disconnect()
}

// TestConcurrentUnalignedWrites pipelines one-byte writes to every byte of a
// few sectors, from two connections: the read-modify-writes must not lose
// each other's bytes.
func TestConcurrentUnalignedWrites(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, 4096)
	d.before = func(_ context.Context, op string, _, _ int64) error {
		if op == "ReadAt" {
			time.Sleep(100 * time.Microsecond) // widen the read-modify-write window
		}
		return nil
	}
	s.export(t, "disk", d, false)
	const span = 3 * SectorSize
	var wg sync.WaitGroup
	for k := range 2 {
		c := connect(t, s.addr, "disk")
		wg.Go(func() {
			var batch []byte
			for i := k; i < span; i += 2 {
				batch = append(batch, encodeRequest(cmdWrite, 0, uint64(i), uint64(256+i), 1)...)
				batch = append(batch, byte(i)|1)
			}
			go c.nc.Write(batch)
			for range span / 2 {
				if r, err := c.recv(nil); err != nil || r.errno != 0 {
					t.Errorf("connection %d: reply %+v, %v", k, r, err)
					return
				}
			}
			c.disconnect()
		})
	}
	wg.Wait()
	got := d.bytes()
	for i := range span {
		if got[256+i] != byte(i)|1 {
			t.Fatalf("byte %d = %#x, want %#x: a read-modify-write lost a concurrent write", 256+i, got[256+i], byte(i)|1)
		}
	}
}

// gate blocks device calls until opened, or until the test ends (so that a
// failing test does not hang in the export's cleanup).
type gate struct {
	testDone <-chan struct{}
	entered  chan struct{} // receives once per blocked call
	open     chan struct{}
}

func newGate(t *testing.T) *gate {
	return &gate{testDone: t.Context().Done(), entered: make(chan struct{}, 100), open: make(chan struct{})}
}

func (g *gate) hook(ops ...string) func(ctx context.Context, op string, off, n int64) error {
	return func(ctx context.Context, op string, _, _ int64) error {
		for _, o := range ops {
			if o == op {
				g.entered <- struct{}{}
				select {
				case <-g.open:
				case <-ctx.Done():
					return ctx.Err()
				case <-g.testDone:
					return errors.New("test ended")
				}
			}
		}
		return nil
	}
}

func TestFlushWaitsForWritesInFlight(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	g := newGate(t)
	d.before = g.hook("WriteAt")
	s.export(t, "disk", d, false)
	writer := connect(t, s.addr, "disk")
	flusher := connect(t, s.addr, "disk")

	wh := writer.send(cmdWrite, 0, 0, 512, pattern(1, 512))
	<-g.entered
	// A flush on another connection waits for the write (multi-conn).
	fh := flusher.send(cmdFlush, 0, 0, 0, nil)
	flusher.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if r, err := flusher.recv(nil); err == nil {
		t.Fatalf("flush answered (%+v) while a write was in flight", r)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("flush: %v", err)
	}
	close(g.open)
	flusher.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r, err := flusher.recv(nil); err != nil || r.errno != 0 || r.handle != fh {
		t.Fatalf("flush reply %+v, %v", r, err)
	}
	if r, err := writer.recv(nil); err != nil || r.errno != 0 || r.handle != wh {
		t.Fatalf("write reply %+v, %v", r, err)
	}
	writer.disconnect()
	flusher.disconnect()
}

// TestFlushReachesDevice: FLUSH, and FUA on a write, make the Device flush
// after the writes they cover; a plain write does not; a failed Device
// flush fails the request with EIO.
func TestFlushReachesDevice(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	var mu sync.Mutex
	var ops []string
	var failFlush atomic.Bool
	d.before = func(_ context.Context, op string, _, _ int64) error {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
		if op == "Flush" && failFlush.Load() {
			return errors.New("device flush failed")
		}
		return nil
	}
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	steps := []struct {
		typ, flags uint16
		length     uint32
		data       []byte
		want       string // the Device calls it makes
	}{
		{cmdWrite, 0, 512, pattern(1, 512), "WriteAt"},
		{cmdFlush, 0, 0, nil, "Flush"},
		{cmdWrite, cmdFlagFUA, 512, pattern(2, 512), "WriteAt Flush"},
		{cmdWriteZeroes, cmdFlagFUA, 4096, nil, "Zero Flush"},
		{cmdTrim, cmdFlagFUA, 4096, nil, "Zero Flush"},
		{cmdRead, cmdFlagFUA, 512, nil, "ReadAt"},
	}
	for _, st := range steps {
		mu.Lock()
		ops = nil
		mu.Unlock()
		h := c.send(st.typ, st.flags, 0, st.length, st.data)
		if r, err := c.recv(func(uint64) int {
			if st.typ == cmdRead {
				return int(st.length)
			}
			return 0
		}); err != nil || r.errno != 0 || r.handle != h {
			t.Fatalf("%s: reply %+v, %v", cmdName(st.typ), r, err)
		}
		mu.Lock()
		got := strings.Join(ops, " ")
		mu.Unlock()
		if got != st.want {
			t.Errorf("%s (flags %#x): Device calls %q, want %q", cmdName(st.typ), st.flags, got, st.want)
		}
	}
	failFlush.Store(true)
	h := c.send(cmdFlush, 0, 0, 0, nil)
	if r, err := c.recv(nil); err != nil || r.errno != errIO || r.handle != h {
		t.Fatalf("flush with a failing Device: reply %+v, %v; want EIO", r, err)
	}
	c.disconnect()
}

func TestFlushIgnoresLaterWrites(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	g := newGate(t)
	d.before = g.hook("WriteAt")
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	// The flush comes first, then a write that blocks: the flush is answered
	// anyway.
	fh := c.send(cmdFlush, 0, 0, 0, nil)
	if r, err := c.recv(nil); err != nil || r.handle != fh || r.errno != 0 {
		t.Fatalf("flush reply %+v, %v", r, err)
	}
	wh := c.send(cmdWrite, 0, 0, 512, pattern(1, 512))
	<-g.entered
	fh2 := c.send(cmdFlush, 0, 0, 0, nil)
	close(g.open)
	got := map[uint64]bool{}
	for range 2 {
		r, err := c.recv(nil)
		if err != nil || r.errno != 0 {
			t.Fatalf("reply %+v, %v", r, err)
		}
		got[r.handle] = true
	}
	if !got[wh] || !got[fh2] {
		t.Errorf("replies for %v, want write %d and flush %d", got, wh, fh2)
	}
	c.disconnect()
}

func TestDisconnectAnswersOutstanding(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	d.before = func(context.Context, string, int64, int64) error {
		time.Sleep(50 * time.Millisecond)
		return nil
	}
	s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	batch := append(encodeRequest(cmdWrite, 0, 7, 0, 512), pattern(4, 512)...)
	batch = append(batch, encodeRequest(cmdDisc, 0, 8, 0, 0)...)
	c.write(batch)
	if r, err := c.recv(nil); err != nil || r.handle != 7 || r.errno != 0 {
		t.Fatalf("write reply after DISC: %+v, %v", r, err)
	}
	c.expectEOF()
	if got := d.bytes()[:512]; !bytes.Equal(got, pattern(4, 512)) {
		t.Errorf("write before DISC was not applied")
	}
}

func TestRemoveExportWhileConnected(t *testing.T) {
	s := startServer(t, Config{})
	d := newMemDevice(t, testSize)
	g := newGate(t)
	d.before = g.hook("WriteAt")
	remove := s.export(t, "disk", d, false)
	c := connect(t, s.addr, "disk")
	idle := connect(t, s.addr, "disk")

	wh := c.send(cmdWrite, 0, 0, 512, pattern(6, 512))
	<-g.entered
	removed := make(chan struct{})
	go func() { remove(); close(removed) }()
	select {
	case <-removed:
		t.Fatal("remove returned while a write was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	// New clients no longer see it.
	nc := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	if _, typ := nc.info(optGo, "disk"); typ != repErrUnknown {
		t.Errorf("NBD_OPT_GO on a removed export: %#x, want ERR_UNKNOWN", typ)
	}

	close(g.open)
	// The write in flight completes and is answered, then the connection
	// closes.
	if r, err := c.recv(nil); err != nil || r.handle != wh || r.errno != 0 {
		t.Fatalf("write reply during remove: %+v, %v", r, err)
	}
	c.expectEOF()
	idle.expectEOF()
	<-removed
	calls := d.calls.Load()
	remove() // idempotent
	if got := d.bytes()[:512]; !bytes.Equal(got, pattern(6, 512)) {
		t.Errorf("write in flight at remove was not applied")
	}

	// The name can be exported again.
	d2 := newMemDevice(t, 4096)
	s.export(t, "disk", d2, false)
	c2 := connect(t, s.addr, "disk")
	c2.mustDo(cmdWrite, 0, 0, 512, pattern(1, 512))
	c2.disconnect()
	if d.calls.Load() != calls {
		t.Errorf("device called after remove returned")
	}
}

func TestRemoveExportDuringHandshake(t *testing.T) {
	s := startServer(t, Config{})
	remove := s.export(t, "disk", newMemDevice(t, testSize), false)
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	if _, typ := c.info(optInfo, "disk"); typ != repAck {
		t.Fatalf("NBD_OPT_INFO: %#x", typ)
	}
	remove()
	if _, typ := c.info(optGo, "disk"); typ != repErrUnknown {
		t.Errorf("NBD_OPT_GO after remove: %#x, want ERR_UNKNOWN", typ)
	}
}

func TestServeShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{})
	d := newMemDevice(t, testSize)
	g := newGate(t)
	d.before = g.hook("ReadAt")
	remove, err := s.Export("disk", d, false)
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	c := connect(t, ln.Addr().String(), "disk")
	h := c.send(cmdRead, 0, 0, 512, nil)
	<-g.entered
	cancel()
	// The read in flight is cancelled and answered with ESHUTDOWN.
	if r, err := c.recv(nil); err != nil || r.handle != h || r.errno != errShutdown {
		t.Fatalf("reply during shutdown: %+v, %v; want ESHUTDOWN", r, err)
	}
	c.expectEOF()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Errorf("listener still accepts after Serve returned")
	}
}

// failingListener fails Accept with a permanent error.
type failingListener struct{ net.Listener }

var errListenerBroken = errors.New("listener broken")

func (failingListener) Accept() (net.Conn, error) { return nil, errListenerBroken }

func TestServeListenerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{})
	if err := s.Serve(t.Context(), failingListener{ln}); !errors.Is(err, errListenerBroken) {
		t.Errorf("Serve() = %v, want %v", err, errListenerBroken)
	}
}

func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := startServerOn(t, Config{}, ln)
	d := newMemDevice(t, testSize)
	s.export(t, "disk", d, false)
	c := dial(t, "unix", path, clientFixedNewstyle|clientNoZeroes)
	c.goExport("disk")
	c.mustDo(cmdWrite, 0, 1, 3, []byte("abc"))
	if got := c.read(0, 5); !bytes.Equal(got, []byte("\x00abc\x00")) {
		t.Errorf("read over unix socket = %q", got)
	}
	c.disconnect()
}

func TestLimiter(t *testing.T) {
	l := newLimiter(2, 100)
	never := make(chan struct{})
	if !l.acquire(never, 150) {
		t.Fatal("acquire(150) with nothing in flight = false; one request is always admitted")
	}
	stop := make(chan struct{})
	got := make(chan bool)
	go func() { got <- l.acquire(stop, 10) }()
	select {
	case <-got:
		t.Fatal("acquire(10) admitted over the byte budget")
	case <-time.After(50 * time.Millisecond):
	}
	l.release(150)
	if !<-got {
		t.Fatal("acquire(10) = false after release")
	}
	if !l.acquire(never, 90) {
		t.Fatal("acquire(90) = false within budget")
	}
	// Two in flight: the count bound holds even for a request with no bytes.
	go func() { got <- l.acquire(stop, 0) }()
	select {
	case <-got:
		t.Fatal("acquire admitted a third request with MaxInFlight 2")
	case <-time.After(50 * time.Millisecond):
	}
	close(stop)
	if <-got {
		t.Error("acquire = true after stop, want false")
	}
}
