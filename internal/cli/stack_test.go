package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deltadisk/deltadisk/internal/arm"
	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/service"
)

// The in-process stack's tenant, subscription and principal.
const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testSub    = "11111111-2222-3333-4444-555555555555"
	testClient = "aaaaaaaa-0000-0000-0000-000000000001"
	testSecret = "0123456789abcdef0123456789abcdef"
)

// stack is the real handlers and stores (bolt, in-memory chunks, engine,
// service, identity, ARM and blob) on an httptest TLS server, with a data
// dir holding a credentials.json that points at it, as serve writes it.
type stack struct {
	t       *testing.T
	svc     *service.Service
	srv     *httptest.Server
	dataDir string
	creds   credentials
	// env is the environment commands see; DELTADISK_DATA_DIR is the
	// stack's data dir.
	env      map[string]string
	attacher *fakeAttacher
	// zones are the zone stores' backends, for tests that lose one.
	zones map[string]*chunkstest.Mem
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := t.Context()
	mcfg := bolt.DefaultConfig()
	mcfg.Path = filepath.Join(t.TempDir(), "meta.db")
	ms, err := bolt.Open(ctx, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	ecfg := engine.DefaultConfig()
	ecfg.Meta = ms
	zones := make(map[string]*chunkstest.Mem)
	ecfg.Zones, err = service.Zones(service.DefaultRegions(), func(zone string) (*chunks.Store, error) {
		ccfg := chunks.DefaultConfig()
		zones[zone] = chunkstest.NewMem()
		ccfg.Backend = zones[zone]
		return chunks.New(ccfg)
	})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(ctx, ecfg)
	if err != nil {
		t.Fatal(err)
	}
	scfg := service.DefaultConfig()
	scfg.Meta, scfg.Engine = ms, eng
	scfg.Subscriptions = []service.Subscription{{ID: testSub, DisplayName: "deltadisk", TenantID: testTenant}}
	svc, err := service.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}

	// The listener first: the identity's authority and the ARM handler's
	// links need the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := &url.URL{Scheme: "https", Host: ln.Addr().String()}
	authority := pub.String() + "/adfs"
	icfg := identity.DefaultConfig()
	icfg.Authority, icfg.Audience, icfg.TenantID = authority, audience, testTenant
	icfg.SigningKey = bytes.Repeat([]byte("k"), 32)
	icfg.Principals = []identity.Principal{{
		ClientID: testClient, ClientSecret: testSecret,
		Roles: []identity.Assignment{{Role: identity.RoleOwner, Scope: "/subscriptions/" + testSub}},
	}}
	id, err := identity.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, svc: svc, attacher: &fakeAttacher{}, zones: zones}
	armHandler := arm.New(arm.Config{
		Service: svc, Identity: id, PublicURL: pub, Authority: authority, Audience: audience, Attacher: s.attacher,
	})
	blobHandler := blob.New(blob.Config{Service: svc, Identity: id})
	idHandler := id.Handler()
	// The routing of server.Server.
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/adfs/"):
			idHandler.ServeHTTP(w, r)
		case strings.HasPrefix(p, blob.PathPrefix):
			blobHandler.ServeHTTP(w, r)
		default:
			armHandler.ServeHTTP(w, r)
		}
	}))
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)

	s.dataDir = t.TempDir()
	caFile := filepath.Join(s.dataDir, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	s.creds = credentials{
		TenantID: testTenant, SubscriptionID: testSub, ClientID: testClient, ClientSecret: testSecret,
		ResourceManagerURL: pub.String() + "/", Authority: authority, Audience: audience,
		CACertFile: caFile, Location: defaultLocation,
	}
	if err := writeCredentials(filepath.Join(s.dataDir, credentialsFileName), s.creds); err != nil {
		t.Fatal(err)
	}
	s.env = map[string]string{"DELTADISK_DATA_DIR": s.dataDir}
	return s
}

// result is what a command printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a command line in-process, as Main does, with the stack's
// environment and no home directory.
func (s *stack) run(args ...string) result {
	s.t.Helper()
	var out, errOut bytes.Buffer
	g := &globals{
		stdout: &out, stderr: &errOut,
		getenv:  func(k string) string { return s.env[k] },
		homeDir: func() (string, error) { return "", errors.New("no home directory in tests") },
	}
	code := g.run(s.t.Context(), args)
	return result{out.String(), errOut.String(), code}
}

// ok runs a command line that must succeed and returns its stdout.
func (s *stack) ok(args ...string) string {
	s.t.Helper()
	r := s.run(args...)
	if r.code != 0 {
		s.t.Fatalf("deltadisk %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	if r.stderr != "" {
		s.t.Errorf("deltadisk %s: stderr %q, want none", strings.Join(args, " "), r.stderr)
	}
	return r.stdout
}

// object runs a command that prints one JSON object.
func (s *stack) object(args ...string) map[string]any {
	s.t.Helper()
	out := s.ok(args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		s.t.Fatalf("deltadisk %s: output is not a JSON object (%v):\n%s", strings.Join(args, " "), err, out)
	}
	return m
}

// list runs a command that prints a JSON list of objects.
func (s *stack) list(args ...string) []map[string]any {
	s.t.Helper()
	out := s.ok(args...)
	var l []map[string]any
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		s.t.Fatalf("deltadisk %s: output is not a JSON list (%v):\n%s", strings.Join(args, " "), err, out)
	}
	return l
}

// fails runs a command line that must fail with code, and checks that
// stderr holds each of want.
func (s *stack) fails(code int, want []string, args ...string) result {
	s.t.Helper()
	r := s.run(args...)
	if r.code != code {
		s.t.Errorf("deltadisk %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), r.code, code, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			s.t.Errorf("deltadisk %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	if r.stdout != "" {
		s.t.Errorf("deltadisk %s failed and printed %q on stdout, want nothing", strings.Join(args, " "), r.stdout)
	}
	return r
}

// diskID is a disk's id in the stack's subscription.
func diskID(group, name string) string {
	return "/subscriptions/" + testSub + "/resourceGroups/" + group + "/providers/Microsoft.Compute/disks/" + name
}

// fakeAttacher stands in for the NBD exports behind disk attach.
type fakeAttacher struct {
	mu       sync.Mutex
	attached map[string]bool
}

var _ arm.Attacher = (*fakeAttacher)(nil)

func (a *fakeAttacher) Attach(_ context.Context, disk string, _ engine.ID) (arm.Export, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.attached == nil {
		a.attached = make(map[string]bool)
	}
	a.attached[disk] = true
	return arm.Export{NBDURI: "nbd://127.0.0.1:10809/export", UnixSocket: "/run/deltadisk/nbd.sock"}, nil
}

func (a *fakeAttacher) Detach(_ context.Context, disk string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.attached, disk)
	return nil
}
