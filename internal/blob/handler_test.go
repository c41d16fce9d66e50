package blob_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	sub   = "11111111-1111-1111-1111-111111111111"
	group = "rg"
	// smallSize is the data size of the disks most tests use: the
	// smallest upload Azure allows, so a whole download stays small.
	smallSize = 20 << 20
)

// clock is the stack's shared, settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is the in-process stack: bolt and in-memory chunks under the
// engine, the service, identity, and the blob handler on a TLS server.
type fixture struct {
	svc   *service.Service
	eng   *engine.Engine
	id    *identity.Identity
	srv   *httptest.Server
	clock *clock
	// faulty is the chunk backend, for tests that make storage fail.
	faulty *chunkstest.FaultyBackend
	// meta is the metadata store, which tests can make answer ErrBusy.
	meta *busyStore
}

// busyStore is a metadata store whose Updates give up with meta.ErrBusy
// while busy is set, as a contended PostgreSQL store does.
type busyStore struct {
	meta.Store
	busy atomic.Bool
}

func (b *busyStore) Update(ctx context.Context, fn func(meta.Tx) error) error {
	if b.busy.Load() {
		return fmt.Errorf("test: %w", meta.ErrBusy)
	}
	return b.Store.Update(ctx, fn)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{clock: &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}}
	mcfg := bolt.DefaultConfig()
	mcfg.Path = filepath.Join(t.TempDir(), "meta.db")
	ms, err := bolt.Open(ctx, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	f.meta = &busyStore{Store: ms}
	f.faulty = chunkstest.Faulty(chunkstest.NewMem())
	ecfg := engine.DefaultConfig()
	ecfg.Meta = f.meta
	// The fixture's disks are locally redundant in eastus: zone eastus-1.
	ecfg.Zones, err = service.Zones(service.DefaultRegions(), func(zone string) (*chunks.Store, error) {
		ccfg := chunks.DefaultConfig()
		ccfg.Backend = chunkstest.NewMem()
		if zone == "eastus-1" {
			ccfg.Backend = f.faulty
		}
		return chunks.New(ccfg)
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.eng, err = engine.Open(ctx, ecfg); err != nil {
		t.Fatal(err)
	}
	scfg := service.DefaultConfig()
	scfg.Meta, scfg.Engine = f.meta, f.eng
	scfg.Subscriptions = []service.Subscription{{ID: sub, DisplayName: "one"}}
	scfg.Now = f.clock.Now
	if f.svc, err = service.Open(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{group, "other"} {
		if _, _, err := f.svc.PutGroup(ctx, sub, g, "eastus", nil); err != nil {
			t.Fatal(err)
		}
	}
	icfg := identity.DefaultConfig()
	icfg.TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	icfg.SigningKey = bytes.Repeat([]byte("k"), 32)
	icfg.Principals = []identity.Principal{{ClientID: "client", ClientSecret: "secret-0123456789abcdef"}}
	icfg.Now = f.clock.Now
	if f.id, err = identity.New(icfg); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewTLSServer(blob.New(blob.Config{Service: f.svc, Identity: f.id}))
	t.Cleanup(f.srv.Close)
	return f
}

func diskID(name string) service.ResourceID {
	return service.ResourceID{Subscription: sub, Group: group, Kind: service.KindDisk, Name: name}
}

func snapID(name string) service.ResourceID {
	return service.ResourceID{Subscription: sub, Group: group, Kind: service.KindSnapshot, Name: name}
}

// emptyDisk creates a sparse disk of gb GiB.
func (f *fixture) emptyDisk(t *testing.T, name string, gb int64) *service.Resource {
	t.Helper()
	r, err := f.svc.Put(t.Context(), diskID(name), service.Spec{Location: "eastus", CreationData: service.CreationData{CreateOption: "Empty"}, DiskSizeGB: gb})
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	return r
}

// uploadDisk creates an Upload disk of size data bytes, awaiting its upload.
func (f *fixture) uploadDisk(t *testing.T, name string, size int64) *service.Resource {
	t.Helper()
	r, err := f.svc.Put(t.Context(), diskID(name), service.Spec{Location: "eastus",
		CreationData: service.CreationData{CreateOption: "Upload", UploadSizeBytes: size + vhd.FooterSize}})
	if err != nil {
		t.Fatalf("create upload disk %s: %v", name, err)
	}
	return r
}

// smallDisk returns an unattached 20 MiB disk: an Upload disk whose
// footer was written and finalised.
func (f *fixture) smallDisk(t *testing.T, name string) *service.Resource {
	t.Helper()
	r := f.uploadDisk(t, name, smallSize)
	g, err := f.svc.GrantAccess(t.Context(), r.ID(), service.AccessWrite, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.WritePages(t.Context(), g, smallSize, vhd.FooterSize, footer(t, smallSize), func(*service.Resource) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RevokeAccess(t.Context(), r.ID()); err != nil {
		t.Fatal(err)
	}
	return f.get(t, r.ID())
}

func footer(t *testing.T, size int64) []byte {
	t.Helper()
	ft, err := vhd.New(size, uuid.New(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ft.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) get(t *testing.T, id service.ResourceID) *service.Resource {
	t.Helper()
	r, err := f.svc.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) snapshot(t *testing.T, name string, src *service.Resource, incremental bool) *service.Resource {
	t.Helper()
	r, err := f.svc.Put(t.Context(), snapID(name), service.Spec{Location: "eastus", Incremental: incremental,
		CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: src.ID().String()}})
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	return r
}

// writeAt writes into a disk's image directly, for tests that read.
func (f *fixture) writeAt(t *testing.T, disk *service.Resource, p []byte, off int64) {
	t.Helper()
	if err := f.eng.WriteAt(t.Context(), disk.Image, p, off); err != nil {
		t.Fatal(err)
	}
}

// grant starts access to a resource and returns its SAS URL, formed as
// arm forms it.
func (f *fixture) grant(t *testing.T, id service.ResourceID, access string) string {
	t.Helper()
	r, err := f.svc.GrantAccess(t.Context(), id, access, 3600)
	if err != nil {
		t.Fatalf("grant %s on %s: %v", access, id.Name, err)
	}
	return f.sasURL(r.Grant)
}

func (f *fixture) sasURL(g *service.Grant) string {
	perm := "r"
	if g.Access == service.AccessWrite {
		perm = "rw"
	}
	p := blob.Path(g.ID)
	q := f.id.SignSAS(identity.SAS{Path: p, GrantID: g.ID, Permissions: perm, Start: g.Start, Expiry: g.Expiry})
	return f.srv.URL + p + "?" + q.Encode()
}

func (f *fixture) revoke(t *testing.T, id service.ResourceID) {
	t.Helper()
	if _, err := f.svc.RevokeAccess(t.Context(), id); err != nil {
		t.Fatalf("revoke %s: %v", id.Name, err)
	}
}

// request is one raw HTTP request to the handler.
type request struct {
	method string
	url    string
	query  string // appended to url's query
	header map[string]string
	body   []byte
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t *testing.T, rq request) response {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	u := rq.url
	if rq.query != "" {
		if strings.Contains(u, "?") {
			u += "&" + rq.query
		} else {
			u += "?" + rq.query
		}
	}
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), rq.method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// blobError is the blob service's error document.
type blobError struct {
	Code       string `xml:"Code"`
	Message    string `xml:"Message"`
	HeaderName string `xml:"HeaderName"`
}

// wantError checks a refusal's status, code header and XML body.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.header.Get("x-ms-error-code") != code {
		t.Fatalf("got %d %q %s, want %d %s", r.status, r.header.Get("x-ms-error-code"), r.body, status, code)
	}
	if status == http.StatusNotModified || len(r.body) == 0 {
		return
	}
	var e blobError
	if err := xml.Unmarshal(r.body, &e); err != nil || e.Code != code || !strings.Contains(e.Message, "RequestId:") {
		t.Fatalf("error body %s: %v (code %q)", r.body, err, e.Code)
	}
	if r.header.Get("Content-Type") != "application/xml" || r.header.Get("x-ms-request-id") == "" {
		t.Errorf("error headers: %v", r.header)
	}
}

func withQuery(rawURL string, set map[string]string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// image reads a resource's whole blob as the handler should serve it: the
// image's bytes, then its footer.
func (f *fixture) image(t *testing.T, r *service.Resource) []byte {
	t.Helper()
	p := make([]byte, r.SizeBytes)
	if err := f.eng.ReadAt(t.Context(), r.Image, p, 0); err != nil {
		t.Fatal(err)
	}
	if r.AwaitingUpload {
		ft := r.Footer
		if len(ft) == 0 {
			ft = make([]byte, vhd.FooterSize)
		}
		return append(p, ft...)
	}
	ft, err := vhd.New(r.SizeBytes, uuid.MustParse(r.UniqueID), r.TimeCreated)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := ft.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(p, fb...)
}

// pattern returns n bytes that differ from any other call's seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>9)
	}
	return p
}
