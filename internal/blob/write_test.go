package blob_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/service"
)

func putPage(url, mode, rng string, body []byte, extra map[string]string) request {
	h := map[string]string{"x-ms-page-write": mode, "x-ms-range": rng, "x-ms-version": "2026-12-06"}
	for k, v := range extra {
		h[k] = v
	}
	return request{method: http.MethodPut, url: url, query: "comp=page", header: h, body: body}
}

func md5of(p []byte) string {
	s := md5.Sum(p)
	return base64.StdEncoding.EncodeToString(s[:])
}

// TestUpload writes an Upload disk through its write SAS: pages, clears
// and the footer; revoke finalises it, and a snapshot of it reads back.
func TestUpload(t *testing.T) {
	f := newFixture(t)
	u := f.uploadDisk(t, "u", smallSize)
	sas := f.grant(t, u.ID(), service.AccessWrite)
	want := make([]byte, smallSize+512)
	etag := f.do(t, request{method: http.MethodHead, url: sas}).header.Get("ETag")

	put := func(t *testing.T, rq request) response {
		t.Helper()
		r := f.do(t, rq)
		if r.status != http.StatusCreated {
			t.Fatalf("Put Page %v = %d %s", rq.header, r.status, r.body)
		}
		if r.header.Get("ETag") == etag || r.header.Get("ETag") == "" || r.header.Get("Last-Modified") == "" || r.header.Get("x-ms-blob-sequence-number") != "0" {
			t.Fatalf("Put Page answer headers %v (ETag before %s)", r.header, etag)
		}
		etag = r.header.Get("ETag")
		return r
	}
	data := pattern(4<<20, 5)
	r := put(t, putPage(sas, "update", "bytes=0-4194303", data, map[string]string{"Content-MD5": md5of(data)}))
	if r.header.Get("Content-MD5") != md5of(data) {
		t.Errorf("Content-MD5 = %q, want %q", r.header.Get("Content-MD5"), md5of(data))
	}
	copy(want, data)
	small := pattern(1024, 6)
	crc := binary.LittleEndian.AppendUint64(nil, crc64.Checksum(small, crc64.MakeTable(0x9A6C9329AC4BC9B5)))
	r = put(t, putPage(sas, "UPDATE", "bytes=8388608-8389631", small, map[string]string{"x-ms-content-crc64": base64.StdEncoding.EncodeToString(crc)}))
	if r.header.Get("x-ms-content-crc64") != base64.StdEncoding.EncodeToString(crc) {
		t.Errorf("x-ms-content-crc64 = %q", r.header.Get("x-ms-content-crc64"))
	}
	copy(want[8<<20:], small)
	put(t, putPage(sas, "clear", "bytes=1024-2047", nil, nil))
	clear(want[1024:2048])
	// A write across the end of the data and the footer, then the rest of
	// the footer.
	ft := footer(t, smallSize)
	tail := append(pattern(512, 7), ft[:512]...)
	put(t, putPage(sas, "update", fmt.Sprintf("bytes=%d-%d", smallSize-512, smallSize+511), tail, nil))
	copy(want[smallSize-512:], tail)

	got := f.do(t, request{url: sas})
	if !bytes.Equal(got.body, want) {
		t.Fatalf("download after upload differs")
	}
	if d := f.get(t, u.ID()); d.State(f.clock.Now()) != "ActiveUpload" {
		t.Fatalf("state = %s", d.State(f.clock.Now()))
	}
	f.revoke(t, u.ID())
	d := f.get(t, u.ID())
	if d.State(f.clock.Now()) != "Unattached" {
		t.Fatalf("after revoke: state %s", d.State(f.clock.Now()))
	}
	wantError(t, f.do(t, putPage(sas, "update", "bytes=0-511", make([]byte, 512), nil)), 403, "AuthenticationFailed")

	s := f.snapshot(t, "s", d, true)
	rs := f.do(t, request{url: f.grant(t, s.ID(), service.AccessRead)})
	if rs.status != 200 || !bytes.Equal(rs.body[:smallSize], want[:smallSize]) {
		t.Fatalf("snapshot of the uploaded disk reads differently")
	}
	// The snapshot's footer is the server's, with the snapshot's identity.
	if !bytes.Equal(rs.body[smallSize:], f.image(t, s)[smallSize:]) {
		t.Fatalf("snapshot footer is not the server's")
	}
}

// TestPutPageRefusals: every refusal answers the blob service's error and
// writes nothing.
func TestPutPageRefusals(t *testing.T) {
	f := newFixture(t)
	u := f.uploadDisk(t, "u", smallSize)
	usas := f.grant(t, u.ID(), service.AccessWrite)
	d := f.smallDisk(t, "d")
	dsas := f.grant(t, d.ID(), service.AccessWrite)
	page := pattern(512, 8)
	tests := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"unaligned start", putPage(usas, "update", "bytes=1-512", page, nil), 416, "InvalidPageRange"},
		{"unaligned end", putPage(usas, "update", "bytes=0-510", page[:511], nil), 416, "InvalidPageRange"},
		{"inverted", putPage(usas, "update", "bytes=1024-511", page, nil), 416, "InvalidPageRange"},
		{"open range", putPage(usas, "update", "bytes=0-", page, nil), 416, "InvalidPageRange"},
		{"past the end", putPage(usas, "update", fmt.Sprintf("bytes=%d-%d", smallSize+512, smallSize+1023), page, nil), 416, "InvalidPageRange"},
		{"clear past the end", putPage(usas, "clear", fmt.Sprintf("bytes=0-%d", smallSize+1023), nil, nil), 416, "InvalidPageRange"},
		{"footer of a non-upload disk", putPage(dsas, "update", fmt.Sprintf("bytes=%d-%d", smallSize, smallSize+511), page, nil), 416, "InvalidPageRange"},
		{"clear the footer of a non-upload disk", putPage(dsas, "clear", fmt.Sprintf("bytes=%d-%d", smallSize-512, smallSize+511), nil, nil), 416, "InvalidPageRange"},
		{"body shorter than the range", putPage(usas, "update", "bytes=0-1023", page, nil), 400, "InvalidHeaderValue"},
		{"body longer than the range", putPage(usas, "update", "bytes=0-511", append(page, page...), nil), 400, "InvalidHeaderValue"},
		{"body on a clear", putPage(usas, "clear", "bytes=0-511", page, nil), 400, "InvalidHeaderValue"},
		{"over 4 MiB", putPage(usas, "update", "bytes=0-4194815", make([]byte, 4<<20+512), nil), 413, "RequestBodyTooLarge"},
		{"MD5 mismatch", putPage(usas, "update", "bytes=0-511", page, map[string]string{"Content-MD5": md5of(page[1:])}), 400, "Md5Mismatch"},
		{"MD5 malformed", putPage(usas, "update", "bytes=0-511", page, map[string]string{"Content-MD5": "nope"}), 400, "InvalidHeaderValue"},
		{"CRC64 mismatch", putPage(usas, "update", "bytes=0-511", page, map[string]string{"x-ms-content-crc64": base64.StdEncoding.EncodeToString(make([]byte, 8))}), 400, "Crc64Mismatch"},
		{"no page-write", putPage(usas, "", "bytes=0-511", page, nil), 400, "MissingRequiredHeader"},
		{"bad page-write", putPage(usas, "append", "bytes=0-511", page, nil), 400, "InvalidHeaderValue"},
		{"no range", putPage(usas, "update", "", page, nil), 400, "MissingRequiredHeader"},
		{"malformed range", putPage(usas, "update", "0-511", page, nil), 400, "InvalidHeaderValue"},
		{"If-Match", putPage(usas, "update", "bytes=0-511", page, map[string]string{"If-Match": `"0x0"`}), 412, "ConditionNotMet"},
		{"If-None-Match", putPage(usas, "update", "bytes=0-511", page, map[string]string{"If-None-Match": "*"}), 412, "ConditionNotMet"},
		{"sequence number", putPage(usas, "update", "bytes=0-511", page, map[string]string{"x-ms-if-sequence-number-lt": "0"}), 412, "SequenceNumberConditionNotMet"},
		{"structured body", putPage(usas, "update", "bytes=0-511", page, map[string]string{"x-ms-structured-body": "XSM/1.0; properties=crc64"}), 400, "InvalidHeaderValue"},
		{"bad x-ms-version", putPage(usas, "update", "bytes=0-511", page, map[string]string{"x-ms-version": "2026-13-45"}), 400, "InvalidHeaderValue"},
	}
	before := map[*service.Resource][]byte{u: f.image(t, u), d: f.image(t, d)}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, f.do(t, tc.rq), tc.status, tc.code)
		})
	}
	// Nothing was written: same bytes, same ETag (write count).
	for r, b := range before {
		now := f.get(t, r.ID())
		if !bytes.Equal(f.image(t, now), b) || now.Version != r.Version {
			t.Errorf("%s changed by refused writes (version %d → %d)", r.Name, r.Version, now.Version)
		}
	}
}

// TestWriteUnattached: deltadisk's extension lets a Write grant change an
// unattached disk inside its data; snapshots wait for the revoke.
func TestWriteUnattached(t *testing.T) {
	f := newFixture(t)
	d := f.emptyDisk(t, "d", 1)
	s0 := f.snapshot(t, "s0", d, true)
	sas := f.grant(t, d.ID(), service.AccessWrite)
	data := pattern(64<<10, 4)
	rng := fmt.Sprintf("bytes=%d-%d", 512<<20, 512<<20+len(data)-1)
	if r := f.do(t, putPage(sas, "update", rng, data, nil)); r.status != http.StatusCreated {
		t.Fatalf("Put Page = %d %s", r.status, r.body)
	}
	r := f.do(t, request{url: sas, header: map[string]string{"Range": rng}})
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, data) {
		t.Fatalf("read back = %d", r.status)
	}
	footer := fmt.Sprintf("bytes=%d-%d", 1<<30, 1<<30+511)
	wantError(t, f.do(t, putPage(sas, "update", footer, make([]byte, 512), nil)), 416, "InvalidPageRange")
	if _, err := f.svc.Put(t.Context(), snapID("early"), service.Spec{Location: "eastus", Incremental: true,
		CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: d.ID().String()}}); err == nil {
		t.Fatal("snapshot during a write grant was allowed")
	}
	f.revoke(t, d.ID())
	s1 := f.snapshot(t, "s1", d, true)
	s1sas := f.grant(t, s1.ID(), service.AccessRead)
	r = f.do(t, request{url: s1sas, query: "comp=pagelist", header: map[string]string{"x-ms-previous-snapshot-url": f.grant(t, s0.ID(), service.AccessRead)}})
	if got := strings.Join(parsePageList(t, r.body).ranges, ","); got != fmt.Sprintf("P %d-%d", 512<<20, 512<<20+65535) {
		t.Fatalf("diff after the write = %s", got)
	}
}

// TestPutPageZoneUnavailable: a write that a zone store fails for a reason
// that can pass (its directory lost, a remount under way) is answered 503
// ServerBusy with Retry-After, which clients retry, and leaves the disk as
// it was. A full or unwritable store is not this (TestPutPageNoSpace).
// TestPutPageBusy: a Put Page whose commit kept losing conflicts is 503
// ServerBusy with Retry-After, which the SDKs retry, and lands nothing.
func TestPutPageBusy(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	sas := f.grant(t, d.ID(), service.AccessWrite)
	old := pattern(4096, 3)
	if r := f.do(t, putPage(sas, "update", "bytes=0-4095", old, nil)); r.status != http.StatusCreated {
		t.Fatalf("Put Page = %d %s", r.status, r.body)
	}
	f.meta.busy.Store(true)
	r := f.do(t, putPage(sas, "update", "bytes=0-4095", pattern(4096, 4), nil))
	f.meta.busy.Store(false)
	wantError(t, r, http.StatusServiceUnavailable, "ServerBusy")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 ServerBusy without Retry-After: %v", r.header)
	}
	got := make([]byte, 4096)
	if err := f.eng.ReadAt(t.Context(), d.Image, got, 0); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after the refused write the disk reads %x…, %v; want what it held", got[:8], err)
	}
}

func TestPutPageZoneUnavailable(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	sas := f.grant(t, d.ID(), service.AccessWrite)
	old := pattern(4096, 3)
	if r := f.do(t, putPage(sas, "update", "bytes=0-4095", old, nil)); r.status != http.StatusCreated {
		t.Fatalf("Put Page = %d %s", r.status, r.body)
	}
	f.faulty.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: syscall.ENOTDIR})
	r := f.do(t, putPage(sas, "update", "bytes=0-4095", pattern(4096, 4), nil))
	wantError(t, r, http.StatusServiceUnavailable, "ServerBusy")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 ServerBusy without Retry-After: %v", r.header)
	}
	if f.faulty.Fired() != 1 {
		t.Fatal("the fault never fired")
	}
	got := make([]byte, 4096)
	if err := f.eng.ReadAt(t.Context(), d.Image, got, 0); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("after the refused write the disk reads %x…, %v; want what it held", got[:8], err)
	}
}

// TestPutPageRacesRevoke: Put Pages racing a revoke each land whole and
// are answered 201, or land nothing and are answered as the revoked SAS is
// at the door (403 AuthenticationFailed); never a 404 or a 500, never half.
func TestPutPageRacesRevoke(t *testing.T) {
	f := newFixture(t)
	d := f.smallDisk(t, "d")
	sas := f.grant(t, d.ID(), service.AccessWrite)
	const writers, perWriter, size = 4, 16, 64 << 10
	status := make([]int, writers*perWriter)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range perWriter {
				k := w*perWriter + i
				rng := fmt.Sprintf("bytes=%d-%d", k*size, (k+1)*size-1)
				r := f.do(t, putPage(sas, "update", rng, pattern(size, byte(k+1)), nil))
				status[k] = r.status
				if r.status != http.StatusCreated && (r.status != http.StatusForbidden || r.header.Get("x-ms-error-code") != "AuthenticationFailed") {
					t.Errorf("write %d: %d %q %s", k, r.status, r.header.Get("x-ms-error-code"), r.body)
				}
			}
		})
	}
	close(start)
	f.revoke(t, d.ID())
	wg.Wait()
	refused := 0
	got := make([]byte, size)
	for k, st := range status {
		if err := f.eng.ReadAt(t.Context(), d.Image, got, int64(k*size)); err != nil {
			t.Fatal(err)
		}
		switch want := pattern(size, byte(k+1)); {
		case st == http.StatusCreated && !bytes.Equal(got, want):
			t.Errorf("write %d was acknowledged but the disk does not hold it", k)
		case st != http.StatusCreated && !bytes.Equal(got, make([]byte, size)):
			t.Errorf("write %d was refused but the disk holds some of it", k)
		}
		if st != http.StatusCreated {
			refused++
		}
	}
	if refused == 0 {
		t.Logf("the revoke came after every write this time")
	}
}

// TestPutPageBacklog: past MaxPutPages in flight, a Put Page waits up to
// PutPageWait and is then refused with 503 ServerBusy and Retry-After
// before its body is read, writing nothing; once the backlog clears, Put
// Pages go through again.
func TestPutPageBacklog(t *testing.T) {
	f := newFixture(t)
	h := blob.New(blob.Config{Service: f.svc, Identity: f.id, MaxPutPages: 1, PutPageWait: 20 * time.Millisecond})
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	d := f.smallDisk(t, "d")
	sas := strings.Replace(f.grant(t, d.ID(), service.AccessWrite), f.srv.URL, srv.URL, 1)
	send := func(body io.Reader, n int, off int) (*http.Response, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, sas+"&comp=page", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(n)
		req.Header.Set("x-ms-page-write", "update")
		req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		req.Header.Set("x-ms-version", "2026-12-06")
		return srv.Client().Do(req)
	}

	// The first Put Page holds the only slot: its body arrives slowly.
	pr, pw := io.Pipe()
	first := make(chan *http.Response, 1)
	go func() {
		resp, err := send(pr, 4096, 0)
		if err != nil {
			t.Error(err)
		}
		first <- resp
	}()
	if _, err := pw.Write(pattern(512, 1)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); blob.PutPagesInFlight(h) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first Put Page was not admitted within 10s")
		}
	}

	resp, err := send(bytes.NewReader(pattern(4096, 2)), 4096, 8192)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	wantError(t, r, http.StatusServiceUnavailable, "ServerBusy")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("503 ServerBusy without Retry-After: %v", r.header)
	}
	got := make([]byte, 4096)
	if err := f.eng.ReadAt(t.Context(), d.Image, got, 8192); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("the refused Put Page wrote: %x…, %v", got[:8], err)
	}

	if _, err := pw.Write(pattern(4096, 1)[512:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if resp := <-first; resp == nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("the admitted Put Page = %v, want 201", resp)
	} else {
		resp.Body.Close()
	}
	resp, err = send(bytes.NewReader(pattern(4096, 2)), 4096, 8192)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a Put Page after the backlog cleared = %d, want 201", resp.StatusCode)
	}
	if err := f.eng.ReadAt(t.Context(), d.Image, got, 8192); err != nil || !bytes.Equal(got, pattern(4096, 2)) {
		t.Fatalf("the retried Put Page did not land: %v", err)
	}
}
