package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/tooltest"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// The data-plane tests drive `deltadisk serve` with the official azblob
// page-blob client through the SAS URLs that the ARM API grants.

const oneGiB = 1 << 30

// pageClient is an azblob page-blob client for a SAS URL, trusting the
// server's CA.
func (s *server) pageClient(sasURL string) *pageblob.Client {
	s.t.Helper()
	c, err := pageblob.NewClientWithNoCredential(sasURL, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: s.httpc,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// grantSAS grants access to a disk or snapshot and returns its SAS URL.
func (c clients) grantSAS(t *testing.T, rg, name string, disk bool, access armcompute.AccessLevel) string {
	t.Helper()
	data := armcompute.GrantAccessData{Access: to.Ptr(access), DurationInSeconds: to.Ptr[int32](3600)}
	var sas *string
	if disk {
		p, err := c.disks.BeginGrantAccess(t.Context(), rg, name, data, nil)
		if err != nil {
			t.Fatalf("grant %s on disk %s: %v", access, name, err)
		}
		res, err := p.PollUntilDone(t.Context(), nil)
		if err != nil {
			t.Fatalf("grant %s on disk %s: %v", access, name, err)
		}
		sas = res.AccessSAS
	} else {
		p, err := c.snapshots.BeginGrantAccess(t.Context(), rg, name, data, nil)
		if err != nil {
			t.Fatalf("grant on snapshot %s: %v", name, err)
		}
		res, err := p.PollUntilDone(t.Context(), nil)
		if err != nil {
			t.Fatalf("grant on snapshot %s: %v", name, err)
		}
		sas = res.AccessSAS
	}
	if sas == nil || !strings.Contains(*sas, "/md-") {
		t.Fatalf("grant on %s: accessSAS %v", name, sas)
	}
	return *sas
}

// revokeSAS ends the access to a disk or snapshot.
func (c clients) revokeSAS(t *testing.T, rg, name string, disk bool) {
	t.Helper()
	var err error
	if disk {
		poller, perr := c.disks.BeginRevokeAccess(t.Context(), rg, name, nil)
		if err = perr; err == nil {
			_, err = poller.PollUntilDone(t.Context(), nil)
		}
	} else {
		poller, perr := c.snapshots.BeginRevokeAccess(t.Context(), rg, name, nil)
		if err = perr; err == nil {
			_, err = poller.PollUntilDone(t.Context(), nil)
		}
	}
	if err != nil {
		t.Fatalf("revoke %s: %v", name, err)
	}
}

// uploadDisk creates an Upload disk awaiting uploadSizeBytes.
func (c clients) uploadDisk(t *testing.T, rg, name string, uploadSizeBytes int64) {
	t.Helper()
	p, err := c.disks.BeginCreateOrUpdate(t.Context(), rg, name, armcompute.Disk{Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(uploadSizeBytes)}}}, nil)
	if err != nil {
		t.Fatalf("create upload disk %s: %v", name, err)
	}
	if _, err := p.PollUntilDone(t.Context(), nil); err != nil {
		t.Fatalf("create upload disk %s: %v", name, err)
	}
}

func (c clients) mustSnapshot(t *testing.T, rg, name, source string) armcompute.Snapshot {
	t.Helper()
	s, err := c.snapshot(t.Context(), rg, name, source, true)
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	return s
}

// uploadPages writes p at off in pieces of at most 4 MiB.
func uploadPages(t *testing.T, c *pageblob.Client, p []byte, off int64) {
	t.Helper()
	for done := 0; done < len(p); {
		n := min(len(p)-done, 4<<20)
		_, err := c.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(p[done:done+n])),
			blob.HTTPRange{Offset: off + int64(done), Count: int64(n)}, nil)
		if err != nil {
			t.Fatalf("UploadPages at %d (%d bytes): %v", off+int64(done), n, err)
		}
		done += n
	}
}

// readRange downloads count bytes at off.
func readRange(t *testing.T, c *pageblob.Client, off, count int64) []byte {
	t.Helper()
	r, err := c.DownloadStream(t.Context(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: count}})
	if err != nil {
		t.Fatalf("DownloadStream %d+%d: %v", off, count, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || int64(len(b)) != count {
		t.Fatalf("DownloadStream %d+%d: %d bytes, %v", off, count, len(b), err)
	}
	return b
}

// hashData is the SHA-256 of each blob's first size bytes, downloaded
// side by side.
func hashData(t *testing.T, size int64, cs ...*pageblob.Client) [][32]byte {
	t.Helper()
	sums := make([][32]byte, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			r, err := c.DownloadStream(t.Context(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 0, Count: size}})
			if err != nil {
				errs[i] = err
				return
			}
			defer r.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err == nil && n != size {
				err = fmt.Errorf("%d bytes, want %d", n, size)
			}
			errs[i], sums[i] = err, [32]byte(h.Sum(nil))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
	}
	return sums
}

// pageRanges lists a blob's page ranges (or, with prevSAS, its diff),
// paged by maxResults when positive, in offset order, each as
// "P start-end" (PageRange) or "C start-end" (ClearRange).
func pageRanges(t *testing.T, c *pageblob.Client, prevSAS string, maxResults int32) []string {
	t.Helper()
	var out []string
	add := func(pr []*pageblob.PageRange, cr []*pageblob.ClearRange) {
		// Merge the two slices by Start: the wire interleaves them sorted.
		i, j := 0, 0
		for i < len(pr) || j < len(cr) {
			if j == len(cr) || (i < len(pr) && *pr[i].Start < *cr[j].Start) {
				out = append(out, fmt.Sprintf("P %d-%d", *pr[i].Start, *pr[i].End))
				i++
			} else {
				out = append(out, fmt.Sprintf("C %d-%d", *cr[j].Start, *cr[j].End))
				j++
			}
		}
	}
	var mr *int32
	if maxResults > 0 {
		mr = &maxResults
	}
	if prevSAS == "" {
		pager := c.NewGetPageRangesPager(&pageblob.GetPageRangesOptions{MaxResults: mr})
		for pager.More() {
			page, err := pager.NextPage(t.Context())
			if err != nil {
				t.Fatalf("GetPageRanges: %v", err)
			}
			add(page.PageRange, page.ClearRange)
		}
		return out
	}
	pager := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &prevSAS, MaxResults: mr})
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		if err != nil {
			t.Fatalf("GetPageRangesDiff: %v", err)
		}
		add(page.PageRange, page.ClearRange)
	}
	return out
}

func rangeOf(s string) (kind byte, start, end int64) {
	if _, err := fmt.Sscanf(s, "%c %d-%d", &kind, &start, &end); err != nil {
		panic(err)
	}
	return kind, start, end
}

// blobData returns n bytes of a pattern that depends on seed.
func blobData(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed ^ byte(i) ^ byte(i>>8)*31 ^ byte(i>>16)*7
	}
	return p
}

// qemuCheck runs qemu-img info -f vpc on a downloaded VHD and returns the
// virtual size it reports. Without qemu-img the check is skipped, unless
// DELTADISK_CI is set, where it fails.
func qemuCheck(t *testing.T, path string) (int64, bool) {
	t.Helper()
	qemu, ok := tooltest.Find(t, "qemu-img", "qemu-utils")
	if !ok {
		t.Logf("qemu-img not found; skipping the VHD check (install qemu-utils)")
		return 0, false
	}
	out, err := exec.CommandContext(t.Context(), qemu, "info", "--output=json", "-f", "vpc", path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info -f vpc: %v\n%s", err, out)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format != "vpc" {
		t.Fatalf("qemu-img info output %s: %v", out, err)
	}
	return info.VirtualSize, true
}

// TestBlobDownload downloads a snapshot of a sparse 1 GiB disk whole, with
// DownloadStream and with DownloadFile's parallel ranges, and checks its
// hash, its footer, and that qemu-img reads it as a VHD of the disk's size.
func TestBlobDownload(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "a", 1)

	// A few MiB through the Write grant (deltadisk's extension).
	w := srv.pageClient(c.grantSAS(t, "rg", "a", true, armcompute.AccessLevelWrite))
	want := sha256.New()
	chunks := map[int64][]byte{0: blobData(3<<20, 1), 700 << 20: blobData(1<<20, 2), oneGiB - 64<<10: blobData(64<<10, 3)}
	for off, p := range chunks {
		uploadPages(t, w, p, off)
	}
	c.revokeSAS(t, "rg", "a", true)
	snap := c.mustSnapshot(t, "rg", "a1", *disk.ID)
	r := srv.pageClient(c.grantSAS(t, "rg", "a1", false, armcompute.AccessLevelRead))

	// The expected hash: zeros with the written chunks, then the footer.
	var pos int64
	for _, off := range []int64{0, 700 << 20, oneGiB - 64<<10} {
		_, _ = want.Write(make([]byte, off-pos))
		_, _ = want.Write(chunks[off])
		pos = off + int64(len(chunks[off]))
	}
	footer := readRange(t, r, oneGiB, 512)
	_, _ = want.Write(footer)
	wantSum := [32]byte(want.Sum(nil))
	if !bytes.HasPrefix(footer, []byte("conectix")) || !strings.Contains(fmt.Sprintf("%x", footer[68:84]), strings.ReplaceAll(*snap.Properties.UniqueID, "-", "")) {
		t.Fatalf("footer %x does not name the snapshot %s", footer[:96], *snap.Properties.UniqueID)
	}

	// A SAS link as curl follows it: no x-ms-version, no x-ms-date.
	sasURL := c.grantSAS(t, "rg", "a", true, armcompute.AccessLevelRead)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sasURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=0-511")
	resp, err := srv.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(first, chunks[0][:512]) || resp.Header.Get("x-ms-version") == "" ||
		resp.Header.Get("x-ms-request-id") == "" || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-511/%d", oneGiB+512) {
		t.Fatalf("plain GET of the disk = %d %v", resp.StatusCode, resp.Header)
	}
	c.revokeSAS(t, "rg", "a", true)

	props, err := r.GetProperties(ctx, nil)
	if err != nil || *props.ContentLength != oneGiB+512 || *props.BlobType != blob.BlobTypePageBlob {
		t.Fatalf("GetProperties: %v %+v", err, props)
	}
	whole, err := r.DownloadStream(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, whole.Body)
	whole.Body.Close()
	if err != nil || n != oneGiB+512 || [32]byte(h.Sum(nil)) != wantSum || *whole.ContentLength != oneGiB+512 {
		t.Fatalf("DownloadStream: %d bytes, %v; hash equal %v", n, err, [32]byte(h.Sum(nil)) == wantSum)
	}
	path := filepath.Join(t.TempDir(), "a1.vhd")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err = r.DownloadFile(ctx, f, &blob.DownloadFileOptions{BlockSize: 64 << 20, Concurrency: 8})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != oneGiB+512 {
		t.Fatalf("DownloadFile = %d, %v", n, err)
	}
	hf, _ := os.Open(path)
	h.Reset()
	_, _ = io.Copy(h, hf)
	hf.Close()
	if [32]byte(h.Sum(nil)) != wantSum {
		t.Fatal("DownloadFile hash differs")
	}
	if size, ok := qemuCheck(t, path); ok && size != oneGiB {
		t.Fatalf("qemu-img reads a virtual size of %d, want %d", size, oneGiB)
	}
}

// TestBlobPageRanges lists a snapshot's page ranges, paged, and the diff
// between the first and third snapshot of a chain; a diff against another
// family or a newer snapshot is refused as Azure refuses it.
func TestBlobPageRanges(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "a", 1)
	other := c.emptyDisk(t, "rg", "b", 1)

	write := func(f func(w *pageblob.Client)) {
		t.Helper()
		w := srv.pageClient(c.grantSAS(t, "rg", "a", true, armcompute.AccessLevelWrite))
		f(w)
		c.revokeSAS(t, "rg", "a", true)
	}
	write(func(w *pageblob.Client) {
		uploadPages(t, w, blobData(128<<10, 1), 0)
		uploadPages(t, w, blobData(4096, 2), 100<<20)
	})
	c.mustSnapshot(t, "rg", "s1", *disk.ID)
	write(func(w *pageblob.Client) {
		uploadPages(t, w, blobData(64<<10, 3), 200<<20)
		if _, err := w.ClearPages(t.Context(), blob.HTTPRange{Offset: 0, Count: 64 << 10}, nil); err != nil {
			t.Fatal(err)
		}
	})
	c.mustSnapshot(t, "rg", "s2", *disk.ID)
	write(func(w *pageblob.Client) { uploadPages(t, w, blobData(512, 4), 300<<20) })
	c.mustSnapshot(t, "rg", "s3", *disk.ID)
	c.mustSnapshot(t, "rg", "o1", *other.ID)

	s1 := c.grantSAS(t, "rg", "s1", false, armcompute.AccessLevelRead)
	s3 := c.grantSAS(t, "rg", "s3", false, armcompute.AccessLevelRead)
	o1 := c.grantSAS(t, "rg", "o1", false, armcompute.AccessLevelRead)
	r3 := srv.pageClient(s3)

	full := []string{"P 65536-131071", "P 104857600-104923135", "P 209715200-209780735", "P 314572800-314638335", "P 1073741824-1073742335"}
	for _, mr := range []int32{0, 2} {
		if got := pageRanges(t, r3, "", mr); strings.Join(got, ",") != strings.Join(full, ",") {
			t.Errorf("GetPageRanges (maxresults %d) = %v, want %v", mr, got, full)
		}
	}
	wantDiff := []string{"C 0-65535", "P 209715200-209780735", "P 314572800-314638335"}
	if got := pageRanges(t, r3, s1, 1); strings.Join(got, ",") != strings.Join(wantDiff, ",") {
		t.Errorf("GetPageRangesDiff(s1 → s3) = %v, want %v", got, wantDiff)
	}

	for _, tc := range []struct {
		name   string
		target *pageblob.Client
		prev   string
		code   bloberror.Code
	}{
		{"newer previous", srv.pageClient(s1), s3, bloberror.PreviousSnapshotCannotBeNewer},
		{"another family", r3, o1, bloberror.PreviousSnapshotOperationNotSupported},
	} {
		pager := tc.target.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &tc.prev})
		if _, err := pager.NextPage(t.Context()); !bloberror.HasCode(err, tc.code) {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	c.revokeSAS(t, "rg", "s1", false)
	pager := r3.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &s1})
	if _, err := pager.NextPage(t.Context()); !bloberror.HasCode(err, bloberror.PreviousSnapshotNotFound) {
		t.Errorf("revoked previous: %v, want PreviousSnapshotNotFound", err)
	}
	if _, err := srv.pageClient(s1).GetProperties(t.Context(), nil); !bloberror.HasCode(err, bloberror.AuthenticationFailed) {
		t.Errorf("revoked SAS: %v, want AuthenticationFailed", err)
	}
}

// TestBlobUpload uploads into an Upload disk with UploadPages and
// ClearPages, revokes (which validates the uploaded footer), snapshots it
// and reads the snapshot back.
func TestBlobUpload(t *testing.T) {
	const size = 32 << 20
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	c.uploadDisk(t, "rg", "up", size+512)
	w := srv.pageClient(c.grantSAS(t, "rg", "up", true, armcompute.AccessLevelWrite))

	image := make([]byte, size)
	copy(image, blobData(6<<20, 5))
	copy(image[20<<20:], blobData(1<<20, 6))
	uploadPages(t, w, image[:6<<20], 0)
	uploadPages(t, w, image[20<<20:21<<20], 20<<20)
	if _, err := w.ClearPages(t.Context(), blob.HTTPRange{Offset: 1 << 20, Count: 2 << 20}, nil); err != nil {
		t.Fatal(err)
	}
	clear(image[1<<20 : 3<<20])
	// The footer, as a VHD tool writes it.
	uploadPages(t, w, vhdFooter(t, size), size)
	// Writing past the blob is refused and changes nothing.
	_, err := w.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Offset: size + 512, Count: 512}, nil)
	if !bloberror.HasCode(err, bloberror.InvalidPageRange) {
		t.Fatalf("UploadPages past the end: %v", err)
	}
	c.revokeSAS(t, "rg", "up", true)
	if d, err := c.disks.Get(t.Context(), "rg", "up", nil); err != nil || *d.Properties.DiskState != armcompute.DiskStateUnattached {
		t.Fatalf("after upload and revoke: %v %v", err, d.Properties.DiskState)
	}
	_, err = w.UploadPages(t.Context(), streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Offset: 0, Count: 512}, nil)
	if !bloberror.HasCode(err, bloberror.AuthenticationFailed) {
		t.Fatalf("UploadPages after revoke: %v", err)
	}

	disk, err := c.disks.Get(t.Context(), "rg", "up", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.mustSnapshot(t, "rg", "up1", *disk.ID)
	r := srv.pageClient(c.grantSAS(t, "rg", "up1", false, armcompute.AccessLevelRead))
	if got := readRange(t, r, 0, size); !bytes.Equal(got, image) {
		t.Fatal("the snapshot of the uploaded disk reads differently")
	}
	if ft := readRange(t, r, size, 512); !bytes.HasPrefix(ft, []byte("conectix")) {
		t.Fatalf("snapshot footer %x", ft[:16])
	}
}

// vhdFooter is the fixed VHD footer a client's tool writes for a disk of
// size bytes.
func vhdFooter(t *testing.T, size int64) []byte {
	t.Helper()
	f, err := vhd.New(size, uuid.New(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlobDifferentialCopy is the differential copy Azure's own sample
// demonstrates: for consecutive incremental snapshots of disk A (changed
// through deltadisk's Write-grant extension), copy only the changed ranges
// into Upload disk B (as a second region would), snapshot B after each
// step, and check that every snapshot of B equals its counterpart of A.
func TestBlobDifferentialCopy(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	diskA := c.emptyDisk(t, "rg", "a", 1)

	// The changes between snapshots: writes and clears of a few MiB.
	steps := []func(w *pageblob.Client){
		func(w *pageblob.Client) {
			uploadPages(t, w, blobData(2<<20, 1), 0)
			uploadPages(t, w, blobData(512<<10, 2), 500<<20)
			uploadPages(t, w, blobData(4096, 3), oneGiB-4096)
		},
		func(w *pageblob.Client) {
			uploadPages(t, w, blobData(1<<20, 4), 1<<20) // overwrite half of the first run
			if _, err := w.ClearPages(ctx, blob.HTTPRange{Offset: 500 << 20, Count: 256 << 10}, nil); err != nil {
				t.Fatal(err)
			}
			uploadPages(t, w, blobData(8192, 5), 800<<20)
		},
		func(w *pageblob.Client) {
			if _, err := w.ClearPages(ctx, blob.HTTPRange{Offset: 0, Count: 2 << 20}, nil); err != nil {
				t.Fatal(err)
			}
			uploadPages(t, w, blobData(3<<20, 6), 900<<20)
		},
	}

	// copyRanges copies listed ranges of src into dst, in ≤ 4 MiB pieces,
	// clearing ClearRanges; the offsets are the ranges' own (the sample's
	// offset bug is not copied).
	copyRanges := func(src, dst *pageblob.Client, ranges []string) {
		for _, s := range ranges {
			kind, start, end := rangeOf(s)
			if kind == 'C' {
				if _, err := dst.ClearPages(ctx, blob.HTTPRange{Offset: start, Count: end - start + 1}, nil); err != nil {
					t.Fatalf("ClearPages %s: %v", s, err)
				}
				continue
			}
			for off := start; off <= end; off += 4 << 20 {
				n := min(end+1-off, 4<<20)
				uploadPages(t, dst, readRange(t, src, off, n), off)
			}
		}
	}

	var prevSAS, prevName string
	for i, step := range steps {
		w := srv.pageClient(c.grantSAS(t, "rg", "a", true, armcompute.AccessLevelWrite))
		step(w)
		c.revokeSAS(t, "rg", "a", true)
		nameA := fmt.Sprintf("a%d", i+1)
		c.mustSnapshot(t, "rg", nameA, *diskA.ID)
		sasA := c.grantSAS(t, "rg", nameA, false, armcompute.AccessLevelRead)
		a := srv.pageClient(sasA)

		var b *pageblob.Client
		var ranges []string
		if i == 0 {
			// The first copy is full: size the target from the source.
			props, err := a.GetProperties(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.uploadDisk(t, "rg", "b", *props.ContentLength)
			ranges = pageRanges(t, a, "", 0)
			// The footer is listed (merged with the written block before it).
			if kind, _, end := rangeOf(ranges[len(ranges)-1]); kind != 'P' || end != oneGiB+511 {
				t.Fatalf("full page list does not end with the footer: %v", ranges)
			}
		} else {
			ranges = pageRanges(t, a, prevSAS, 0)
			for _, s := range ranges {
				if _, _, end := rangeOf(s); end >= oneGiB {
					t.Fatalf("a diff lists the footer: %v", ranges)
				}
			}
		}
		b = srv.pageClient(c.grantSAS(t, "rg", "b", true, armcompute.AccessLevelWrite))
		copyRanges(a, b, ranges)
		c.revokeSAS(t, "rg", "b", true)
		diskB, err := c.disks.Get(ctx, "rg", "b", nil)
		if err != nil || *diskB.Properties.DiskState != armcompute.DiskStateUnattached {
			t.Fatalf("step %d: disk b: %v %v", i+1, err, diskB.Properties)
		}
		nameB := fmt.Sprintf("b%d", i+1)
		c.mustSnapshot(t, "rg", nameB, *diskB.ID)
		sb := srv.pageClient(c.grantSAS(t, "rg", nameB, false, armcompute.AccessLevelRead))

		// Every byte of the disk's data matches; each footer names its
		// own snapshot, so only their sizes are compared.
		if sums := hashData(t, oneGiB, a, sb); sums[0] != sums[1] {
			t.Fatalf("step %d: snapshot %s differs from %s", i+1, nameB, nameA)
		}
		if fa, fb := readRange(t, a, oneGiB, 512), readRange(t, sb, oneGiB, 512); !bytes.Equal(fa[40:56], fb[40:56]) || !bytes.HasPrefix(fb, []byte("conectix")) {
			t.Fatalf("step %d: footers disagree on the size", i+1)
		}
		if got, want := pageRanges(t, sb, "", 0), pageRanges(t, a, "", 0); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("step %d: page ranges of %s = %v, of %s = %v", i+1, nameB, got, nameA, want)
		}
		c.revokeSAS(t, "rg", nameB, false)
		if prevName != "" {
			c.revokeSAS(t, "rg", prevName, false) // stay within 5 SAS per family
		}
		prevSAS, prevName = sasA, nameA
	}
}
