package blob_test

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deltadisk/deltadisk/internal/service"
)

// pageList is a Get Page Ranges answer: its ranges in document order, as
// "P start-end" (PageRange) or "C start-end" (ClearRange), and NextMarker.
type pageList struct {
	ranges []string
	next   string
}

func parsePageList(t *testing.T, body []byte) pageList {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"PageList"`
		Items   []struct {
			XMLName xml.Name
			Start   int64 `xml:"Start"`
			End     int64 `xml:"End"`
		} `xml:",any"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("page list %s: %v", body, err)
	}
	var pl pageList
	// NextMarker is an element too; decode it separately.
	var nm struct {
		NextMarker string `xml:"NextMarker"`
	}
	_ = xml.Unmarshal(body, &nm)
	pl.next = nm.NextMarker
	for _, it := range doc.Items {
		switch it.XMLName.Local {
		case "PageRange":
			pl.ranges = append(pl.ranges, fmt.Sprintf("P %d-%d", it.Start, it.End))
		case "ClearRange":
			pl.ranges = append(pl.ranges, fmt.Sprintf("C %d-%d", it.Start, it.End))
		case "NextMarker":
		default:
			t.Fatalf("unexpected element %s in %s", it.XMLName.Local, body)
		}
	}
	return pl
}

// chain makes a 20 MiB disk with three incremental snapshots:
// s1: blocks 0 and 1 written; s2: block 16 written, block 0 zeroed;
// s3: 512 bytes written in block 80. It returns the disk and snapshots.
func chain(t *testing.T, f *fixture) (*service.Resource, []*service.Resource) {
	t.Helper()
	d := f.smallDisk(t, "d")
	f.writeAt(t, d, pattern(128<<10, 1), 0)
	s1 := f.snapshot(t, "s1", d, true)
	f.writeAt(t, d, pattern(64<<10, 2), 1<<20)
	if err := f.eng.Zero(t.Context(), d.Image, 0, 64<<10); err != nil {
		t.Fatal(err)
	}
	s2 := f.snapshot(t, "s2", d, true)
	f.writeAt(t, d, pattern(512, 3), 5<<20)
	s3 := f.snapshot(t, "s3", d, true)
	return d, []*service.Resource{s1, s2, s3}
}

func TestPageList(t *testing.T) {
	f := newFixture(t)
	_, snaps := chain(t, f)
	sas := f.grant(t, snaps[2].ID(), service.AccessRead)
	list := func(t *testing.T, rq request) pageList {
		t.Helper()
		rq.url = sas
		rq.query = strings.TrimPrefix(rq.query+"&comp=pagelist", "&")
		r := f.do(t, rq)
		if r.status != http.StatusOK || r.header.Get("x-ms-blob-content-length") != fmt.Sprint(smallSize+512) ||
			r.header.Get("Content-Type") != "application/xml" || r.header.Get("ETag") == "" || r.header.Get("Last-Modified") == "" {
			t.Fatalf("pagelist = %d %v %s", r.status, r.header, r.body)
		}
		return parsePageList(t, r.body)
	}
	all := []string{"P 65536-131071", "P 1048576-1114111", "P 5242880-5308415", "P 20971520-20972031"}
	if got := list(t, request{}); !cmp.Equal(got.ranges, all) || got.next != "" {
		t.Fatalf("full page list = %v next %q, want %v (the footer listed)", got.ranges, got.next, all)
	}
	got := list(t, request{header: map[string]string{"x-ms-range": "bytes=98304-1081343", "Range": "bytes=0-511"}})
	if want := []string{"P 98304-131071", "P 1048576-1081343"}; !cmp.Equal(got.ranges, want) {
		t.Errorf("page list in a range = %v, want %v", got.ranges, want)
	}
	if got := list(t, request{header: map[string]string{"Range": "bytes=0-9223372036854775807"}}); !cmp.Equal(got.ranges, all) {
		t.Errorf("page list to the largest end = %v, want %v", got.ranges, all)
	}
	got = list(t, request{header: map[string]string{"Range": "bytes=5242880-"}})
	if want := all[2:]; !cmp.Equal(got.ranges, want) {
		t.Errorf("page list from 5 MiB = %v, want %v", got.ranges, want)
	}

	// Paging, one range at a time, then three at a time inside a range.
	var paged []string
	marker := ""
	for i := 0; ; i++ {
		q := "maxresults=1"
		if marker != "" {
			q += "&marker=" + marker
		}
		p := list(t, request{query: q})
		paged = append(paged, p.ranges...)
		if p.next == "" {
			break
		}
		if i > len(all) {
			t.Fatalf("paging does not end: %v", paged)
		}
		marker = p.next
	}
	if !cmp.Equal(paged, all) {
		t.Errorf("paged list = %v, want %v", paged, all)
	}
	p := list(t, request{query: "maxresults=2", header: map[string]string{"Range": "bytes=98304-"}})
	if want := []string{"P 98304-131071", "P 1048576-1114111"}; !cmp.Equal(p.ranges, want) || p.next == "" {
		t.Fatalf("first page = %v next %q", p.ranges, p.next)
	}
	p = list(t, request{query: "maxresults=2&marker=" + p.next, header: map[string]string{"Range": "bytes=98304-"}})
	if want := all[2:]; !cmp.Equal(p.ranges, want) || p.next != "" {
		t.Fatalf("second page = %v next %q", p.ranges, p.next)
	}

	bad := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"marker garbage", request{query: "marker=garbage"}, 400, "InvalidQueryParameterValue"},
		{"marker unaligned", request{query: "marker=AQAAAAAAAAAB"}, 400, "InvalidQueryParameterValue"},
		{"maxresults 0", request{query: "maxresults=0"}, 400, "InvalidQueryParameterValue"},
		{"maxresults text", request{query: "maxresults=ten"}, 400, "InvalidQueryParameterValue"},
		{"unaligned start", request{header: map[string]string{"x-ms-range": "bytes=1-512"}}, 416, "InvalidPageRange"},
		{"unaligned end", request{header: map[string]string{"x-ms-range": "bytes=0-510"}}, 416, "InvalidPageRange"},
		{"inverted", request{header: map[string]string{"x-ms-range": "bytes=1024-511"}}, 416, "InvalidPageRange"},
		{"past the end", request{header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", smallSize+512)}}, 416, "InvalidRange"},
		{"malformed", request{header: map[string]string{"Range": "bytes=a-b"}}, 400, "InvalidHeaderValue"},
		{"prevsnapshot", request{query: "prevsnapshot=2026-01-01T00:00:00.0000000Z"}, 409, "PreviousSnapshotNotFound"},
		{"HEAD pagelist", request{method: http.MethodHead}, 400, "InvalidQueryParameterValue"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			tc.rq.url = sas
			tc.rq.query = strings.TrimPrefix(tc.rq.query+"&comp=pagelist", "&")
			wantError(t, f.do(t, tc.rq), tc.status, tc.code)
		})
	}
}

func TestPageListDiff(t *testing.T) {
	f := newFixture(t)
	d, snaps := chain(t, f)
	var sas []string
	for _, s := range snaps {
		sas = append(sas, f.grant(t, s.ID(), service.AccessRead))
	}
	diff := func(t *testing.T, target, prev string, hdr map[string]string) response {
		t.Helper()
		if hdr == nil {
			hdr = map[string]string{}
		}
		hdr["x-ms-previous-snapshot-url"] = prev
		return f.do(t, request{url: target, query: "comp=pagelist", header: hdr})
	}
	tests := []struct {
		name         string
		target, prev string
		hdr          map[string]string
		want         []string
	}{
		{"s1 to s3", sas[2], sas[0], nil, []string{"C 0-65535", "P 1048576-1114111", "P 5242880-5308415"}},
		{"s2 to s3", sas[2], sas[1], nil, []string{"P 5242880-5308415"}},
		{"s1 to s2", sas[1], sas[0], nil, []string{"C 0-65535", "P 1048576-1114111"}},
		{"itself", sas[1], sas[1], nil, nil},
		{"s1 to s3 in a range", sas[2], sas[0], map[string]string{"x-ms-range": "bytes=32768-1081343"}, []string{"C 32768-65535", "P 1048576-1081343"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := diff(t, tc.target, tc.prev, tc.hdr)
			if r.status != http.StatusOK {
				t.Fatalf("diff = %d %s", r.status, r.body)
			}
			if got := parsePageList(t, r.body); !cmp.Equal(got.ranges, tc.want) {
				t.Fatalf("diff = %v, want %v", got.ranges, tc.want)
			}
		})
	}
	t.Run("paged", func(t *testing.T) {
		r := f.do(t, request{url: sas[2], query: "comp=pagelist&maxresults=2", header: map[string]string{"x-ms-previous-snapshot-url": sas[0]}})
		first := parsePageList(t, r.body)
		r = f.do(t, request{url: sas[2], query: "comp=pagelist&maxresults=2&marker=" + first.next, header: map[string]string{"x-ms-previous-snapshot-url": sas[0]}})
		second := parsePageList(t, r.body)
		if got := append(first.ranges, second.ranges...); !cmp.Equal(got, []string{"C 0-65535", "P 1048576-1114111", "P 5242880-5308415"}) || second.next != "" {
			t.Fatalf("paged diff = %v / %v", first, second)
		}
	})

	// The disk itself, after its last snapshot, diffs against its family.
	f.writeAt(t, d, pattern(512, 9), 10<<20)
	if err := f.eng.Zero(t.Context(), d.Image, 1<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	diskSAS := f.grant(t, d.ID(), service.AccessRead)
	r := diff(t, diskSAS, sas[1], nil)
	if got, want := parsePageList(t, r.body).ranges, []string{"C 1048576-1114111", "P 5242880-5308415", "P 10485760-10551295"}; r.status != 200 || !cmp.Equal(got, want) {
		t.Fatalf("disk diff = %d %v, want %v", r.status, got, want)
	}

	// Refusals.
	other := f.smallDisk(t, "other")
	o1 := f.snapshot(t, "o1", other, true)
	o1SAS := f.grant(t, o1.ID(), service.AccessRead)
	full := f.snapshot(t, "full", d, false)
	fullSAS := f.grant(t, full.ID(), service.AccessRead)
	gone := f.snapshot(t, "gone", d, true)
	goneSAS := f.grant(t, gone.ID(), service.AccessRead)
	f.revoke(t, gone.ID())
	otherDiskSAS := f.grant(t, other.ID(), service.AccessRead)
	bad := []struct {
		name         string
		target, prev string
		status       int
		code         string
	}{
		{"newer previous", sas[0], sas[2], 400, "PreviousSnapshotCannotBeNewer"},
		{"another family", sas[2], o1SAS, 409, "PreviousSnapshotOperationNotSupported"},
		{"another family's disk", otherDiskSAS, sas[0], 409, "PreviousSnapshotOperationNotSupported"},
		{"full snapshot as previous", sas[2], fullSAS, 409, "PreviousSnapshotOperationNotSupported"},
		{"full snapshot as target", fullSAS, sas[0], 409, "PreviousSnapshotOperationNotSupported"},
		{"revoked previous", sas[2], goneSAS, 409, "PreviousSnapshotNotFound"},
		{"previous is a disk", sas[2], diskSAS, 409, "PreviousSnapshotNotFound"},
		{"previous not a blob URL", sas[2], f.srv.URL + "/somewhere/else?sig=x", 409, "PreviousSnapshotNotFound"},
		{"previous tampered", sas[2], withQuery(sas[0], map[string]string{"sig": "AAAA"}), 403, "AuthenticationFailed"},
		{"previous without SAS", sas[2], sas[0][:strings.Index(sas[0], "?")], 403, "AuthenticationFailed"},
		{"previous not a URL", sas[2], "not a url", 400, "InvalidHeaderValue"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, diff(t, tc.target, tc.prev, nil), tc.status, tc.code)
		})
	}
}
