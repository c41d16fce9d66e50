package blob_test

import (
	"bytes"
	"crypto/md5"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/google/go-cmp/cmp"

	"github.com/deltadisk/deltadisk/internal/service"
)

func (f *fixture) client(t *testing.T, sasURL string) *pageblob.Client {
	t.Helper()
	c, err := pageblob.NewClientWithNoCredential(sasURL, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: f.srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSDK drives the handler with the official azblob page-blob client,
// in process: properties, downloads (DownloadFile's parallel ranges with
// If-Match), page lists and their diff, paged, and Put Page.
func TestSDK(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	d, snaps := chain(t, f)
	s3 := f.client(t, f.grant(t, snaps[2].ID(), service.AccessRead))
	want := f.image(t, snaps[2])

	props, err := s3.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *props.ContentLength != int64(len(want)) || *props.BlobType != blob.BlobTypePageBlob || props.ETag == nil ||
		!props.CreationTime.Equal(snaps[2].TimeCreated.Truncate(1e9)) || *props.BlobSequenceNumber != 0 {
		t.Fatalf("GetProperties = length %d type %v etag %v created %v", *props.ContentLength, *props.BlobType, props.ETag, props.CreationTime)
	}
	ds, err := s3.DownloadStream(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(ds.Body)
	ds.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("DownloadStream: %v, equal %v", err, bytes.Equal(got, want))
	}
	path := filepath.Join(t.TempDir(), "s3.vhd")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s3.DownloadFile(ctx, file, &blob.DownloadFileOptions{BlockSize: 1 << 20, Concurrency: 4})
	file.Close()
	if err != nil || n != int64(len(want)) {
		t.Fatalf("DownloadFile = %d, %v", n, err)
	}
	if b, _ := os.ReadFile(path); md5.Sum(b) != md5.Sum(want) {
		t.Fatal("DownloadFile wrote different bytes")
	}

	var ranges []string
	pager := s3.NewGetPageRangesPager(&pageblob.GetPageRangesOptions{MaxResults: to.Ptr[int32](1)})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if *page.BlobContentLength != int64(len(want)) {
			t.Errorf("BlobContentLength = %d", *page.BlobContentLength)
		}
		for _, r := range page.PageRange {
			ranges = append(ranges, rangeString('P', *r.Start, *r.End))
		}
	}
	if want := []string{"P 65536-131071", "P 1048576-1114111", "P 5242880-5308415", "P 20971520-20972031"}; !cmp.Equal(ranges, want) {
		t.Errorf("GetPageRanges = %v, want %v", ranges, want)
	}
	ranges = nil
	s1URL := f.grant(t, snaps[0].ID(), service.AccessRead)
	dpager := s3.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &s1URL})
	for dpager.More() {
		page, err := dpager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.ClearRange {
			ranges = append(ranges, rangeString('C', *r.Start, *r.End))
		}
		for _, r := range page.PageRange {
			ranges = append(ranges, rangeString('P', *r.Start, *r.End))
		}
	}
	if want := []string{"C 0-65535", "P 1048576-1114111", "P 5242880-5308415"}; !cmp.Equal(ranges, want) {
		t.Errorf("GetPageRangesDiff = %v, want %v", ranges, want)
	}

	// Writes: through a write SAS, with an MD5; refused through a read SAS.
	_, err = s3.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Offset: 0, Count: 512}, nil)
	if !bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch) {
		t.Fatalf("UploadPages through a read SAS: %v", err)
	}
	w := f.client(t, f.grant(t, d.ID(), service.AccessWrite))
	page := pattern(8192, 11)
	sum := md5.Sum(page)
	up, err := w.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page)), blob.HTTPRange{Offset: 4096, Count: 8192},
		&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
	if err != nil || !bytes.Equal(up.ContentMD5, sum[:]) || up.ETag == nil || up.LastModified == nil {
		t.Fatalf("UploadPages = %+v, %v", up, err)
	}
	if _, err := w.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page)), blob.HTTPRange{Offset: 0, Count: 8192},
		&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeComputeCRC64()}); err != nil {
		t.Fatalf("UploadPages with CRC64: %v", err)
	}
	if _, err := w.ClearPages(ctx, blob.HTTPRange{Offset: 0, Count: 4096}, nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12288)
	if _, err := w.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: 0, Count: 12288}}); err != nil {
		t.Fatal(err)
	}
	wantBuf := make([]byte, 12288)
	copy(wantBuf[4096:], page) // the first write
	copy(wantBuf, page)        // the second
	clear(wantBuf[:4096])      // the clear
	if !bytes.Equal(buf, wantBuf) {
		t.Fatal("the disk does not read back what was written")
	}
	_, err = w.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page[:511])), blob.HTTPRange{Offset: 0, Count: 511}, nil)
	if !bloberror.HasCode(err, bloberror.InvalidPageRange) {
		t.Fatalf("unaligned UploadPages: %v", err)
	}
}

func rangeString(kind byte, start, end int64) string {
	return string(kind) + " " + itoa(start) + "-" + itoa(end)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
