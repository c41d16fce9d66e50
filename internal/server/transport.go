package server

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/prometheus/client_golang/prometheus"

	blobplane "github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/service"
)

// Transport carries cross-region copies over the page-blob data plane, as
// Azure's own sample does: Get Page Ranges with x-ms-previous-snapshot-url
// for the diff, then ranged reads, through the azblob client against this
// server's public URL. Pointed at another server, the same code would
// cross a real network; bytes are counted here, at that boundary.
type Transport struct {
	svc    *service.Service
	id     *identity.Identity
	base   *url.URL
	client *http.Client
	bytes  prometheus.Counter

	mu  sync.Mutex
	sas map[string]sasEntry
}

type sasEntry struct {
	url, grant string
	renew      time.Time
}

var _ service.Transport = (*Transport)(nil)

// NewTransport reads through the data plane at base with client (which
// must trust the server's certificate), counting the bytes it reads in a
// metric registered on reg.
func NewTransport(svc *service.Service, id *identity.Identity, base *url.URL, client *http.Client, reg prometheus.Registerer) *Transport {
	t := &Transport{svc: svc, id: id, base: base, client: client, sas: make(map[string]sasEntry),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "deltadisk_copy_transport_bytes_total",
			Help: "Bytes of snapshot data cross-region copies read through the data plane."})}
	if reg != nil {
		reg.MustRegister(t.bytes)
	}
	return t
}

// grantTTL is how long a copy's read grant lasts; it is renewed before.
const grantTTL = time.Hour

// sasURL returns a read SAS URL for r, from a system grant kept for reuse.
func (t *Transport) sasURL(ctx context.Context, r *service.Resource) (string, error) {
	key := strings.ToLower(r.ID().String())
	t.mu.Lock()
	e, ok := t.sas[key]
	t.mu.Unlock()
	if ok && time.Now().Before(e.renew) {
		return e.url, nil
	}
	g, err := t.svc.SystemGrant(ctx, r.ID(), grantTTL)
	if err != nil {
		return "", err
	}
	path := blobplane.Path(g.ID)
	q := t.id.SignSAS(identity.SAS{Path: path, GrantID: g.ID, Permissions: "r", Start: g.Start, Expiry: g.Expiry})
	u := *t.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	t.mu.Lock()
	t.sas[key] = sasEntry{url: u.String(), grant: g.ID, renew: time.Now().Add(grantTTL / 2)}
	t.mu.Unlock()
	if ok {
		_ = t.svc.EndSystemGrant(context.WithoutCancel(ctx), e.grant)
	}
	return u.String(), nil
}

func (t *Transport) pageClient(sas string) (*pageblob.Client, error) {
	return pageblob.NewClientWithNoCredential(sas, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: t.client}})
}

// Changes lists src's ranges that differ from prev (all it holds without
// prev), clipped to its data: the footer is not copied.
func (t *Transport) Changes(ctx context.Context, src, prev *service.Resource) ([]engine.Extent, error) {
	sas, err := t.sasURL(ctx, src)
	if err != nil {
		return nil, err
	}
	pc, err := t.pageClient(sas)
	if err != nil {
		return nil, err
	}
	var out []engine.Extent
	add := func(start, end *int64, cleared bool) {
		if start == nil || end == nil || *start >= src.SizeBytes {
			return
		}
		out = append(out, engine.Extent{Offset: *start, Length: min(*end+1, src.SizeBytes) - *start, Cleared: cleared})
	}
	if prev == nil {
		pager := pc.NewGetPageRangesPager(nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, r := range page.PageRange {
				add(r.Start, r.End, false)
			}
		}
		return out, nil
	}
	prevSAS, err := t.sasURL(ctx, prev)
	if err != nil {
		return nil, err
	}
	pager := pc.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &prevSAS})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.PageRange {
			add(r.Start, r.End, false)
		}
		for _, r := range page.ClearRange {
			add(r.Start, r.End, true)
		}
	}
	// The wire groups page and clear ranges apart; apply them in order.
	slices.SortFunc(out, func(a, b engine.Extent) int { return cmp.Compare(a.Offset, b.Offset) })
	return out, nil
}

// Read fills p with src's bytes at off through a ranged GET.
func (t *Transport) Read(ctx context.Context, src *service.Resource, p []byte, off int64) error {
	sas, err := t.sasURL(ctx, src)
	if err != nil {
		return err
	}
	pc, err := t.pageClient(sas)
	if err != nil {
		return err
	}
	resp, err := pc.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: int64(len(p))}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.ReadFull(resp.Body, p)
	t.bytes.Add(float64(n))
	if err != nil {
		return fmt.Errorf("reading %d bytes at %d of %s: %w", len(p), off, src.Name, err)
	}
	return nil
}
