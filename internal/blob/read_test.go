package blob_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

func TestDownload(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	f.writeAt(t, d, pattern(3<<20, 1), 1<<20)
	f.writeAt(t, d, pattern(4096, 2), smallSize-4096)
	s := f.snapshot(t, "s", d, true)
	sas := f.grant(t, s.ID(), service.AccessRead)
	want := f.image(t, s)
	total := int64(smallSize + vhd.FooterSize)

	r := f.do(t, request{url: sas})
	if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
		t.Fatalf("GET = %d, %d bytes (equal %v), want 200 with the image and footer", r.status, len(r.body), bytes.Equal(r.body, want))
	}
	ft, err := vhd.Parse(r.body[smallSize:])
	if err != nil || uuid.UUID(ft.UniqueID).String() != s.UniqueID || !ft.Timestamp.Equal(s.TimeCreated.Truncate(time.Second)) || ft.CurrentSize != smallSize {
		t.Fatalf("footer = %+v, %v; want the snapshot's unique id and creation time", ft, err)
	}
	h := r.header
	for k, v := range map[string]string{
		"Content-Length":            strconv.FormatInt(total, 10),
		"Content-Type":              "application/octet-stream",
		"x-ms-blob-type":            "PageBlob",
		"x-ms-blob-sequence-number": "0",
		"Accept-Ranges":             "bytes",
		"x-ms-version":              "2018-03-28", // none sent: the SAS's version
		"Last-Modified":             s.TimeCreated.UTC().Format(http.TimeFormat),
		"x-ms-creation-time":        s.TimeCreated.UTC().Format(http.TimeFormat),
		"x-ms-lease-state":          "available",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"x-ms-server-encrypted", "x-ms-request-server-encrypted", "Content-Range"} {
		if v := h.Get(k); v != "" {
			t.Errorf("%s = %q, want none", k, v)
		}
	}
	etag := h.Get("ETag")
	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Errorf("ETag = %q, want a quoted tag", etag)
	}
	if _, err := time.Parse(time.RFC1123, h.Get("Date")); err != nil || h.Get("x-ms-request-id") == "" {
		t.Errorf("Date %q (%v), x-ms-request-id %q", h.Get("Date"), err, h.Get("x-ms-request-id"))
	}
	// The same answer again: a stable ETag; the client's version and
	// request id echoed.
	r2 := f.do(t, request{method: http.MethodHead, url: sas, header: map[string]string{"x-ms-version": "2026-12-06", "x-ms-client-request-id": "abc", "x-ms-date": time.Now().UTC().Format(http.TimeFormat)}})
	if r2.status != http.StatusOK || len(r2.body) != 0 || r2.header.Get("ETag") != etag || r2.header.Get("Content-Length") != strconv.FormatInt(total, 10) ||
		r2.header.Get("x-ms-version") != "2026-12-06" || r2.header.Get("x-ms-client-request-id") != "abc" || r2.header.Get("x-ms-blob-type") != "PageBlob" {
		t.Errorf("HEAD = %d %v", r2.status, r2.header)
	}
}

func TestDownloadRanges(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	f.writeAt(t, d, pattern(1<<20, 3), 0)
	s := f.snapshot(t, "s", d, true)
	sas := f.grant(t, s.ID(), service.AccessRead)
	want := f.image(t, s)
	total := int64(len(want))
	etag := f.do(t, request{method: http.MethodHead, url: sas}).header.Get("ETag")

	ok := []struct {
		name       string
		header     map[string]string
		start, end int64
	}{
		{"Range", map[string]string{"Range": "bytes=0-511"}, 0, 511},
		{"x-ms-range", map[string]string{"x-ms-range": "bytes=1000-2999"}, 1000, 2999},
		{"x-ms-range wins", map[string]string{"Range": "bytes=0-1", "x-ms-range": "bytes=2-5"}, 2, 5},
		{"open end", map[string]string{"Range": "bytes=20971000-"}, 20971000, total - 1},
		{"end past the blob", map[string]string{"Range": "bytes=0-99999999999"}, 0, total - 1},
		{"footer", map[string]string{"x-ms-range": fmt.Sprintf("bytes=%d-%d", smallSize, total-1)}, smallSize, total - 1},
		{"If-Match", map[string]string{"Range": "bytes=4-7", "If-Match": etag}, 4, 7},
		{"If-Match any", map[string]string{"Range": "bytes=4-7", "If-Match": "*"}, 4, 7},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, request{url: sas, header: tc.header})
			wantRange := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, total)
			if r.status != http.StatusPartialContent || r.header.Get("Content-Range") != wantRange ||
				r.header.Get("Content-Length") != strconv.FormatInt(tc.end-tc.start+1, 10) || !bytes.Equal(r.body, want[tc.start:tc.end+1]) {
				t.Fatalf("GET %v = %d %q, %d bytes; want 206 %q", tc.header, r.status, r.header.Get("Content-Range"), len(r.body), wantRange)
			}
		})
	}
	bad := []struct {
		name   string
		header map[string]string
		status int
		code   string
	}{
		{"start at the end", map[string]string{"Range": fmt.Sprintf("bytes=%d-", total)}, 416, "InvalidRange"},
		{"inverted", map[string]string{"x-ms-range": "bytes=10-5"}, 416, "InvalidRange"},
		{"suffix", map[string]string{"Range": "bytes=-512"}, 400, "InvalidHeaderValue"},
		{"list", map[string]string{"Range": "bytes=0-1,4-5"}, 400, "InvalidHeaderValue"},
		{"unit", map[string]string{"x-ms-range": "pages=0-1"}, 400, "InvalidHeaderValue"},
		{"sign", map[string]string{"Range": "bytes=+1-2"}, 400, "InvalidHeaderValue"},
		{"If-Match", map[string]string{"Range": "bytes=0-1", "If-Match": `"0xOTHER"`}, 412, "ConditionNotMet"},
		{"If-None-Match", map[string]string{"If-None-Match": etag}, 304, "ConditionNotMet"},
		{"If-Modified-Since", map[string]string{"If-Modified-Since": s.TimeCreated.Add(time.Hour).Format(http.TimeFormat)}, 304, "ConditionNotMet"},
		{"If-Unmodified-Since", map[string]string{"If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}, 412, "ConditionNotMet"},
		{"md5 without range", map[string]string{"x-ms-range-get-content-md5": "true"}, 400, "InvalidHeaderValue"},
		{"md5 over 4 MiB", map[string]string{"x-ms-range-get-content-md5": "true", "Range": "bytes=0-4194304"}, 400, "InvalidHeaderValue"},
		{"bad x-ms-version", map[string]string{"x-ms-version": "latest"}, 400, "InvalidHeaderValue"},
		{"bad x-ms-date", map[string]string{"x-ms-date": "yesterday"}, 400, "InvalidHeaderValue"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, request{url: sas, header: tc.header})
			wantError(t, r, tc.status, tc.code)
			if tc.code == "InvalidRange" && r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", total) {
				t.Errorf("416 Content-Range = %q", r.header.Get("Content-Range"))
			}
			if tc.status == http.StatusNotModified && r.header.Get("ETag") != etag {
				t.Errorf("304 ETag = %q, want %q", r.header.Get("ETag"), etag)
			}
		})
	}
	t.Run("range MD5", func(t *testing.T) {
		r := f.do(t, request{url: sas, header: map[string]string{"x-ms-range-get-content-md5": "true", "x-ms-range": "bytes=512-4194815"}})
		sum := md5.Sum(want[512:4194816])
		if r.status != http.StatusPartialContent || r.header.Get("Content-MD5") != base64.StdEncoding.EncodeToString(sum[:]) || !bytes.Equal(r.body, want[512:4194816]) {
			t.Fatalf("GET with x-ms-range-get-content-md5 = %d, Content-MD5 %q", r.status, r.header.Get("Content-MD5"))
		}
	})
}

// TestUploadDiskDownload: an Upload disk awaiting its upload shows the
// bytes uploaded past its data (zeros before any) instead of a footer.
func TestUploadDiskDownload(t *testing.T) {
	f := newFixture(t)
	u := f.uploadDisk(t, "u", smallSize)
	sas := f.grant(t, u.ID(), service.AccessWrite)
	tail := fmt.Sprintf("bytes=%d-%d", smallSize, smallSize+511)
	r := f.do(t, request{url: sas, header: map[string]string{"Range": tail}})
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, make([]byte, 512)) {
		t.Fatalf("tail before upload = %d %x..., want zeros", r.status, r.body[:min(len(r.body), 16)])
	}
	ft := footer(t, smallSize)
	if _, err := f.svc.WritePages(t.Context(), f.get(t, u.ID()), smallSize, vhd.FooterSize, ft, func(*service.Resource) error { return nil }); err != nil {
		t.Fatal(err)
	}
	r = f.do(t, request{url: sas, header: map[string]string{"Range": tail}})
	if !bytes.Equal(r.body, ft) {
		t.Fatalf("tail after upload differs from the uploaded footer")
	}
}

func TestAccess(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	s := f.snapshot(t, "s", d, true)
	sas := f.grant(t, s.ID(), service.AccessRead)
	other := f.snapshot(t, "other", d, true)
	otherSAS := f.grant(t, other.ID(), service.AccessRead)
	base := sas[:strings.Index(sas, "?")]
	grant := strings.TrimSuffix(strings.TrimPrefix(base[len(f.srv.URL):], blob.PathPrefix), "/abcd")
	sig := sas[strings.Index(sas, "?"):]

	tests := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"no SAS", request{url: base}, 403, "AuthenticationFailed"},
		{"no signature", request{url: withQuery(sas, map[string]string{"sig": ""})}, 403, "AuthenticationFailed"},
		{"tampered signature", request{url: withQuery(sas, map[string]string{"sig": "AAAA" + strings.Repeat("B", 40)})}, 403, "AuthenticationFailed"},
		{"tampered expiry", request{url: withQuery(sas, map[string]string{"se": "2099-01-01T00:00:00Z"})}, 403, "AuthenticationFailed"},
		{"tampered permission", request{url: withQuery(sas, map[string]string{"sp": "rw"})}, 403, "AuthenticationFailed"},
		{"another grant's SAS", request{url: base + otherSAS[strings.Index(otherSAS, "?"):]}, 403, "AuthenticationFailed"},
		{"write through a read SAS", request{method: http.MethodPut, url: sas, query: "comp=page", header: map[string]string{"x-ms-page-write": "update", "x-ms-range": "bytes=0-511"}, body: make([]byte, 512)}, 403, "AuthorizationPermissionMismatch"},
		{"other blob", request{url: f.srv.URL + blob.PathPrefix + grant + "/efgh" + sig}, 404, "BlobNotFound"},
		{"container only", request{url: f.srv.URL + blob.PathPrefix + grant + sig}, 404, "BlobNotFound"},
		{"deeper path", request{url: f.srv.URL + blob.Path(grant) + "/x" + sig}, 404, "BlobNotFound"},
		{"no grant in the container", request{url: f.srv.URL + blob.PathPrefix + "/abcd" + sig}, 404, "ContainerNotFound"},
		{"not a blob path", request{url: f.srv.URL + "/elsewhere/abcd" + sig}, 404, "ContainerNotFound"},
		{"blob snapshot", request{url: sas, query: "snapshot=2026-01-01T00:00:00.0000000Z"}, 404, "BlobNotFound"},
		{"unknown comp", request{url: sas, query: "comp=blocklist"}, 400, "InvalidQueryParameterValue"},
		{"unknown comp on PUT", request{method: http.MethodPut, url: sas, query: "comp=block"}, 400, "InvalidQueryParameterValue"},
		{"DELETE", request{method: http.MethodDelete, url: sas}, 405, "UnsupportedHttpVerb"},
		{"POST", request{method: http.MethodPost, url: sas}, 405, "UnsupportedHttpVerb"},
		{"Put Blob", request{method: http.MethodPut, url: sas, header: map[string]string{"x-ms-blob-type": "PageBlob"}}, 405, "UnsupportedHttpVerb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, f.do(t, tc.rq), tc.status, tc.code)
		})
	}

	// Revoked: every SAS of the grant stops working at once.
	if r := f.do(t, request{url: sas, header: map[string]string{"Range": "bytes=0-511"}}); r.status != http.StatusPartialContent {
		t.Fatalf("before revoke: %d %s", r.status, r.body)
	}
	f.revoke(t, s.ID())
	wantError(t, f.do(t, request{url: sas}), 403, "AuthenticationFailed")

	// Expired: the grant's end passes (the SAS's se with it).
	f.clock.Add(2 * time.Hour)
	wantError(t, f.do(t, request{url: otherSAS}), 403, "AuthenticationFailed")
}

// TestDownloadCutShort: a storage failure after the answer's headers went
// out cuts the connection, so the client sees a broken download, never a
// short one that looks complete.
func TestDownloadCutShort(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	f.writeAt(t, d, pattern(1<<20, 1), 10<<20)
	s := f.snapshot(t, "s", d, true)
	sas := f.grant(t, s.ID(), service.AccessRead)
	f.faulty.Inject(chunkstest.Fault{Op: chunkstest.OpReadAt, Err: errors.New("disk on fire")})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, sas, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.srv.Client().Do(req)
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("GET with failing storage = %d, %d bytes, no error; want a broken response", resp.StatusCode, n)
		}
	}
	if f.faulty.Fired() == 0 {
		t.Fatal("the fault never fired")
	}
}
