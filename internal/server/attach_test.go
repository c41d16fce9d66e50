package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/nbd"
	"github.com/deltadisk/deltadisk/internal/server"
)

// TestAttachExportNames: an attach exports the disk under a random name
// that only its answer carries: two attaches of the same disk get
// different names, neither derived from the disk id, and the name that
// deltadisk used to derive from the id (a sha256 prefix anyone can
// compute) reaches nothing. A detached export's name is refused too.
func TestAttachExportNames(t *testing.T) {
	ctx := t.Context()
	e := openEngine(t)
	vol, err := e.CreateVolume(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	srv := nbd.NewServer(nbd.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(serveCtx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("nbd Serve = %v", err)
		}
	})
	const disk = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
	a := server.NewAttachments(srv, e, ln.Addr().String(), "")

	var names []string
	for range 2 {
		exp, err := a.Attach(ctx, disk, vol)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(exp.NBDURI)
		if err != nil || u.Scheme != "nbd" || u.Host != ln.Addr().String() {
			t.Fatalf("nbdUri %q (%v), want nbd://%s/<name>", exp.NBDURI, err, ln.Addr())
		}
		name := strings.TrimPrefix(u.Path, "/")
		if typ := nbdInfo(t, ln.Addr().String(), name); typ != repInfo {
			t.Errorf("NBD_OPT_INFO on %q from the attach answer: reply %#x, want the export", name, typ)
		}
		names = append(names, name)
		if err := a.Detach(ctx, disk); err != nil {
			t.Fatal(err)
		}
		if typ := nbdInfo(t, ln.Addr().String(), name); typ != repErrUnknown {
			t.Errorf("NBD_OPT_INFO on %q after detach: reply %#x, want ERR_UNKNOWN", name, typ)
		}
	}
	if names[0] == names[1] {
		t.Errorf("two attaches of one disk exported the same name %q", names[0])
	}
	for _, n := range names {
		// 128 random bits at least: 26 base32 characters after "disk-".
		if len(strings.TrimPrefix(n, "disk-")) < 26 || strings.Contains(n, "d1") {
			t.Errorf("export name %q is short or shows the disk", n)
		}
	}

	// While attached, the name the disk id used to give is refused.
	if _, err := a.Attach(ctx, disk, vol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Detach(context.Background(), disk) })
	sum := sha256.Sum256([]byte(disk))
	if typ := nbdInfo(t, ln.Addr().String(), "disk-"+hex.EncodeToString(sum[:12])); typ != repErrUnknown {
		t.Errorf("NBD_OPT_INFO on the name derived from the disk id: reply %#x, want ERR_UNKNOWN", typ)
	}
}

// NBD wire values the test's client needs (NetworkBlockDevice proto.md).
const (
	optInfo       = 6
	repInfo       = 3
	repErrUnknown = 1<<31 + 6
)

// nbdInfo asks the server at addr about export name with NBD_OPT_INFO and
// returns the type of the first reply.
func nbdInfo(t *testing.T, addr, name string) uint32 {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	hello := make([]byte, 18) // NBDMAGIC, IHAVEOPT, handshake flags
	if _, err := io.ReadFull(nc, hello); err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	req := be.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	req = be.AppendUint64(req, 0x49484156454f5054)
	req = be.AppendUint32(req, optInfo)
	req = be.AppendUint32(req, uint32(4+len(name)+2))
	req = be.AppendUint32(req, uint32(len(name)))
	req = append(req, name...)
	req = be.AppendUint16(req, 0) // no information requests
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 20) // magic, option, type, length
	if _, err := io.ReadFull(nc, reply); err != nil {
		t.Fatal(err)
	}
	return be.Uint32(reply[12:])
}

func openEngine(t *testing.T) *engine.Engine {
	t.Helper()
	mcfg := bolt.DefaultConfig()
	mcfg.Path = filepath.Join(t.TempDir(), "meta.db")
	ms, err := bolt.Open(t.Context(), mcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	ccfg := chunks.DefaultConfig()
	ccfg.Backend = chunkstest.NewMem()
	store, err := chunks.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := engine.DefaultConfig()
	ecfg.Meta = ms
	ecfg.Zones = []engine.Zone{{Name: "z1", Store: store}}
	e, err := engine.Open(t.Context(), ecfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
