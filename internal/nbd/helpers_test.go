package nbd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memDevice is an in-memory Device that reports any access breaking the
// Device contract (unaligned or out of range) as a test error.
type memDevice struct {
	t testing.TB

	mu   sync.RWMutex
	data []byte

	// Hooks, set before use. before runs at the start of every call; a
	// non-nil error from it fails the call.
	before func(ctx context.Context, op string, off, n int64) error

	reads, writes, zeros, flushes atomic.Int64
	inFlight, maxFlight           atomic.Int64
	calls                         atomic.Int64 // every call, for "no calls after remove"
}

var _ Device = (*memDevice)(nil)

func newMemDevice(t testing.TB, size int64) *memDevice {
	return &memDevice{t: t, data: make([]byte, size)}
}

func (d *memDevice) Size() int64 { return int64(len(d.data)) }

func (d *memDevice) enter(ctx context.Context, op string, off, n int64) error {
	d.calls.Add(1)
	cur := d.inFlight.Add(1)
	for {
		m := d.maxFlight.Load()
		if cur <= m || d.maxFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	if off%SectorSize != 0 || n%SectorSize != 0 || off < 0 || n < 0 || off+n > int64(len(d.data)) {
		d.t.Errorf("memDevice.%s(off %d, n %d): unaligned or out of range (size %d)", op, off, n, len(d.data))
		return fmt.Errorf("memDevice: bad %s(%d, %d)", op, off, n)
	}
	if d.before != nil {
		return d.before(ctx, op, off, n)
	}
	return nil
}

func (d *memDevice) exit() { d.inFlight.Add(-1) }

func (d *memDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	defer d.exit()
	d.reads.Add(1)
	if err := d.enter(ctx, "ReadAt", off, int64(len(p))); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	copy(p, d.data[off:])
	return nil
}

func (d *memDevice) WriteAt(ctx context.Context, p []byte, off int64) error {
	defer d.exit()
	d.writes.Add(1)
	if err := d.enter(ctx, "WriteAt", off, int64(len(p))); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data[off:], p)
	return nil
}

func (d *memDevice) Zero(ctx context.Context, off, n int64) error {
	defer d.exit()
	d.zeros.Add(1)
	if err := d.enter(ctx, "Zero", off, n); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.data[off : off+n])
	return nil
}

func (d *memDevice) Flush(ctx context.Context) error {
	defer d.exit()
	d.flushes.Add(1)
	return d.enter(ctx, "Flush", 0, 0)
}

// bytes returns a copy of the device's contents.
func (d *memDevice) bytes() []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return bytes.Clone(d.data)
}

func (d *memDevice) fill(b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.data, b)
}

// testServer is a Server serving on a 127.0.0.1 port it picked.
type testServer struct {
	*Server
	addr string
}

// startServer serves a new Server on 127.0.0.1 and stops it at cleanup.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServerOn(t, cfg, ln)
}

func startServerOn(t *testing.T, cfg Config, ln net.Listener) *testServer {
	t.Helper()
	s := NewServer(cfg)
	serve(t, s, ln)
	return &testServer{Server: s, addr: ln.Addr().String()}
}

// serve runs s.Serve on ln until the test ends.
func serve(t *testing.T, s *Server, ln net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve() = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
}

// export adds an export and removes it at cleanup.
func (s *testServer) export(t *testing.T, name string, d Device, readOnly bool) (remove func()) {
	t.Helper()
	remove, err := s.Export(name, d, readOnly)
	if err != nil {
		t.Fatalf("Export(%q) = %v", name, err)
	}
	t.Cleanup(remove)
	return remove
}

// client is a tiny hand-written NBD client, enough to drive every path.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader

	handshakeFlags uint16
	next           uint64 // next handle
}

// dialRaw connects and reads the server's greeting, sending nothing.
func dialRaw(t testing.TB, network, addr string) *client {
	t.Helper()
	nc, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc), next: 1}
	var hello [18]byte
	if _, err := io.ReadFull(c.br, hello[:]); err != nil {
		t.Fatalf("reading greeting: %v", err)
	}
	if m := be.Uint64(hello[0:]); m != magicNBD {
		t.Fatalf("greeting magic %#x, want NBDMAGIC", m)
	}
	if m := be.Uint64(hello[8:]); m != magicOption {
		t.Fatalf("greeting second magic %#x, want IHAVEOPT", m)
	}
	c.handshakeFlags = be.Uint16(hello[16:])
	return c
}

// dial connects and sends the client flags.
func dial(t testing.TB, network, addr string, clientFlags uint32) *client {
	t.Helper()
	c := dialRaw(t, network, addr)
	c.write(be.AppendUint32(nil, clientFlags))
	return c
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

func encodeOption(opt uint32, data []byte) []byte {
	b := be.AppendUint64(nil, magicOption)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func encodeInfoRequest(name string, reqs ...uint16) []byte {
	b := be.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = be.AppendUint16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = be.AppendUint16(b, r)
	}
	return b
}

func (c *client) option(opt uint32, data []byte) { c.t.Helper(); c.write(encodeOption(opt, data)) }

type optReply struct {
	opt, typ uint32
	data     []byte
}

func (c *client) readOptReply() optReply {
	c.t.Helper()
	var h [20]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("reading option reply: %v", err)
	}
	if m := be.Uint64(h[0:]); m != magicOptReply {
		c.t.Fatalf("option reply magic %#x", m)
	}
	r := optReply{opt: be.Uint32(h[8:]), typ: be.Uint32(h[12:]), data: make([]byte, be.Uint32(h[16:]))}
	if _, err := io.ReadFull(c.br, r.data); err != nil {
		c.t.Fatalf("reading option reply data: %v", err)
	}
	return r
}

// exportInfo is what NBD_OPT_INFO and NBD_OPT_GO reported.
type exportInfo struct {
	size                 uint64
	flags                uint16
	minBS, prefBS, maxBS uint32
	name                 string
	hasName              bool
}

// info sends NBD_OPT_INFO or NBD_OPT_GO and reads the replies up to the
// final one, whose type it returns.
func (c *client) info(opt uint32, name string, reqs ...uint16) (exportInfo, uint32) {
	c.t.Helper()
	c.option(opt, encodeInfoRequest(name, reqs...))
	var ei exportInfo
	for {
		r := c.readOptReply()
		if r.opt != opt {
			c.t.Fatalf("reply for option %d, want %d", r.opt, opt)
		}
		if r.typ != repInfo {
			return ei, r.typ
		}
		if len(r.data) < 2 {
			c.t.Fatalf("NBD_REP_INFO of %d bytes", len(r.data))
		}
		switch typ := be.Uint16(r.data); typ {
		case infoExport:
			if len(r.data) != 12 {
				c.t.Fatalf("NBD_INFO_EXPORT of %d bytes", len(r.data))
			}
			ei.size, ei.flags = be.Uint64(r.data[2:]), be.Uint16(r.data[10:])
		case infoBlockSize:
			if len(r.data) != 14 {
				c.t.Fatalf("NBD_INFO_BLOCK_SIZE of %d bytes", len(r.data))
			}
			ei.minBS, ei.prefBS, ei.maxBS = be.Uint32(r.data[2:]), be.Uint32(r.data[6:]), be.Uint32(r.data[10:])
		case infoName:
			ei.name, ei.hasName = string(r.data[2:]), true
		default:
			c.t.Fatalf("unexpected info type %d", typ)
		}
	}
}

// goExport enters transmission on name with NBD_OPT_GO.
func (c *client) goExport(name string) exportInfo {
	c.t.Helper()
	ei, typ := c.info(optGo, name, infoBlockSize)
	if typ != repAck {
		c.t.Fatalf("NBD_OPT_GO(%q) ended with %#x, want ACK", name, typ)
	}
	return ei
}

// connect dials addr and enters transmission on name.
func connect(t testing.TB, addr, name string) *client {
	t.Helper()
	c := dial(t, "tcp", addr, clientFixedNewstyle|clientNoZeroes)
	c.goExport(name)
	return c
}

func encodeRequest(typ, flags uint16, handle, off uint64, length uint32) []byte {
	b := be.AppendUint32(nil, magicRequest)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, handle)
	b = be.AppendUint64(b, off)
	return be.AppendUint32(b, length)
}

// send sends a request (with payload for a write) and returns its handle.
func (c *client) send(typ, flags uint16, off uint64, length uint32, payload []byte) uint64 {
	c.t.Helper()
	h := c.next
	c.next++
	c.write(append(encodeRequest(typ, flags, h, off, length), payload...))
	return h
}

type simpleReply struct {
	errno  uint32
	handle uint64
	data   []byte
}

// recv reads one simple reply; dataLen gives the payload length of a
// successful reply by handle (reads).
func (c *client) recv(dataLen func(handle uint64) int) (simpleReply, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return simpleReply{}, err
	}
	if m := be.Uint32(h[0:]); m != magicReply {
		return simpleReply{}, fmt.Errorf("reply magic %#x", m)
	}
	r := simpleReply{errno: be.Uint32(h[4:]), handle: be.Uint64(h[8:])}
	if r.errno == 0 && dataLen != nil {
		r.data = make([]byte, dataLen(r.handle))
		if _, err := io.ReadFull(c.br, r.data); err != nil {
			return r, err
		}
	}
	return r, nil
}

// do sends one request and waits for its reply.
func (c *client) do(typ, flags uint16, off uint64, length uint32, payload []byte) (errno uint32, data []byte) {
	c.t.Helper()
	h := c.send(typ, flags, off, length, payload)
	r, err := c.recv(func(uint64) int {
		if typ == cmdRead {
			return int(length)
		}
		return 0
	})
	if err != nil {
		c.t.Fatalf("%s(off %d, len %d): %v", cmdName(typ), off, length, err)
	}
	if r.handle != h {
		c.t.Fatalf("reply handle %d, want %d", r.handle, h)
	}
	return r.errno, r.data
}

func (c *client) read(off uint64, n uint32) []byte {
	c.t.Helper()
	errno, data := c.do(cmdRead, 0, off, n, nil)
	if errno != 0 {
		c.t.Fatalf("read(off %d, len %d): errno %d", off, n, errno)
	}
	return data
}

func (c *client) mustDo(typ, flags uint16, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	if errno, _ := c.do(typ, flags, off, length, payload); errno != 0 {
		c.t.Fatalf("%s(off %d, len %d, flags %#x): errno %d", cmdName(typ), off, length, flags, errno)
	}
}

// disconnect sends NBD_CMD_DISC and waits for the server to close.
func (c *client) disconnect() {
	c.t.Helper()
	c.write(encodeRequest(cmdDisc, 0, 0, 0, 0))
	c.expectEOF()
}

// expectEOF reads until the server closes the connection; nothing more may
// arrive.
func (c *client) expectEOF() {
	c.t.Helper()
	b, err := io.ReadAll(c.br)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(b) != 0 {
		c.t.Fatalf("%d unexpected bytes before close: %x", len(b), b[:min(len(b), 64)])
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// pattern returns n bytes that differ from their neighbours and from other
// seeds.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)*7
	}
	return b
}
