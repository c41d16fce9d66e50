package cli

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	mib = 1 << 20
	// rangeGranularity is the block size at which deltadisk reports page
	// ranges.
	rangeGranularity = 64 << 10
	// minUploadBytes is the smallest Upload disk the server creates (20
	// MiB), as in Azure.
	minUploadBytes = 20 * mib
)

// Image formats.
const (
	formatRaw = "raw"
	formatVHD = "vhd"
)

// image is a disk image to upload: a raw image, or a fixed VHD whose
// last 512 bytes are its footer.
type image struct {
	path     string
	f        *os.File
	format   string // formatRaw or formatVHD
	dataSize int64  // the disk's bytes the image holds, footer excluded
	footer   []byte // a VHD's footer
}

// openImage opens an image and finds its format: a file whose last 512
// bytes are a valid fixed VHD footer is a VHD (unless format says raw);
// anything else is raw (unless format says vhd). Formats that are neither
// but are easy to take for an image (qcow2, VMDK, VHDX, a dynamic VHD) are
// refused with the command that converts them.
func openImage(path, format string) (*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	img := &image{path: path, f: f}
	if err := img.detect(format); err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

func (img *image) close() { img.f.Close() }

func (img *image) detect(format string) error {
	size, err := img.f.Seek(0, io.SeekEnd) // a block device has no size in Stat
	if err != nil {
		return fmt.Errorf("--file %s: %w", img.path, err)
	}
	if size == 0 {
		return usagef("--file %s is empty", img.path)
	}
	var tail []byte
	var footer vhd.Footer
	parseErr := errors.New("shorter than a VHD footer")
	if size >= vhd.FooterSize {
		tail = make([]byte, vhd.FooterSize)
		if _, err := img.f.ReadAt(tail, size-vhd.FooterSize); err != nil {
			return fmt.Errorf("--file %s: %w", img.path, err)
		}
		footer, parseErr = vhd.Parse(tail)
	}
	convert := fmt.Sprintf("convert it with 'qemu-img convert -O raw %s IMAGE.raw' (or -O vpc -o subformat=fixed,force_size for a fixed VHD)", img.path)
	switch format {
	case formatRaw:
		img.format, img.dataSize = formatRaw, size
		return nil
	case formatVHD:
		if parseErr != nil {
			return usagef("--file %s is not a fixed VHD: its last 512 bytes are not a valid VHD footer (%v); upload a raw image with --format raw", img.path, parseErr)
		}
	case "":
		if parseErr != nil {
			if bytes.HasPrefix(tail, []byte(vhd.Cookie)) {
				return usagef("--file %s ends in a VHD footer that deltadisk cannot upload (%v): %s, or pass --format raw to upload the file as it is", img.path, parseErr, convert)
			}
			if kind := foreignFormat(img.f); kind != "" {
				return usagef("--file %s is a %s image, which is neither raw nor a fixed VHD: %s", img.path, kind, convert)
			}
			img.format, img.dataSize = formatRaw, size
			return nil
		}
	default:
		return usagef("argument --format: invalid choice: '%s' (choose from raw, vhd)", format)
	}
	if footer.CurrentSize != size-vhd.FooterSize {
		return usagef("--file %s ends in a VHD footer for a disk of %d bytes, but holds %d bytes before it: it is not a fixed VHD; pass --format raw to upload the file as it is",
			img.path, footer.CurrentSize, size-vhd.FooterSize)
	}
	img.format, img.dataSize, img.footer = formatVHD, footer.CurrentSize, tail
	return nil
}

// foreignFormat names the image format whose magic opens f, if it is one
// that must be converted before an upload.
func foreignFormat(f *os.File) string {
	var head [8]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return ""
	}
	switch {
	case bytes.HasPrefix(head[:], []byte("QFI\xfb")):
		return "qcow2"
	case bytes.HasPrefix(head[:], []byte("KDMV")):
		return "VMDK"
	case bytes.HasPrefix(head[:], []byte("vhdxfile")):
		return "VHDX"
	case bytes.HasPrefix(head[:], []byte(vhd.Cookie)):
		return "dynamic VHD"
	}
	return ""
}

type diskUploadOptions struct {
	diskRef
	file, format  string
	parallel      int
	create        bool
	location, sku string
}

func (o *diskUploadOptions) addFlags(fs *pflag.FlagSet) {
	o.diskRef.addFlags(fs)
	fs.StringVar(&o.file, "file", "", "image to upload: a raw image or a fixed VHD")
	fs.StringVar(&o.format, "format", "", "format of the image: raw or vhd (default: vhd when the file ends in a valid fixed VHD footer, else raw)")
	fs.IntVar(&o.parallel, "parallel", defaultParallel, "number of 4 MiB ranges sent at a time")
	fs.BoolVar(&o.create, "create", false, "create the disk, awaiting an upload of the image's size, unless it already awaits one")
	addLocationFlag(fs, &o.location)
	fs.StringVar(&o.sku, "sku", "", "storage SKU of a disk made with --create: "+strings.Join(diskSkus, ", ")+" (default "+defaultDiskSku+")")
}

func newDiskUploadCommand(g *globals) *cobra.Command {
	var opts diskUploadOptions
	cmd := &cobra.Command{
		Use:   "upload",
		Short: "Upload a raw image or a fixed VHD onto a disk",
		Long: `Upload a raw image or a fixed VHD onto a disk, through a Write grant that
is revoked at the end.

The disk is either awaiting an upload (created with --upload-type Upload and
--upload-size-bytes, or by --create here), or an existing unattached disk
(deltadisk's Write-grant extension). An Upload disk takes the image and a
VHD footer (the VHD's own, or one made for a raw image), and revoking access
makes it usable. An existing disk takes the image's data only: its footer is
the server's, the image may not be larger than the disk, and whatever the
disk held past the image is cleared, so that it reads as the image.

All-zero 4 MiB ranges are not sent (holes of a sparse file are not even
read), --parallel ranges go at a time, each with its MD5, which the server
checks. Ranges the disk already holds are compared by MD5 first and not sent
again, so an interrupted upload resumes when run again, and re-uploading an
image after a small change sends only the change. At the end the disk's page
ranges are checked against the image.`,
		Example: `  deltadisk disk upload -g rg1 -n imported --file disk.raw --create
  deltadisk disk create -g rg1 -n imported --upload-type Upload --upload-size-bytes 1073742336
  deltadisk disk upload -g rg1 -n imported --file disk.vhd
  deltadisk disk upload -g rg1 -n disk1 --file disk.raw --parallel 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiskUpload(cmd.Context(), g, cmd, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name", "file")
	return cmd
}

// uploadResult is what disk upload prints.
type uploadResult struct {
	Disk           string `json:"disk"`
	DiskState      string `json:"diskState"`
	File           string `json:"file"`
	Format         string `json:"format"`
	ImageBytes     int64  `json:"imageBytes"`
	WrittenBytes   int64  `json:"writtenBytes"`
	UnchangedBytes int64  `json:"unchangedBytes"`
	ZeroBytes      int64  `json:"zeroBytes"`
	ClearedBytes   int64  `json:"clearedBytes"`
}

func runDiskUpload(ctx context.Context, g *globals, cmd *cobra.Command, opts diskUploadOptions, _ []string) error {
	if opts.parallel < 1 || opts.parallel > maxParallel {
		return usagef("--parallel must be from 1 to %d", maxParallel)
	}
	f := cmd.Flags()
	if !opts.create && (f.Changed("location") || f.Changed("sku")) {
		return usagef("--location and --sku are for a disk made with --create")
	}
	if opts.format != "" {
		var err error
		if opts.format, err = oneOf("--format", opts.format, formatRaw, formatVHD); err != nil {
			return err
		}
	}
	img, err := openImage(opts.file, opts.format)
	if err != nil {
		return err
	}
	defer img.close()

	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	t, err := c.getTarget(ctx, kindDisk, opts.group, opts.name)
	switch {
	case opts.create && err == nil && t.state != "ReadyToUpload" && t.state != "ActiveUpload":
		return fmt.Errorf("disk '%s' already exists (state %s); drop --create to upload onto it", t.name, t.state)
	case opts.create && isNotFound(err):
		if t, err = c.createUploadDisk(ctx, opts, img); err != nil {
			return err
		}
	case err != nil:
		return err
	}

	switch t.state {
	case "ActiveUpload":
		// A Write grant: an upload that was cut off before it could
		// revoke, or another writer, whose writes this upload replaces
		// anyway.
		g.warn("disk '%s' already had a Write SAS (state ActiveUpload), left by an interrupted upload or held by another writer: "+
			"it is revoked, and this upload replaces what was written through it.", t.name)
		if err := c.revoke(ctx, t); err != nil && !isARMStatus(err, 400) {
			return err // a 400 is an Upload disk's footer not yet written
		}
		if t, err = c.getTarget(ctx, kindDisk, t.group, t.name); err != nil {
			return err
		}
	case "ActiveSAS", "ActiveSASFrozen":
		return activeGrantError(t)
	}
	awaiting := t.state == "ReadyToUpload"
	if err := checkImageFits(img, t, awaiting); err != nil {
		return err
	}

	sas, err := c.grant(ctx, t, armcompute.AccessLevelWrite, transferGrantSeconds)
	if err != nil {
		return err
	}
	revoked := false
	defer func() {
		if revoked {
			return
		}
		// An Upload disk whose footer is not written stays ReadyToUpload
		// and says so: that is expected here.
		if err := c.revoke(ctx, t); err != nil && !(awaiting && isARMStatus(err, 400)) {
			g.warn("could not revoke the Write access to disk '%s': %s; revoke it with 'deltadisk disk revoke-access -g %s -n %s'",
				t.name, firstLine(connError(err).Error()), t.group, t.name)
		}
	}()
	pb, err := c.pageBlob(sas)
	if err != nil {
		return err
	}
	u := &uploader{pb: pb, img: img, diskSize: t.sizeBytes, parallel: opts.parallel}
	u.bar = g.newProgress("uploading "+t.name, u.end())
	if err := u.run(ctx); err != nil {
		u.bar.abort()
		if ctx.Err() != nil {
			g.warn("the upload to disk '%s' is incomplete: run the command again to resume it.", t.name)
			return err
		}
		return fmt.Errorf("%w\nthe upload to disk '%s' is incomplete: run the command again to resume it (ranges already on the disk are not sent again)", err, t.name)
	}
	u.bar.finish()
	if awaiting {
		if err := u.writeFooter(ctx, t); err != nil {
			return err
		}
	}
	// Revoking finalises an Upload disk: the server checks the footer
	// and says why it refuses one.
	revoked = true
	if err := c.revoke(ctx, t); err != nil {
		return err
	}
	if t, err = c.getTarget(ctx, kindDisk, t.group, t.name); err != nil {
		return err
	}
	return g.output(cmd, uploadResult{
		Disk: t.id, DiskState: t.state, File: img.path, Format: img.format, ImageBytes: img.dataSize,
		WrittenBytes: u.written.Load(), UnchangedBytes: u.unchanged.Load(), ZeroBytes: u.zero.Load(), ClearedBytes: u.cleared.Load(),
	}, nil)
}

// checkImageFits refuses an image the disk cannot take, before anything
// is written.
func checkImageFits(img *image, t target, awaiting bool) error {
	switch {
	case awaiting && img.format == formatVHD && img.dataSize != t.sizeBytes:
		return fmt.Errorf("--file %s is a VHD of a %d-byte disk, and disk '%s' awaits an upload of %d bytes: "+
			"create the disk with --upload-size-bytes %d (or let 'disk upload --create' make it)",
			img.path, img.dataSize, t.name, t.sizeBytes, img.dataSize+vhd.FooterSize)
	case img.dataSize > t.sizeBytes && awaiting:
		return fmt.Errorf("--file %s holds %d bytes, more than disk '%s' awaits (%d bytes): create the disk with --upload-size-bytes %d",
			img.path, img.dataSize, t.name, t.sizeBytes, roundUp(img.dataSize, mib)+vhd.FooterSize)
	case img.dataSize > t.sizeBytes:
		return fmt.Errorf("--file %s holds %d bytes, more than disk '%s' (%d bytes): grow the disk first with 'deltadisk disk update -g %s -n %s --size-gb %d'",
			img.path, img.dataSize, t.name, t.sizeBytes, t.group, t.name, (img.dataSize+(1<<30)-1)>>30)
	}
	return nil
}

// createUploadDisk makes the disk of disk upload --create: an Upload disk
// of the image's size, a whole number of MiB (a raw image is padded with
// zeros).
func (c *client) createUploadDisk(ctx context.Context, opts diskUploadOptions, img *image) (target, error) {
	size := max(roundUp(img.dataSize, mib), minUploadBytes)
	if img.format == formatVHD {
		if img.dataSize%mib != 0 || img.dataSize < minUploadBytes {
			return target{}, fmt.Errorf("--file %s is a VHD of a %d-byte disk; a disk awaiting an upload holds a whole number of MiB, at least 20 MiB: "+
				"upload the image as raw data (--format raw), or resize it with 'qemu-img resize'", img.path, img.dataSize)
		}
		size = img.dataSize
	}
	sku := defaultDiskSku
	if opts.sku != "" {
		var err error
		if sku, err = oneOf("--sku", opts.sku, diskSkus...); err != nil {
			return target{}, err
		}
	}
	location := opts.location
	if location == "" {
		var err error
		if location, err = c.groupLocation(ctx, opts.group); err != nil {
			return target{}, err
		}
	}
	disk := armcompute.Disk{
		Location: &location,
		SKU:      &armcompute.DiskSKU{Name: new(armcompute.DiskStorageAccountTypes(sku))},
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
			CreateOption:    new(armcompute.DiskCreateOptionUpload),
			UploadSizeBytes: to.Ptr(size + vhd.FooterSize),
		}},
	}
	p, err := c.disks.BeginCreateOrUpdate(ctx, opts.group, opts.name, disk, nil)
	if err != nil {
		return target{}, err
	}
	res, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return target{}, err
	}
	return targetFromDisk(res.Disk), nil
}

// uploader sends an image's data onto a disk through a Write SAS.
//
// It keeps no state of its own: what the disk holds is its state. The
// disk's page ranges, listed first, say which 4 MiB chunks may hold data;
// a chunk of the image that is zero is cleared where the disk has data and
// skipped elsewhere, and a chunk with data is compared by MD5 with the
// disk's (the server computes it for a range of up to 4 MiB) and sent
// only when they differ. So a run cut off anywhere resumes by running it
// again, whatever happened in between, and an unchanged chunk is never
// written twice (which would cost the engine a write and the next
// incremental snapshot a changed block).
type uploader struct {
	pb       *pageblob.Client
	img      *image
	diskSize int64
	parallel int
	bar      *progress

	remote  []extent // the disk's runs holding data before the upload, within its bytes
	local   []extent // the image's runs that may hold data (holes of a sparse file skipped)
	nonZero []bool   // per chunk of the image: it holds data

	written, unchanged, zero, cleared atomic.Int64
}

// end is where the image's chunks end: its size, padded with zeros to
// the 64 KiB blocks in which the server reports page ranges, so that the
// disk's runs past it lie wholly past the image and are cleared whole.
func (u *uploader) end() int64 {
	return min(roundUp(u.img.dataSize, rangeGranularity), u.diskSize)
}

func (u *uploader) run(ctx context.Context) error {
	remote, _, err := pageRanges(ctx, u.pb, nil)
	if err != nil {
		return err
	}
	u.remote = clip(remote, 0, u.diskSize)
	u.local = dataExtents(u.img.f, u.img.dataSize)
	end := u.end()
	chunks := (end + chunkSize - 1) / chunkSize
	u.nonZero = make([]bool, chunks)

	var next atomic.Int64
	eg, ectx := errgroup.WithContext(ctx)
	for range min(int64(u.parallel), chunks) {
		eg.Go(func() error {
			buf := make([]byte, chunkSize)
			for {
				i := next.Add(1) - 1
				if i >= chunks {
					return nil
				}
				if err := u.chunk(ectx, i, buf); err != nil {
					return err
				}
			}
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	// Past the image, the disk must read as zeros.
	for _, r := range overlapping(u.remote, end, u.diskSize) {
		if err := u.clear(ctx, r); err != nil {
			return err
		}
	}
	return u.verify(ctx, end)
}

// chunk brings chunk i of the image onto the disk.
func (u *uploader) chunk(ctx context.Context, i int64, buf []byte) error {
	off := i * chunkSize
	end := min(off+chunkSize, u.end())
	n := end - off
	defer u.bar.add(n)
	p := buf[:n]
	data := len(overlapping(u.local, off, min(end, u.img.dataSize))) > 0
	if data {
		m, err := u.img.f.ReadAt(p[:min(n, u.img.dataSize-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == min(n, u.img.dataSize-off)) {
			return fmt.Errorf("reading %s at %d: %w", u.img.path, off, err)
		}
		clear(p[m:]) // the last page of an image whose size is not a multiple of 512
		data = !isZero(p)
	}
	remote := overlapping(u.remote, off, end)
	if !data {
		u.zero.Add(n)
		for _, r := range remote {
			if err := u.clear(ctx, r); err != nil {
				return err
			}
		}
		return nil
	}
	u.nonZero[i] = true
	sum := md5.Sum(p)
	if len(remote) > 0 {
		same, err := u.remoteMatches(ctx, off, n, sum)
		if err != nil {
			return err
		}
		if same {
			u.unchanged.Add(n)
			return nil
		}
	}
	if err := u.put(ctx, off, p, sum); err != nil {
		return err
	}
	u.written.Add(n)
	return nil
}

// put writes p at off with its MD5, which the server checks.
func (u *uploader) put(ctx context.Context, off int64, p []byte, sum [md5.Size]byte) error {
	_, err := u.pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(p)), blob.HTTPRange{Offset: off, Count: int64(len(p))},
		&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
	if err != nil {
		return fmt.Errorf("writing %d bytes at %d: %w", len(p), off, dataPlaneError(err))
	}
	return nil
}

// clear zeroes a run of the disk: one request, whatever its length.
func (u *uploader) clear(ctx context.Context, r extent) error {
	if _, err := u.pb.ClearPages(ctx, blob.HTTPRange{Offset: r.start, Count: r.end - r.start}, nil); err != nil {
		return fmt.Errorf("clearing %d bytes at %d: %w", r.end-r.start, r.start, dataPlaneError(err))
	}
	u.cleared.Add(r.end - r.start)
	return nil
}

// remoteMatches reports whether the disk's n bytes at off have the MD5
// sum, which the server computes.
func (u *uploader) remoteMatches(ctx context.Context, off, n int64, sum [md5.Size]byte) (bool, error) {
	resp, err := u.pb.DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range: blob.HTTPRange{Offset: off, Count: n}, RangeGetContentMD5: to.Ptr(true),
	})
	if err != nil {
		return false, fmt.Errorf("reading the disk's %d bytes at %d: %w", n, off, dataPlaneError(err))
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, fmt.Errorf("reading the disk's %d bytes at %d: %w", n, off, err)
	}
	return bytes.Equal(resp.ContentMD5, sum[:]), nil
}

// verify lists the disk's page ranges after the upload and checks them
// against the image: every chunk with data holds some, no zero chunk and
// nothing past the image does. With the MD5 of every chunk written or
// kept, this shows the disk reads as the image.
func (u *uploader) verify(ctx context.Context, end int64) error {
	after, _, err := pageRanges(ctx, u.pb, nil)
	if err != nil {
		return err
	}
	after = clip(after, 0, u.diskSize)
	for i, nz := range u.nonZero {
		off := int64(i) * chunkSize
		has := len(overlapping(after, off, min(off+chunkSize, end))) > 0
		switch {
		case nz && !has:
			return fmt.Errorf("verifying the upload: the image holds data at %d, but the disk's page ranges show none there", off)
		case !nz && has:
			return fmt.Errorf("verifying the upload: the image is zero at %d, but the disk's page ranges show data there", off)
		}
	}
	if r := overlapping(after, end, u.diskSize); len(r) > 0 {
		return fmt.Errorf("verifying the upload: the disk's page ranges show data at %d, past the image's end", r[0].start)
	}
	return nil
}

// writeFooter writes the VHD footer after an Upload disk's data: the
// VHD's own, or for a raw image one made for the disk (its unique id is
// the disk's).
func (u *uploader) writeFooter(ctx context.Context, t target) error {
	footer := u.img.footer
	if footer == nil {
		var id [16]byte
		if parsed, err := uuid.Parse(t.uniqueID); err == nil {
			id = parsed
		}
		f, err := vhd.New(t.sizeBytes, id, time.Now())
		if err != nil {
			return err
		}
		if footer, err = f.MarshalBinary(); err != nil {
			return err
		}
	}
	return u.put(ctx, t.sizeBytes, footer, md5.Sum(footer))
}

// zeros is compared with to find all-zero chunks.
var zeros = make([]byte, chunkSize)

func isZero(p []byte) bool { return bytes.Equal(p, zeros[:len(p)]) }

func roundUp(n, unit int64) int64 { return (n + unit - 1) / unit * unit }

// isARMStatus reports whether err is an ARM answer with the status.
func isARMStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}
