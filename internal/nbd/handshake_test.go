package nbd

import (
	"context"
	"errors"
	"io"
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
	// Still haggling: another option works.
	c.option(optList, nil)
	if r := c.readOptReply(); r.typ != repServer {
		t.Fatalf("NBD_OPT_LIST after INFO: reply %#x, want SERVER", r.typ)
	}
	if r := c.readOptReply(); r.typ != repAck {
		t.Fatalf("NBD_OPT_LIST after INFO: reply %#x, want ACK", r.typ)
	}
	c.goExport("disk")
	c.mustDo(cmdWrite, 0, 0, 512, pattern(1, 512))
	c.disconnect()
}

func TestHandshakeList(t *testing.T) {
	s := startServer(t, Config{})
	for _, name := range []string{"zeta", "alpha", "mid"} {
		s.export(t, name, newMemDevice(t, 4096), false)
	}
	c := dial(t, "tcp", s.addr, clientFixedNewstyle|clientNoZeroes)
	c.option(optList, nil)
	var names []string
	for {
		r := c.readOptReply()
		if r.opt != optList {
			t.Fatalf("reply for option %d", r.opt)
		}
		if r.typ == repAck {
			break
		}
		if r.typ != repServer {
			t.Fatalf("reply type %#x, want SERVER or ACK", r.typ)
		}
		n := be.Uint32(r.data)
		if int(n) != len(r.data)-4 {
			t.Fatalf("NBD_REP_SERVER name length %d in %d bytes", n, len(r.data))
		}
		names = append(names, string(r.data[4:]))
	}
	if diff := cmp.Diff([]string{"alpha", "mid", "zeta"}, names); diff != "" {
		t.Errorf("NBD_OPT_LIST names (-want +got):\n%s", diff)
	}

	// With data it is invalid, and haggling goes on.
	c.option(optList, []byte("x"))
	if r := c.readOptReply(); r.typ != repErrInvalid {
		t.Errorf("NBD_OPT_LIST with data: reply %#x, want ERR_INVALID", r.typ)
	}
	c.goExport("mid")
	c.disconnect()
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
