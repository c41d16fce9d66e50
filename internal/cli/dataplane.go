package cli

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// The data commands (upload, download, diff) grant themselves access to
// a disk or snapshot, work through its SAS URL with the azblob page-blob
// client, and revoke the access when they end, whichever way they end.

const (
	// transferGrantSeconds is how long the SAS of an upload or download
	// lasts. It is revoked when the command ends; the length only matters
	// for a command killed before it could revoke, whose grant then
	// blocks other grants on the resource until it expires or is revoked.
	transferGrantSeconds = 12 * 3600
	// chunkSize is the unit of transfer: the most one Put Page writes and
	// the largest range whose MD5 the blob service returns.
	chunkSize = 4 << 20
	// defaultParallel is the default of --parallel, and maxParallel its
	// largest value: each range in flight holds a 4 MiB buffer.
	defaultParallel = 8
	maxParallel     = 64
	// revokeTimeout bounds the revoke that ends a command, which runs
	// even when the command was interrupted.
	revokeTimeout = 30 * time.Second
)

// resourceKind is "disks" or "snapshots", as in ARM ids.
type resourceKind string

const (
	kindDisk     resourceKind = "disks"
	kindSnapshot resourceKind = "snapshots"
)

// noun is the kind's word in messages and commands ("disk", "snapshot").
func (k resourceKind) noun() string { return strings.TrimSuffix(string(k), "s") }

// target is a disk or snapshot a data command works on.
type target struct {
	kind         resourceKind
	group, name  string
	id, uniqueID string
	sizeBytes    int64  // the disk's bytes, without the VHD footer
	state        string // diskState: Unattached, ReadyToUpload, ActiveSAS, ...
}

func targetFromDisk(d armcompute.Disk) target {
	t := target{kind: kindDisk, id: deref(d.ID), name: deref(d.Name)}
	if p := d.Properties; p != nil {
		t.uniqueID = deref(p.UniqueID)
		if p.DiskSizeBytes != nil {
			t.sizeBytes = *p.DiskSizeBytes
		}
		if p.DiskState != nil {
			t.state = string(*p.DiskState)
		}
	}
	t.group = groupOf(t.id)
	return t
}

func targetFromSnapshot(s armcompute.Snapshot) target {
	t := target{kind: kindSnapshot, id: deref(s.ID), name: deref(s.Name)}
	if p := s.Properties; p != nil {
		t.uniqueID = deref(p.UniqueID)
		if p.DiskSizeBytes != nil {
			t.sizeBytes = *p.DiskSizeBytes
		}
		if p.DiskState != nil {
			t.state = string(*p.DiskState)
		}
	}
	t.group = groupOf(t.id)
	return t
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// groupOf is the resource group named in an ARM id.
func groupOf(id string) string {
	parts := strings.Split(id, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "resourceGroups") {
			return parts[i+1]
		}
	}
	return ""
}

// getTarget reads a disk or snapshot named by its name in group or by
// its full id.
func (c *client) getTarget(ctx context.Context, kind resourceKind, group, name string) (target, error) {
	if strings.HasPrefix(name, "/") {
		g, n, err := splitID(name, kind)
		if err != nil {
			return target{}, err
		}
		group, name = g, n
	} else if group == "" {
		return target{}, usagef("a %s named by its name needs --resource-group/-g; or give its full id", kind.noun())
	}
	if kind == kindDisk {
		d, err := c.disks.Get(ctx, group, name, nil)
		if err != nil {
			return target{}, err
		}
		return targetFromDisk(d.Disk), nil
	}
	s, err := c.snapshots.Get(ctx, group, name, nil)
	if err != nil {
		return target{}, err
	}
	return targetFromSnapshot(s.Snapshot), nil
}

// splitID returns the group and name of a disk or snapshot id.
func splitID(id string, kind resourceKind) (group, name string, err error) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	// subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/KIND/NAME
	if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
		!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.Compute") {
		return "", "", usagef("%q is not a %s id (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/%s/NAME)", id, kind.noun(), kind)
	}
	if !strings.EqualFold(parts[6], string(kind)) {
		return "", "", usagef("%q is not a %s id: it names %s", id, kind.noun(), parts[6])
	}
	return parts[3], parts[7], nil
}

// activeGrantError is the message for a resource that already has a SAS:
// the server allows one at a time, and a data command will not take
// another client's away.
func activeGrantError(t target) error {
	return fmt.Errorf("%s '%s' already has an active SAS (state %s), held by another transfer or left by one that was killed; "+
		"revoke it with 'deltadisk %s revoke-access -g %s -n %s' and run the command again",
		t.kind.noun(), t.name, t.state, t.kind.noun(), t.group, t.name)
}

// grant asks for access to t and returns its SAS URL.
func (c *client) grant(ctx context.Context, t target, access armcompute.AccessLevel, seconds int32) (string, error) {
	data := armcompute.GrantAccessData{Access: &access, DurationInSeconds: &seconds}
	var uri *armcompute.AccessURI
	if t.kind == kindDisk {
		p, err := c.disks.BeginGrantAccess(ctx, t.group, t.name, data, nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			return "", err
		}
		uri = &res.AccessURI
	} else {
		p, err := c.snapshots.BeginGrantAccess(ctx, t.group, t.name, data, nil)
		if err != nil {
			return "", err
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			return "", err
		}
		uri = &res.AccessURI
	}
	if uri.AccessSAS == nil || *uri.AccessSAS == "" {
		return "", fmt.Errorf("the server granted access to %s '%s' but returned no SAS URL", t.kind.noun(), t.name)
	}
	return *uri.AccessSAS, nil
}

// revoke ends the access to t. It runs with its own deadline, detached
// from ctx's cancellation, so that an interrupted command still revokes.
func (c *client) revoke(ctx context.Context, t target) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if t.kind == kindDisk {
		p, err := c.disks.BeginRevokeAccess(ctx, t.group, t.name, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, nil)
		return err
	}
	p, err := c.snapshots.BeginRevokeAccess(ctx, t.group, t.name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(ctx, nil)
	return err
}

// pageBlob is a page-blob client for a SAS URL, trusting the server's CA.
// Requests that fail on the way (a connection reset, a 500 or 503) are
// retried a few times; a transfer that still fails can be run again and
// resumes.
func (c *client) pageBlob(sas string) (*pageblob.Client, error) {
	return pageblob.NewClientWithNoCredential(sas, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: c.http,
		Telemetry: policy.TelemetryOptions{ApplicationID: "deltadisk-cli"},
		Retry: policy.RetryOptions{
			MaxRetries: 4, RetryDelay: 250 * time.Millisecond, MaxRetryDelay: 4 * time.Second, TryTimeout: 2 * time.Minute,
		},
	}})
}

// extent is a run of a blob: [start, end), changed or cleared in a diff.
type extent struct {
	start, end int64
	cleared    bool
}

// pageRanges lists the runs of the blob that hold data, in order, as of
// the blob's ETag, which it returns too.
func pageRanges(ctx context.Context, pb *pageblob.Client, etag *azcore.ETag) ([]extent, azcore.ETag, error) {
	opts := &pageblob.GetPageRangesOptions{}
	if etag != nil {
		opts.AccessConditions = ifMatch(*etag)
	}
	var out []extent
	var tag azcore.ETag
	for p := pb.NewGetPageRangesPager(opts); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, "", dataPlaneError(err)
		}
		if page.ETag != nil {
			tag = *page.ETag
		}
		for _, r := range page.PageRange {
			if r.Start != nil && r.End != nil {
				out = appendExtent(out, extent{start: *r.Start, end: *r.End + 1})
			}
		}
	}
	return out, tag, nil
}

// diffRanges lists the runs of the blob that changed since the snapshot
// whose SAS URL is prevURL: changed runs and cleared ones, in order.
func diffRanges(ctx context.Context, pb *pageblob.Client, prevURL string) ([]extent, error) {
	var out []extent
	for p := pb.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &prevURL}); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, dataPlaneError(err)
		}
		for _, r := range page.PageRange {
			if r.Start != nil && r.End != nil {
				out = append(out, extent{start: *r.Start, end: *r.End + 1})
			}
		}
		for _, r := range page.ClearRange {
			if r.Start != nil && r.End != nil {
				out = append(out, extent{start: *r.Start, end: *r.End + 1, cleared: true})
			}
		}
	}
	slices.SortFunc(out, func(a, b extent) int { return cmp.Compare(a.start, b.start) })
	merged := out[:0]
	for _, e := range out {
		merged = appendExtent(merged, e)
	}
	return merged, nil
}

// appendExtent appends e to sorted runs, merging it with the last run
// when they touch and are of one kind.
func appendExtent(runs []extent, e extent) []extent {
	if n := len(runs); n > 0 && runs[n-1].cleared == e.cleared && runs[n-1].end == e.start {
		runs[n-1].end = e.end
		return runs
	}
	return append(runs, e)
}

// clip cuts sorted runs to [lo, hi).
func clip(runs []extent, lo, hi int64) []extent {
	var out []extent
	for _, e := range runs {
		s, t := max(e.start, lo), min(e.end, hi)
		if s < t {
			out = append(out, extent{start: s, end: t, cleared: e.cleared})
		}
	}
	return out
}

// overlapping returns the parts of sorted runs inside [lo, hi).
func overlapping(runs []extent, lo, hi int64) []extent {
	i, _ := slices.BinarySearchFunc(runs, lo, func(e extent, off int64) int {
		switch {
		case e.end <= off:
			return -1
		case e.start > off:
			return 1
		}
		return 0
	})
	var out []extent
	for ; i < len(runs) && runs[i].start < hi; i++ {
		if s, t := max(runs[i].start, lo), min(runs[i].end, hi); s < t {
			out = append(out, extent{start: s, end: t})
		}
	}
	return out
}

func ifMatch(etag azcore.ETag) *blob.AccessConditions {
	return &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}
}

// blobError is a refusal of the data plane, with the blob service's
// error code and message.
type blobError struct {
	status  int
	code    string
	message string
}

func (e *blobError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("(%s) the data plane answered %d %s", e.code, e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("(%s) %s", e.code, e.message)
}

// dataPlaneError turns an azblob failure into a blobError that reads as
// the server's own message, without the dump of the HTTP exchange, or
// into a connError.
func dataPlaneError(err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return connError(err)
	}
	e := &blobError{status: re.StatusCode, code: re.ErrorCode}
	if re.RawResponse != nil {
		if body, rerr := runtime.Payload(re.RawResponse); rerr == nil {
			var doc struct {
				Code    string `xml:"Code"`
				Message string `xml:"Message"`
			}
			if xml.Unmarshal(body, &doc) == nil {
				if doc.Code != "" {
					e.code = doc.Code
				}
				// The message ends with the request id and time, each on
				// a line of its own.
				e.message, _, _ = strings.Cut(strings.TrimSpace(doc.Message), "\n")
			}
		}
	}
	if e.code == "" {
		e.code = strings.ReplaceAll(http.StatusText(e.status), " ", "")
	}
	return e
}

// connError words a request that got no answer (the connection failed,
// after the SDK's retries) without its URL, which for the data plane is
// a SAS: a secret that must not end up in logs.
func connError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	where := "the server"
	if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
		where += " at " + u.Scheme + "://" + u.Host
	}
	return fmt.Errorf("no answer from %s: %w", where, ue.Err)
}

// isBlobStatus reports whether err is a data-plane refusal with status.
func isBlobStatus(err error, status int) bool {
	var be *blobError
	return errors.As(err, &be) && be.status == status
}
