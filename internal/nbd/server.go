package nbd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

var (
	// ErrExists is returned by [Server.Export] for a name that is already
	// exported.
	ErrExists = errors.New("nbd: export already exists")
	// ErrNoSpace, wrapped in an error a [Device] returns, is reported to the
	// client as ENOSPC rather than EIO.
	ErrNoSpace = errors.New("nbd: no space left on device")
)

// Device is the storage behind an export; the engine's volume adapter
// implements it. The server calls it from many goroutines at once: one per
// request in flight, across every connection to the export.
//
// Implementations must guarantee:
//   - Offsets and lengths are multiples of [SectorSize] and lie within
//     [0, Size()); the server checks client requests and aligns them first.
//   - WriteAt and Zero are durable when they return nil: the server
//     acknowledges a write only then and has no flush of its own to call.
//   - A ReadAt that starts after a WriteAt or Zero returned sees its data, on
//     whichever connection it arrives (no per-caller cache).
//   - Zero makes the range read as zeros and should cost less than writing
//     zeros: the server advertises fast zeroing (NBD_FLAG_SEND_FAST_ZERO).
//
// The server never runs two WriteAt or Zero calls on overlapping ranges at
// once; a ReadAt may overlap a write in flight and may then see either data.
// The ctx of a call is cancelled when [Server.Serve]'s context is. An error
// that wraps [ErrNoSpace] reaches the client as ENOSPC, one that wraps
// EACCES, EPERM or EROFS as EPERM, any other as EIO.
type Device interface {
	// Size is the export size in bytes, a multiple of SectorSize. The server
	// reads it once, when the export is added.
	Size() int64
	// ReadAt fills p from offset off; no partial results.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at offset off. Once it returns, reads see the
	// write; it need be durable only once a Flush that follows it returns.
	WriteAt(ctx context.Context, p []byte, off int64) error
	// Zero makes n bytes at off read as zeros, durable as WriteAt is.
	Zero(ctx context.Context, off, n int64) error
	// Flush makes every WriteAt and Zero that returned before it durable.
	Flush(ctx context.Context) error
}

// Config configures a [Server]. Start from [DefaultConfig]; zero fields take
// their defaults.
type Config struct {
	// Logger receives connection failures and Device errors, and one debug
	// line per request. Nil discards.
	Logger *slog.Logger
	// MaxRequest is the longest READ or WRITE in bytes; longer ones get
	// EINVAL (the payload of a write is discarded). A multiple of
	// SectorSize. The protocol lets clients that were told no limit send
	// 32 MiB, the default.
	MaxRequest int64
	// MaxInFlight is how many requests one connection may have running at
	// once; further requests wait in the socket.
	MaxInFlight int
	// MaxInFlightBytes bounds the read and write buffers one connection holds
	// at once. At least MaxRequest: one request is always admitted.
	MaxInFlightBytes int64
	// HandshakeTimeout bounds option haggling, from accept to the start of
	// transmission (slow or idle clients).
	HandshakeTimeout time.Duration
}

// DefaultConfig returns the limits deltadisk serve uses.
func DefaultConfig() Config {
	return Config{
		MaxRequest:       32 << 20,
		MaxInFlight:      16,
		MaxInFlightBytes: 64 << 20,
		HandshakeTimeout: 30 * time.Second,
	}
}

// withDefaults returns c with zero fields set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxRequest == 0 {
		c.MaxRequest = d.MaxRequest
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = max(d.MaxInFlightBytes, c.MaxRequest)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	return c
}

// Validate reports a Config that cannot work; zero fields count as their
// defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxRequest < SectorSize || c.MaxRequest%SectorSize != 0 || c.MaxRequest > 1<<31:
		return fmt.Errorf("nbd: config: MaxRequest %d is not a multiple of %d in [%d, 2 GiB]", c.MaxRequest, SectorSize, SectorSize)
	case c.MaxInFlight < 1:
		return fmt.Errorf("nbd: config: MaxInFlight %d is less than 1", c.MaxInFlight)
	case c.MaxInFlightBytes < c.MaxRequest:
		return fmt.Errorf("nbd: config: MaxInFlightBytes %d is less than MaxRequest %d", c.MaxInFlightBytes, c.MaxRequest)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("nbd: config: HandshakeTimeout %v is negative", c.HandshakeTimeout)
	}
	return nil
}

// Server serves exports over NBD. It is safe for concurrent use: exports can
// be added and removed while it serves, and Serve may run on several
// listeners at once (TCP and a unix socket).
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	exports map[string]*export
}

// NewServer returns a Server with no exports. It panics if cfg is invalid
// (see [Config.Validate]): configurations are built by code, not users.
func NewServer(cfg Config) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, exports: make(map[string]*export)}
}

// Export makes d available to clients as name until the returned remove
// function is called. Removing stops reading requests on the export's
// connections, waits for the requests in flight (their Device calls and
// replies), then closes the connections; once it returns the server no longer
// calls d, and name can be exported again. remove may be called more than
// once and from any goroutine; every call returns after the removal is done.
//
// A name already exported gives an error wrapping [ErrExists]. Names are
// 1 to 4096 bytes of UTF-8 without NUL, as the protocol allows.
func (s *Server) Export(name string, d Device, readOnly bool) (remove func(), err error) {
	if name == "" || len(name) > 4096 || !utf8.ValidString(name) || slices.Contains([]byte(name), 0) {
		return nil, fmt.Errorf("nbd: export name %q: must be 1 to 4096 bytes of UTF-8 without NUL", name)
	}
	size := d.Size()
	if size < 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("nbd: export %q: size %d is not a multiple of %d", name, size, SectorSize)
	}
	e := &export{name: name, dev: d, size: size, readOnly: readOnly, conns: make(map[*conn]struct{})}
	e.flags = tfHasFlags | tfSendFlush | tfSendFUA | tfCanMultiConn
	if readOnly {
		e.flags |= tfReadOnly
	} else {
		e.flags |= tfSendTrim | tfSendWriteZeroes | tfSendFastZero
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.exports[name]; ok {
		return nil, fmt.Errorf("export %q: %w", name, ErrExists)
	}
	s.exports[name] = e
	var once sync.Once
	return func() { once.Do(func() { s.remove(e) }) }, nil
}

func (s *Server) remove(e *export) {
	s.mu.Lock()
	if s.exports[e.name] == e {
		delete(s.exports, e.name)
	}
	e.removed = true
	conns := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.stop()
	}
	for _, c := range conns {
		<-c.done
	}
}

// lookup returns the export called name, or nil.
func (s *Server) lookup(name string) *export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exports[name]
}

// attach returns the export called name with c registered on it, so that
// removing the export stops c; nil if there is no such export.
func (s *Server) attach(name string, c *conn) *export {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.exports[name]
	if e == nil || e.removed {
		return nil
	}
	e.conns[c] = struct{}{}
	c.exp = e
	return e
}

func (s *Server) detach(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.exp != nil {
		delete(c.exp.conns, c)
	}
}

// Serve accepts NBD connections on ln (TCP or unix) until ctx is done or ln
// fails, and closes ln. Before returning it stops every connection it
// accepted: requests in flight see a cancelled context and are answered
// (ESHUTDOWN) if the client still reads, then the connections are closed.
// It returns nil once ctx is done, or the listener's error.
//
// On a TCP address other than loopback it logs a warning first: NBD has no
// authentication or encryption, so anyone who can reach the address and
// learns an export's name can read and write that export.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if beyondLoopback(ln.Addr()) {
		s.log.Warn("nbd: serving beyond loopback, without authentication or encryption: "+
			"export names are the only secret, and whoever reaches this address and learns one can read and write that disk; "+
			"keep the address on a trusted network or listen on loopback", "addr", ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopListening := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopListening()

	var (
		wg      sync.WaitGroup
		err     error
		backoff time.Duration
	)
	for {
		nc, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if temporaryAcceptError(aerr) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("nbd: accept", "err", aerr, "retry_in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
				}
				break
			}
			err = aerr
			break
		}
		backoff = 0
		wg.Go(func() { s.serveConn(ctx, nc) })
	}
	cancel()
	ln.Close()
	wg.Wait()
	return err
}

// temporaryAcceptError reports accept errors that say "not now" rather than
// "never": out of descriptors or memory.
func temporaryAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// beyondLoopback reports whether addr is a TCP address that other machines
// may reach: anything but a loopback IP, the unspecified ones (0.0.0.0,
// ::) included.
func beyondLoopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && !a.IP.IsLoopback()
}
