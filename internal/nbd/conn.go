package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

var be = binary.BigEndian

// stopGrace is how long replies may still take to write once a connection is
// stopped (export removed, server shutting down): a client that does not read
// them cannot hold up the removal longer.
const stopGrace = 5 * time.Second

// errAbort ends a connection whose client sent NBD_OPT_ABORT.
var errAbort = errors.New("client aborted the handshake")

// conn is one client connection.
type conn struct {
	s    *Server
	nc   net.Conn
	br   *bufio.Reader
	log  *slog.Logger
	exp  *export       // set by Server.attach, under Server.mu
	done chan struct{} // closed when the connection is finished

	mu      sync.Mutex // guards stopped and deadline changes
	stopped bool
	stopCh  chan struct{} // closed by stop

	wmu  sync.Mutex // serialises replies
	werr error      // first reply write error, guarded by wmu
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	c := &conn{
		s:      s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 64<<10),
		log:    s.log.With("remote", remoteAddr(nc)),
		done:   make(chan struct{}),
		stopCh: make(chan struct{}),
	}
	defer close(c.done)
	defer nc.Close()
	defer s.detach(c)
	stopOnCancel := context.AfterFunc(ctx, c.stop)
	defer stopOnCancel()

	c.setDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	e, err := c.handshake()
	switch {
	case errors.Is(err, errAbort):
		return
	case err != nil:
		c.logEnd("nbd: handshake failed", err)
		return
	}
	c.setDeadline(time.Time{})
	c.log = c.log.With("export", logName(e.name))
	c.log.Debug("nbd: transmission started")
	if err := c.transmit(ctx); err != nil {
		c.logEnd("nbd: connection failed", err)
		return
	}
	c.log.Debug("nbd: connection closed")
}

func remoteAddr(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "unix"
}

// logEnd logs why a connection ended, unless the server ended it.
func (c *conn) logEnd(msg string, err error) {
	if c.isStopped() {
		c.log.Debug(msg, "err", err)
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		// The client hung up; not a failure worth more than debug.
		c.log.Debug(msg, "err", err)
		return
	}
	c.log.Info(msg, "err", err)
}

// stop makes the connection finish: reads fail at once, so no new request is
// taken; requests in flight still complete and get their replies, within
// stopGrace. Idempotent.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	close(c.stopCh)
	now := time.Now()
	c.nc.SetReadDeadline(now)
	c.nc.SetWriteDeadline(now.Add(stopGrace))
}

func (c *conn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// setDeadline sets the connection's deadline unless stop has set its own.
func (c *conn) setDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.nc.SetDeadline(t)
	}
}

// handshake runs the fixed newstyle handshake and option haggling. It
// returns the export the client chose, or errAbort after NBD_OPT_ABORT.
func (c *conn) handshake() (*export, error) {
	var hello [18]byte
	be.PutUint64(hello[0:], magicNBD)
	be.PutUint64(hello[8:], magicOption)
	be.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(hello[:]); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, err
	}
	clientFlags := be.Uint32(cf[:])
	if unknown := clientFlags &^ (clientFixedNewstyle | clientNoZeroes); unknown != 0 {
		// The protocol requires dropping the connection.
		return nil, fmt.Errorf("unknown client flags %#x", unknown)
	}
	noZeroes := clientFlags&clientNoZeroes != 0

	for {
		var h [16]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		if m := be.Uint64(h[0:]); m != magicOption {
			return nil, fmt.Errorf("bad option magic %#x", m)
		}
		opt, n := be.Uint32(h[8:]), be.Uint32(h[12:])
		if n > maxOptionDataLength {
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return nil, err
			}
			if opt == optExportName {
				return nil, fmt.Errorf("export name of %d bytes", n)
			}
			if err := c.optReply(opt, repErrTooBig, []byte("option data too long")); err != nil {
				return nil, err
			}
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return nil, err
		}

		switch opt {
		case optExportName:
			e := c.s.attach(string(data), c)
			if e == nil {
				// This option cannot carry an error: the protocol says to
				// terminate the session.
				return nil, fmt.Errorf("NBD_OPT_EXPORT_NAME: no export %q", data)
			}
			reply := make([]byte, 10, 10+124)
			be.PutUint64(reply[0:], uint64(e.size))
			be.PutUint16(reply[8:], e.flags)
			if !noZeroes {
				reply = reply[:10+124]
			}
			if _, err := c.nc.Write(reply); err != nil {
				return nil, err
			}
			return e, nil

		case optAbort:
			// Data, if any, is ignored as the protocol asks. The client may
			// already be gone, so a failed reply does not matter.
			_ = c.optReply(opt, repAck, nil)
			return nil, errAbort

		case optList:
			// NBD has no authentication: an export's name is the only
			// secret that keeps a client from a disk, so it is never listed.
			if err := c.optReply(opt, repErrPolicy, []byte("export listing is disabled")); err != nil {
				return nil, err
			}

		case optInfo, optGo:
			name, reqs, ok := parseInfoRequest(data)
			if !ok {
				if err := c.optReply(opt, repErrInvalid, []byte("malformed NBD_OPT_INFO/NBD_OPT_GO data")); err != nil {
					return nil, err
				}
				continue
			}
			var e *export
			if opt == optGo {
				e = c.s.attach(name, c)
			} else {
				e = c.s.lookup(name)
			}
			if e == nil {
				// The same answer for a name never exported and one removed,
				// so a client learns nothing from a wrong guess.
				if err := c.optReply(opt, repErrUnknown, []byte("no such export")); err != nil {
					return nil, err
				}
				continue
			}
			if err := c.sendInfo(opt, e, reqs); err != nil {
				return nil, err
			}
			if opt == optGo {
				return e, nil
			}

		case optStartTLS, optStructuredReply, optListMetaContext, optSetMetaContext, optExtendedHeaders:
			// No TLS (see Security in the package doc), and simple
			// replies only, which rules out metadata contexts.
			if err := c.optReply(opt, repErrUnsup, nil); err != nil {
				return nil, err
			}

		default:
			if err := c.optReply(opt, repErrUnsup, nil); err != nil {
				return nil, err
			}
		}
	}
}

// parseInfoRequest parses the data of NBD_OPT_INFO and NBD_OPT_GO: a 32-bit
// name length, the name, a 16-bit count and that many 16-bit info types.
func parseInfoRequest(data []byte) (name string, reqs []uint16, ok bool) {
	if len(data) < 6 {
		return "", nil, false
	}
	n := be.Uint32(data)
	if uint64(n) > uint64(len(data)-6) {
		return "", nil, false
	}
	name = string(data[4 : 4+n])
	rest := data[4+n:]
	count := int(be.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return "", nil, false
	}
	for i := range count {
		reqs = append(reqs, be.Uint16(rest[2*i:]))
	}
	return name, reqs, true
}

// sendInfo answers a successful NBD_OPT_INFO or NBD_OPT_GO: NBD_INFO_EXPORT
// and NBD_INFO_BLOCK_SIZE always (the protocol lets a server send the latter
// unasked), NBD_INFO_NAME when asked, then the final ACK. No description is
// offered.
func (c *conn) sendInfo(opt uint32, e *export, reqs []uint16) error {
	var ex [12]byte
	be.PutUint16(ex[0:], infoExport)
	be.PutUint64(ex[2:], uint64(e.size))
	be.PutUint16(ex[10:], e.flags)
	if err := c.optReply(opt, repInfo, ex[:]); err != nil {
		return err
	}
	maxReq := min(advertisedMaxRequest, c.s.cfg.MaxRequest)
	var bs [14]byte
	be.PutUint16(bs[0:], infoBlockSize)
	be.PutUint32(bs[2:], SectorSize)
	be.PutUint32(bs[6:], uint32(min(preferredBlockSize, maxReq)))
	be.PutUint32(bs[10:], uint32(maxReq))
	if err := c.optReply(opt, repInfo, bs[:]); err != nil {
		return err
	}
	for _, r := range reqs {
		if r == infoName {
			b := make([]byte, 2+len(e.name))
			be.PutUint16(b, infoName)
			copy(b[2:], e.name)
			if err := c.optReply(opt, repInfo, b); err != nil {
				return err
			}
			break
		}
	}
	return c.optReply(opt, repAck, nil)
}

// optReply sends one option reply.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, 20+len(data))
	be.PutUint64(b[0:], magicOptReply)
	be.PutUint32(b[8:], opt)
	be.PutUint32(b[12:], typ)
	be.PutUint32(b[16:], uint32(len(data)))
	copy(b[20:], data)
	_, err := c.nc.Write(b)
	return err
}

// request is a transmission request header.
type request struct {
	flags  uint16
	typ    uint16
	handle uint64
	off    uint64
	length uint32
}

// transmit reads requests and runs each in its own goroutine until the client
// disconnects or the connection is stopped; it returns after every request
// has been answered (or its reply has failed). A nil error means a clean end.
func (c *conn) transmit(ctx context.Context) error {
	e := c.exp
	lim := newLimiter(c.s.cfg.MaxInFlight, c.s.cfg.MaxInFlightBytes)
	var wg sync.WaitGroup
	defer wg.Wait()

	var h [28]byte
	for {
		select {
		case <-c.stopCh:
			return nil // requests already buffered are not started either
		default:
		}
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return c.readErr(err)
		}
		if m := be.Uint32(h[0:]); m != magicRequest {
			return fmt.Errorf("bad request magic %#x", m)
		}
		r := request{
			flags:  be.Uint16(h[4:]),
			typ:    be.Uint16(h[6:]),
			handle: be.Uint64(h[8:]),
			off:    be.Uint64(h[16:]),
			length: be.Uint32(h[24:]),
		}
		if c.log.Enabled(ctx, slog.LevelDebug) {
			c.log.LogAttrs(ctx, slog.LevelDebug, "nbd: request", slog.String("op", cmdName(r.typ)),
				slog.Uint64("flags", uint64(r.flags)), slog.Uint64("off", r.off), slog.Uint64("len", uint64(r.length)))
		}
		if r.typ == cmdDisc {
			return nil // the deferred Wait answers everything outstanding first
		}

		errno := c.check(r)
		var cost int64 // buffer bytes the request holds while in flight
		if errno == 0 {
			switch r.typ {
			case cmdRead:
				cost = alignUp(int64(r.off)+int64(r.length)) - alignDown(int64(r.off))
			case cmdWrite:
				cost = int64(r.length)
			}
		}
		if r.typ == cmdWrite && errno != 0 {
			// Refused: consume the payload without buffering it.
			if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
				return c.readErr(err)
			}
		}
		if !lim.acquire(c.stopCh, cost) {
			return nil
		}
		var payload []byte
		if r.typ == cmdWrite && errno == 0 {
			payload = make([]byte, r.length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				lim.release(cost)
				return c.readErr(err)
			}
		}

		// Register writes, and snapshot them for a flush, in request order,
		// here in the reading goroutine.
		var writeDone func()
		var flushWaits []chan struct{}
		if errno == 0 {
			switch r.typ {
			case cmdWrite, cmdTrim, cmdWriteZeroes:
				writeDone = e.writes.begin()
			case cmdFlush:
				flushWaits = e.writes.inFlight()
			}
		}
		wg.Go(func() {
			defer lim.release(cost)
			errno, data := errno, []byte(nil)
			if errno == 0 {
				errno, data = c.execute(ctx, r, payload, flushWaits)
			}
			if writeDone != nil {
				writeDone()
			}
			c.reply(r.handle, errno, data)
		})
	}
}

// readErr turns a read failure into transmit's result: nil when stop caused
// it.
func (c *conn) readErr(err error) error {
	if c.isStopped() && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// check validates a request before anything is read or run, and returns the
// error to answer with, or 0.
func (c *conn) check(r request) uint32 {
	e := c.exp
	allowed := cmdFlagFUA
	switch r.typ {
	case cmdRead, cmdWrite, cmdFlush, cmdTrim:
	case cmdWriteZeroes:
		allowed |= cmdFlagNoHole | cmdFlagFastZero
	default:
		// NBD_CMD_CACHE (not advertised), NBD_CMD_BLOCK_STATUS (no metadata
		// context can be negotiated) and unknown commands.
		return errInval
	}
	if r.flags&^allowed != 0 {
		return errInval
	}
	if e.readOnly && (r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes) {
		return errPerm
	}
	if r.typ == cmdFlush {
		return 0 // offset and length are reserved
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && int64(r.length) > c.s.cfg.MaxRequest {
		return errInval
	}
	if size := uint64(e.size); r.off > size || uint64(r.length) > size-r.off {
		if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

// execute runs a checked request against the export.
func (c *conn) execute(ctx context.Context, r request, payload []byte, flushWaits []chan struct{}) (errno uint32, data []byte) {
	e := c.exp
	off, n := int64(r.off), int64(r.length)
	var err error
	switch r.typ {
	case cmdRead:
		data, err = e.read(ctx, off, n)
	case cmdWrite:
		err = e.write(ctx, off, payload)
	case cmdWriteZeroes:
		// NO_HOLE needs nothing more: a zeroed range in the engine is as
		// writable as any other. FAST_ZERO: Zero is cheap by contract.
		err = e.zero(ctx, off, n)
	case cmdTrim:
		err = e.trim(ctx, off, n)
	case cmdFlush:
		if err = wait(ctx, flushWaits); err == nil {
			err = e.dev.Flush(ctx)
		}
	}
	if err == nil && r.flags&cmdFlagFUA != 0 && r.typ != cmdRead && r.typ != cmdFlush {
		// Forced unit access: this write is durable before its reply. The
		// Device flushes everything it holds, which includes it.
		err = e.dev.Flush(ctx)
	}
	if err == nil {
		return 0, data
	}
	if ctx.Err() != nil {
		return errShutdown, nil
	}
	errno = errIO
	switch {
	case errors.Is(err, ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG):
		errno = errNoSpc
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS):
		// The store behind the device may not write: not a media error.
		errno = errPerm
	}
	c.log.Warn("nbd: device error", "op", cmdName(r.typ), "off", r.off, "len", r.length, "errno", errno, "err", err)
	return errno, nil
}

// reply sends a simple reply, with data after a successful read. After a
// failed write the connection is closed: the stream is no longer framed.
func (c *conn) reply(handle uint64, errno uint32, data []byte) {
	var h [16]byte
	be.PutUint32(h[0:], magicReply)
	be.PutUint32(h[4:], errno)
	be.PutUint64(h[8:], handle)
	bufs := net.Buffers{h[:]}
	if errno == 0 && len(data) > 0 {
		bufs = append(bufs, data)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return
	}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		c.werr = err
		if !c.isStopped() {
			c.log.Debug("nbd: reply failed", "err", err)
		}
		c.nc.Close()
	}
}

// limiter bounds the requests, and the buffer bytes, one connection has in
// flight. Only the connection's reading goroutine acquires.
type limiter struct {
	maxN     int
	maxBytes int64
	wake     chan struct{}

	mu    sync.Mutex
	n     int
	bytes int64
}

func newLimiter(maxN int, maxBytes int64) *limiter {
	return &limiter{maxN: maxN, maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

// acquire waits for room for one request holding cost bytes; a request is
// always admitted when none is in flight. It returns false if stop closes
// first.
func (l *limiter) acquire(stop <-chan struct{}, cost int64) bool {
	for {
		l.mu.Lock()
		if l.n < l.maxN && (l.n == 0 || l.bytes+cost <= l.maxBytes) {
			l.n++
			l.bytes += cost
			l.mu.Unlock()
			return true
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-stop:
			return false
		}
	}
}

func (l *limiter) release(cost int64) {
	l.mu.Lock()
	l.n--
	l.bytes -= cost
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// logName is how logs show an export name. The name is the only key to an
// attached disk, and logs are read by more people than may write disks, so
// they get a prefix: enough to tell connections apart, not to connect.
func logName(name string) string {
	const shown = 9 // "disk-" and 20 bits of the random part
	if len(name) <= shown {
		return name
	}
	return name[:shown] + "…"
}
