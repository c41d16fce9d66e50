package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testSize = 1 << 20

func TestHandshakeGreeting(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRaw(t, "tcp", s.addr)
	if want := flagFixedNewstyle | flagNoZeroes; c.handshakeFlags != want {
		t.Errorf("handshake flags = %#x, want %#x", c.handshakeFlags, want)
	}
}

func TestHandshakeExportName(t *testing.T) {
	for _, noZeroes := range []bool{true, false} {
		t.Run(map[bool]string{true: "no_zeroes", false: "zeroes"}[noZeroes], func(t *testing.T) {
			s := startServer(t, Config{})
			d := newMemDevice(t, testSize)
			d.fill(pattern(3, testSize))
			s.export(t, "disk", d, false)

			flags := clientFixedNewstyle
			if noZeroes {
				flags |= clientNoZeroes
			}
			c := dial(t, "tcp", s.addr, flags)
			c.option(optExportName, []byte("disk"))
			n := 10
			if !noZeroes {
				n += 124
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(c.br, b); err != nil {
				t.Fatal(err)
			}
			if size := be.Uint64(b); size != testSize {
				t.Errorf("size = %d, want %d", size, testSize)
			}
			wantFlags := tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes | tfCanMultiConn | tfSendFastZero
			if f := be.Uint16(b[8:]); f != wantFlags {
				t.Errorf("transmission flags = %#x, want %#x", f, wantFlags)
			}
			if strings.Trim(string(b[10:]), "\x00") != "" {
				t.Errorf("reserved bytes are not zero: %x", b[10:])
			}
			// Transmission follows at once.
			if got, want := c.read(512, 100), pattern(3, testSize)[512:612]; !cmp.Equal(got, want) {
				t.Errorf("read after NBD_OPT_EXPORT_NAME = %x, want %x", got, want)
			}
			c.disconnect()
		})
	}
}

func TestHandshakeExportNameUnknown(t *testing.T) {
	s := startServer(t, Config{})
	s.export(t, "disk", newMemDevice(t, testSize), false)
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	c.option(optExportName, []byte("nope"))
	// NBD_OPT_EXPORT_NAME cannot carry an error: the server hangs up.
	c.expectEOF()
}

func TestHandshakeGo(t *testing.T) {
	s := startServer(t, Config{})
	s.export(t, "disk", newMemDevice(t, testSize), false)
	s.export(t, "ro", newMemDevice(t, 4096), true)

	tests := []struct {
		name   string
		export string
		reqs   []uint16
		want   exportInfo
	}{
		{
			name:   "writable",
			export: "disk",
			reqs:   []uint16{infoBlockSize},
			want: exportInfo{
				size:  testSize,
				flags: tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes | tfCanMultiConn | tfSendFastZero,
				minBS: 512, prefBS: 64 << 10, maxBS: 4 << 20,
			},
		},
		{
			name:   "read_only_with_name",
			export: "ro",
			reqs:   []uint16{infoName, infoBlockSize, 77}, // 77: unknown, ignored
			want: exportInfo{
				size:  4096,
				flags: tfHasFlags | tfSendFlush | tfSendFUA | tfCanMultiConn | tfReadOnly,
				minBS: 512, prefBS: 64 << 10, maxBS: 4 << 20,
				name: "ro", hasName: true,
			},
		},
		{
			name:   "no_requests",
			export: "disk",
			want: exportInfo{
				size:  testSize,
				flags: tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes | tfCanMultiConn | tfSendFastZero,
				// Sent unasked: the protocol allows it, and clients may use it.
				minBS: 512, prefBS: 64 << 10, maxBS: 4 << 20,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
			got, typ := c.info(optGo, tc.export, tc.reqs...)
			if typ != repAck {
				t.Fatalf("NBD_OPT_GO ended with %#x, want ACK", typ)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(exportInfo{})); diff != "" {
				t.Errorf("NBD_OPT_GO info (-want +got):\n%s", diff)
			}
			c.mustDo(cmdFlush, 0, 0, 0, nil)
			c.disconnect()
		})
	}
}

func TestHandshakeInfoThenGo(t *testing.T) {
	s := startServer(t, Config{MaxRequest: 1 << 20})
	s.export(t, "disk", newMemDevice(t, testSize), false)
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	info, typ := c.info(optInfo, "disk", infoBlockSize)
	if typ != repAck {
		t.Fatalf("NBD_OPT_INFO ended with %#x, want ACK", typ)
	}
	if info.size != testSize || info.maxBS != 1<<20 {
		t.Errorf("NBD_OPT_INFO = size %d max block %d, want %d and %d (MaxRequest)", info.size, info.maxBS, testSize, 1<<20)
	}
	// Still haggling: another option is answered.
	c.option(optList, nil)
	if r := c.readOptReply(); r.typ != repErrPolicy {
		t.Fatalf("NBD_OPT_LIST after INFO: reply %#x, want ERR_POLICY", r.typ)
	}
	c.goExport("disk")
	c.mustDo(cmdWrite, 0, 0, 512, pattern(1, 512))
	c.disconnect()
}

// TestHandshakeListRefused: NBD_OPT_LIST is refused with ERR_POLICY, with
// or without data, and the reply carries no export's name (names are the
// only secret NBD has); haggling goes on and a client that knows a name
// still reaches it.
func TestHandshakeListRefused(t *testing.T) {
	s := startServer(t, Config{})
	names := []string{"zeta", "alpha", "mid"}
	for _, name := range names {
		s.export(t, name, newMemDevice(t, 4096), false)
	}
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	for _, data := range [][]byte{nil, []byte("x")} {
		c.option(optList, data)
		r := c.readOptReply()
		if r.opt != optList || r.typ != repErrPolicy {
			t.Fatalf("NBD_OPT_LIST (data %q): reply to option %d type %#x, want ERR_POLICY", data, r.opt, r.typ)
		}
		for _, name := range names {
			if bytes.Contains(r.data, []byte(name)) {
				t.Errorf("NBD_OPT_LIST refusal %q names export %q", r.data, name)
			}
		}
	}
	c.goExport("mid")
	c.disconnect()
}

// TestHandshakeUnknownLikeRemoved: a name never exported and a name that
// was exported and removed get the very same answer, to NBD_OPT_INFO and
// NBD_OPT_GO alike, so a client learns nothing from a wrong guess.
func TestHandshakeUnknownLikeRemoved(t *testing.T) {
	s := startServer(t, Config{})
	remove := s.export(t, "gone", newMemDevice(t, 4096), false)
	remove()
	for _, opt := range []uint32{optInfo, optGo} {
		var replies []optReply
		for _, name := range []string{"gone", "never"} {
			c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
			c.option(opt, encodeInfoRequest(name, infoName))
			replies = append(replies, c.readOptReply())
			c.nc.Close()
		}
		if replies[0].typ != repErrUnknown || !bytes.Equal(replies[0].data, replies[1].data) || replies[0].typ != replies[1].typ {
			t.Errorf("option %d: removed export answered %#x %q, unknown one %#x %q; want the same ERR_UNKNOWN",
				opt, replies[0].typ, replies[0].data, replies[1].typ, replies[1].data)
		}
	}
}

func TestHandshakeAbort(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	c.option(optAbort, nil)
	if r := c.readOptReply(); r.opt != optAbort || r.typ != repAck {
		t.Errorf("NBD_OPT_ABORT reply = option %d type %#x, want ACK", r.opt, r.typ)
	}
	c.expectEOF()
}

func TestHandshakeRefusals(t *testing.T) {
	s := startServer(t, Config{})
	s.export(t, "disk", newMemDevice(t, testSize), false)

	tests := []struct {
		name string
		opt  uint32
		data []byte
		want uint32
	}{
		{"unknown_export_go", optGo, encodeInfoRequest("nope"), repErrUnknown},
		{"unknown_export_info", optInfo, encodeInfoRequest("nope", infoBlockSize), repErrUnknown},
		{"default_export", optGo, encodeInfoRequest(""), repErrUnknown},
		{"unknown_option", 4242, []byte("whatever"), repErrUnsup},
		{"structured_reply", optStructuredReply, nil, repErrUnsup},
		{"starttls", optStartTLS, nil, repErrUnsup},
		{"set_meta_context", optSetMetaContext, []byte{0, 0, 0, 0}, repErrUnsup},
		{"list_meta_context", optListMetaContext, []byte{0, 0, 0, 0}, repErrUnsup},
		{"extended_headers", optExtendedHeaders, nil, repErrUnsup},
		{"info_too_short", optInfo, []byte{0, 0, 0}, repErrInvalid},
		{"info_name_too_long", optGo, []byte{0, 0, 1, 0, 'd', 0, 0}, repErrInvalid},
		{"info_count_mismatch", optInfo, append(encodeInfoRequest("disk"), 0, 1), repErrInvalid},
		{"option_too_big", optInfo, make([]byte, maxOptionDataLength+1), repErrTooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
			c.option(tc.opt, tc.data)
			r := c.readOptReply()
			if r.opt != tc.opt || r.typ != tc.want {
				t.Errorf("reply = option %d type %#x, want option %d type %#x", r.opt, r.typ, tc.opt, tc.want)
			}
			// The refusal leaves haggling usable.
			c.goExport("disk")
			c.disconnect()
		})
	}
}

func TestHandshakeHangsUp(t *testing.T) {
	s := startServer(t, Config{})
	s.export(t, "disk", newMemDevice(t, testSize), false)

	t.Run("unknown_client_flags", func(t *testing.T) {
		c := dialRaw(t, "tcp", s.addr)
		c.write(be.AppendUint32(nil, clientFixedNewstyle|1<<5))
		c.expectEOF()
	})
	t.Run("bad_option_magic", func(t *testing.T) {
		c := dial(t, "tcp", s.addr, clientFixedNewstyle)
		b := encodeOption(optList, nil)
		b[0] ^= 0xff
		c.write(b)
		c.expectEOF()
	})
	t.Run("export_name_too_long", func(t *testing.T) {
		c := dial(t, "tcp", s.addr, clientFixedNewstyle)
		c.option(optExportName, make([]byte, maxOptionDataLength+1))
		c.expectEOF()
	})
	t.Run("bad_request_magic", func(t *testing.T) {
		c := connect(t, s.addr, "disk")
		b := encodeRequest(cmdRead, 0, 1, 0, 512)
		b[0] ^= 0xff
		c.write(b)
		c.expectEOF()
	})
}

func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, Config{HandshakeTimeout: 100 * time.Millisecond})
	c := dialRaw(t, "tcp", s.addr)
	start := time.Now()
	c.expectEOF() // the client never sends its flags
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle handshake closed after %v, want about 100ms", d)
	}
}

func TestHandshakeWithoutFixedNewstyle(t *testing.T) {
	// Old clients that do not set NBD_FLAG_C_FIXED_NEWSTYLE only send
	// NBD_OPT_EXPORT_NAME; the server answers them the same way.
	s := startServer(t, Config{})
	s.export(t, "disk", newMemDevice(t, testSize), false)
	c := dial(t, "tcp", s.addr, 0)
	c.option(optExportName, []byte("disk"))
	b := make([]byte, 10+124)
	if _, err := io.ReadFull(c.br, b); err != nil {
		t.Fatal(err)
	}
	c.mustDo(cmdFlush, 0, 0, 0, nil)
	c.disconnect()
}

func TestExportErrors(t *testing.T) {
	s := NewServer(Config{})
	if _, err := s.Export("disk", newMemDevice(t, 4096), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Export("disk", newMemDevice(t, 4096), true); !errors.Is(err, ErrExists) {
		t.Errorf("second Export(disk) = %v, want ErrExists", err)
	}
	tests := []struct {
		name string
		size int64
	}{
		{"", 4096},
		{strings.Repeat("x", 4097), 4096},
		{"nul\x00", 4096},
		{"bad\xff", 4096},
		{"odd_size", 1000},
		{"negative_size", -512},
	}
	for _, tc := range tests {
		if _, err := s.Export(tc.name, sizeDevice(tc.size), false); err == nil {
			t.Errorf("Export(%.20q, size %d) = nil error, want one", tc.name, tc.size)
		}
	}
}

// sizeDevice is a Device with only a size.
type sizeDevice int64

func (d sizeDevice) Size() int64 { return int64(d) }
func (sizeDevice) ReadAt(_ context.Context, _ []byte, _ int64) error {
	return errors.New("sizeDevice")
}
func (sizeDevice) WriteAt(_ context.Context, _ []byte, _ int64) error {
	return errors.New("sizeDevice")
}
func (sizeDevice) Zero(_ context.Context, _, _ int64) error { return errors.New("sizeDevice") }
func (sizeDevice) Flush(context.Context) error              { return errors.New("sizeDevice") }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"default", DefaultConfig(), true},
		{"small_request", Config{MaxRequest: 512}, true},
		{"unaligned_request", Config{MaxRequest: 1000}, false},
		{"negative_in_flight", Config{MaxInFlight: -1}, false},
		{"bytes_below_request", Config{MaxRequest: 1 << 20, MaxInFlightBytes: 4096}, false},
		{"negative_timeout", Config{HandshakeTimeout: -time.Second}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
			}
		})
	}
}

// addrListener listens on loopback but says it listens on addr, to show
// Serve an address a test may not bind.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// TestServeWarnsBeyondLoopback: serving on a TCP address other machines
// may reach logs that NBD has no authentication and that export names are
// the only secret; loopback and unix sockets log nothing of the kind.
func TestServeWarnsBeyondLoopback(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		warn bool
	}{
		{"any", &net.TCPAddr{IP: net.IPv4zero, Port: 10809}, true},
		{"any6", &net.TCPAddr{IP: net.IPv6unspecified, Port: 10809}, true},
		{"lan", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 10809}, true},
		{"loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10809}, false},
		{"loopback6", &net.TCPAddr{IP: net.IPv6loopback, Port: 10809}, false},
		{"unix", &net.UnixAddr{Name: "/run/deltadisk/nbd.sock", Net: "unix"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			s := NewServer(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if _, err := s.Export("disk", newMemDevice(t, 4096), false); err != nil {
				t.Fatal(err)
			}
			serve(t, s, addrListener{ln, tc.addr})
			// A served connection shows Serve is past its start.
			connect(t, ln.Addr().String(), "disk").disconnect()
			l := logs.String()
			warned := strings.Contains(l, "level=WARN") && strings.Contains(l, "without authentication") && strings.Contains(l, "export names are the only secret")
			if warned != tc.warn || (tc.warn && !strings.Contains(l, tc.addr.String())) {
				t.Errorf("Serve on %v logged %q; want a warning naming the address: %t", tc.addr, l, tc.warn)
			}
		})
	}
}

// TestLogsHideExportName: an export's name is the key to its disk, so the
// log lines of its connections show a prefix of it, never all of it.
func TestLogsHideExportName(t *testing.T) {
	const name = "disk-abcdefghijklmnopqrstuvwxyz"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	s := NewServer(Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := s.Export(name, newMemDevice(t, 4096), false); err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)
	c := connect(t, ln.Addr().String(), name)
	c.read(0, 512)
	c.disconnect()
	l := logs.String()
	if !strings.Contains(l, "export="+name[:9]) {
		t.Fatalf("the log does not tell the connection's export apart:\n%s", l)
	}
	if strings.Contains(l, name[9:]) {
		t.Fatalf("the log holds the export's whole name:\n%s", l)
	}
}
