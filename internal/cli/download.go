package cli

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

// downloadOptions are the flags of snapshot download and disk download.
type downloadOptions struct {
	file, format string
	parallel     int
}

func (o *downloadOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.file, "file", "", "file to write: OUT.vhd (the fixed VHD, footer included) or OUT.raw (the disk's bytes)")
	fs.StringVar(&o.format, "format", "", "vhd or raw (default: raw for a file ending in .raw or .img, else vhd)")
	fs.IntVar(&o.parallel, "parallel", defaultParallel, "number of 4 MiB ranges read at a time")
}

const downloadLong = `The data are read in parallel 4 MiB ranges, each checked against the MD5
the server computes for it and pinned to the %[1]s's ETag (If-Match). Only
the ranges holding data are read (Get Page Ranges): the holes stay holes of
a sparse file. The file is written as FILE.partial and renamed to FILE when
it is complete and verified, so FILE is never half-written.

An interrupted download (Ctrl-C, a broken connection, a killed process)
leaves FILE.partial and FILE.partial.json, which records the %[1]s's ETag
and the ranges already written: running the same command again continues
where it stopped, unless the %[1]s changed in between, in which case it
starts over.

With .vhd (the default) the file is the fixed VHD the server serves, a
512-byte footer after the disk's bytes; with .raw (or --format raw) it is
the disk's bytes alone, for qemu, dd or a loop device.`

type snapshotDownloadOptions struct {
	snapshotRef
	downloadOptions
}

func newSnapshotDownloadCommand(g *globals) *cobra.Command {
	var opts snapshotDownloadOptions
	cmd := &cobra.Command{
		Use:   "download",
		Short: "Download a snapshot as a fixed VHD or a raw image",
		Long: "Download a snapshot (an incremental one reads as the whole image) through a Read\ngrant that is revoked at the end.\n\n" +
			fmt.Sprintf(downloadLong, "snapshot"),
		Example: `  deltadisk snapshot download -g rg1 -n snap1 --file snap1.vhd
  deltadisk snapshot download -g rg1 -n snap1 --file snap1.raw --parallel 16
  deltadisk snapshot download -g rg1 -n snap1 --file snap1.img --format vhd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDownload(cmd.Context(), g, cmd, kindSnapshot, opts.group, opts.name, opts.downloadOptions)
		},
	}
	opts.snapshotRef.addFlags(cmd.Flags())
	opts.downloadOptions.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name", "file")
	return cmd
}

type diskDownloadOptions struct {
	diskRef
	downloadOptions
}

func newDiskDownloadCommand(g *globals) *cobra.Command {
	var opts diskDownloadOptions
	cmd := &cobra.Command{
		Use:   "download",
		Short: "Download an unattached disk as a fixed VHD or a raw image",
		Long: "Download an unattached disk through a Read grant that is revoked at the end.\n\n" +
			fmt.Sprintf(downloadLong, "disk"),
		Example: `  deltadisk disk download -g rg1 -n disk1 --file disk1.vhd
  deltadisk disk download -g rg1 -n disk1 --file disk1.raw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDownload(cmd.Context(), g, cmd, kindDisk, opts.group, opts.name, opts.downloadOptions)
		},
	}
	opts.diskRef.addFlags(cmd.Flags())
	opts.downloadOptions.addFlags(cmd.Flags())
	require(cmd, "resource-group", "name", "file")
	return cmd
}

// downloadResult is what a download prints.
type downloadResult struct {
	Source          string `json:"source"`
	File            string `json:"file"`
	Format          string `json:"format"`
	SizeBytes       int64  `json:"sizeBytes"`
	DataBytes       int64  `json:"dataBytes"`
	DownloadedBytes int64  `json:"downloadedBytes"`
	ResumedBytes    int64  `json:"resumedBytes"`
}

// downloadState is FILE.partial.json: what a later run needs to continue
// a download.
type downloadState struct {
	Version  int    `json:"version"`
	Resource string `json:"resource"`
	UniqueID string `json:"uniqueId"`
	ETag     string `json:"etag"`
	Format   string `json:"format"`
	// SAS is the grant the download used. A run killed before it could
	// revoke leaves the grant in force, and the next run carries on
	// with it rather than be refused a second one.
	SAS string `json:"sas,omitempty"`
	// Done are the [start, end) runs of the disk's bytes already in the
	// partial file, and synced to it.
	Done [][2]int64 `json:"done"`
}

const downloadStateVersion = 1

// downloadFormat resolves --format, or the default the file's extension
// gives.
func downloadFormat(file, format string) (string, error) {
	if format != "" {
		return oneOf("--format", format, formatVHD, formatRaw)
	}
	switch strings.ToLower(filepath.Ext(file)) {
	case ".raw", ".img":
		return formatRaw, nil
	}
	return formatVHD, nil
}

func runDownload(ctx context.Context, g *globals, cmd *cobra.Command, kind resourceKind, group, name string, opts downloadOptions) error {
	format, err := downloadFormat(opts.file, opts.format)
	if err != nil {
		return err
	}
	if opts.parallel < 1 || opts.parallel > maxParallel {
		return usagef("--parallel must be from 1 to %d", maxParallel)
	}
	if fi, err := os.Stat(opts.file); err == nil && fi.IsDir() {
		return usagef("--file %s is a directory; name the file to write", opts.file)
	}
	c, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.close()
	t, err := c.getTarget(ctx, kind, group, name)
	if err != nil {
		return err
	}
	d := &downloader{g: g, c: c, t: t, file: opts.file, format: format, parallel: opts.parallel,
		partial: opts.file + ".partial", statePath: opts.file + ".partial.json"}
	return d.run(ctx, cmd)
}

// downloader reads a disk or snapshot into a file.
type downloader struct {
	g         *globals
	c         *client
	t         target
	file      string
	format    string
	parallel  int
	partial   string
	statePath string

	pb    *pageblob.Client
	etag  azcore.ETag
	out   *os.File
	bar   *progress
	state downloadState

	mu        sync.Mutex
	done      []extent // runs in the partial file, merged into state.Done when saved
	dirty     bool
	fetched   int64
	stateSave time.Time
}

func (d *downloader) run(ctx context.Context, cmd *cobra.Command) (err error) {
	t := d.t
	prev := d.loadState()
	switch {
	case t.state == "ActiveSAS" || t.state == "ActiveUpload" || t.state == "ActiveSASFrozen":
		// A grant is in force: this download's own, if a killed run
		// left it, or someone else's.
		if prev == nil || prev.SAS == "" || !d.sasWorks(ctx, prev.SAS) {
			return activeGrantError(t)
		}
		d.state.SAS = prev.SAS
	default:
		sas, err := d.c.grant(ctx, t, armcompute.AccessLevelRead, transferGrantSeconds)
		if err != nil {
			return err
		}
		d.state.SAS = sas
	}
	defer func() {
		if rerr := d.c.revoke(ctx, t); rerr != nil {
			d.g.warn("could not revoke the access to %s '%s': %s; revoke it with 'deltadisk %s revoke-access -g %s -n %s'",
				t.kind.noun(), t.name, firstLine(connError(rerr).Error()), t.kind.noun(), t.group, t.name)
		}
	}()
	if d.pb, err = d.c.pageBlob(d.state.SAS); err != nil {
		return err
	}
	props, err := d.pb.GetProperties(ctx, nil)
	if err != nil {
		return dataPlaneError(err)
	}
	if props.ETag == nil || props.ContentLength == nil {
		return fmt.Errorf("the server sent no ETag or length for %s '%s'", t.kind.noun(), t.name)
	}
	d.etag = *props.ETag
	if *props.ContentLength != t.sizeBytes+vhd.FooterSize {
		return fmt.Errorf("%s '%s' holds %d bytes, but its blob has %d (want the disk's bytes and a %d-byte footer)",
			t.kind.noun(), t.name, t.sizeBytes, *props.ContentLength, vhd.FooterSize)
	}
	if prev != nil && prev.ETag != string(d.etag) {
		d.g.warn("%s '%s' changed since %s was written (its ETag is new): starting over.", t.kind.noun(), t.name, d.partial)
		prev = nil
	}
	d.state = downloadState{Version: downloadStateVersion, Resource: t.id, UniqueID: t.uniqueID, ETag: string(d.etag), Format: d.format, SAS: d.state.SAS}
	resumed := int64(0)
	if prev != nil {
		for _, r := range prev.Done {
			d.done = appendExtent(d.done, extent{start: r[0], end: r[1]})
		}
	}

	footer, err := d.footer(ctx)
	if err != nil {
		return err
	}
	runs, _, err := pageRanges(ctx, d.pb, &d.etag)
	if err != nil {
		return d.explain(err)
	}
	runs = clip(runs, 0, t.sizeBytes)
	var todo []extent
	var dataBytes, todoBytes int64
	for _, r := range runs {
		for s := r.start; s < r.end; {
			e := min(roundUp(s+1, chunkSize), r.end)
			p := extent{start: s, end: e}
			dataBytes += e - s
			if covered(d.done, p) {
				resumed += e - s
			} else {
				todo = append(todo, p)
				todoBytes += e - s
			}
			s = e
		}
	}

	if err := d.openPartial(prev != nil); err != nil {
		return err
	}
	defer func() {
		if d.out != nil {
			d.out.Close()
		}
	}()
	if err := d.saveState(true); err != nil {
		return err
	}
	desc := "downloading " + t.name
	if resumed > 0 {
		desc = "resuming " + t.name
	}
	d.bar = d.g.newProgress(desc, todoBytes)
	if err := d.fetchAll(ctx, todo); err != nil {
		d.bar.abort()
		if serr := d.saveState(true); serr != nil {
			d.g.warn("could not save %s: %v", d.statePath, serr)
		}
		if isBlobStatus(err, http.StatusPreconditionFailed) {
			d.discard()
			return d.explain(err)
		}
		if ctx.Err() != nil {
			d.g.warn("the partial download is kept in %s: run the command again to resume it.", d.partial)
			return err
		}
		return fmt.Errorf("%w\nthe partial download is kept in %s: run the command again to resume it", d.explain(err), d.partial)
	}
	d.bar.finish()

	// Nothing changed while the ranges were read: the page list, pinned to
	// the ETag, is the one the download followed.
	after, _, err := pageRanges(ctx, d.pb, &d.etag)
	if err != nil {
		return d.explain(err)
	}
	if !slices.Equal(clip(after, 0, t.sizeBytes), runs) {
		d.discard()
		return fmt.Errorf("%s '%s' changed during the download (its page ranges differ); run the command again", t.kind.noun(), t.name)
	}
	if d.format == formatVHD {
		if _, err := d.out.WriteAt(footer, t.sizeBytes); err != nil {
			return err
		}
	}
	if err := d.out.Sync(); err != nil {
		return err
	}
	if err := d.out.Close(); err != nil {
		d.out = nil
		return err
	}
	d.out = nil
	if err := os.Rename(d.partial, d.file); err != nil {
		return err
	}
	_ = os.Remove(d.statePath)
	size := t.sizeBytes
	if d.format == formatVHD {
		size += vhd.FooterSize
	}
	return d.g.output(cmd, downloadResult{
		Source: t.id, File: d.file, Format: d.format, SizeBytes: size, DataBytes: dataBytes,
		DownloadedBytes: d.fetched, ResumedBytes: resumed,
	}, nil)
}

// loadState reads the state a previous run left, if it is of this
// resource and format and its partial file is there.
func (d *downloader) loadState() *downloadState {
	b, err := os.ReadFile(d.statePath)
	if err != nil {
		return nil
	}
	var s downloadState
	if json.Unmarshal(b, &s) != nil || s.Version != downloadStateVersion || !strings.EqualFold(s.Resource, d.t.id) ||
		s.UniqueID != d.t.uniqueID || s.Format != d.format {
		d.g.warn("%s is not a download of %s '%s' as %s: starting over.", d.statePath, d.t.kind.noun(), d.t.name, d.format)
		return nil
	}
	if _, err := os.Stat(d.partial); err != nil {
		return nil
	}
	return &s
}

// sasWorks reports whether a SAS a previous run saved still reads.
func (d *downloader) sasWorks(ctx context.Context, sas string) bool {
	pb, err := d.c.pageBlob(sas)
	if err != nil {
		return false
	}
	_, err = pb.GetProperties(ctx, nil)
	return err == nil
}

// footer reads the blob's VHD footer and checks it describes the disk.
func (d *downloader) footer(ctx context.Context) ([]byte, error) {
	b := make([]byte, vhd.FooterSize)
	if err := d.fetchOnce(ctx, extent{start: d.t.sizeBytes, end: d.t.sizeBytes + vhd.FooterSize}, b); err != nil {
		return nil, d.explain(err)
	}
	f, err := vhd.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("the server's VHD footer for %s '%s' is not valid: %w", d.t.kind.noun(), d.t.name, err)
	}
	if f.CurrentSize != d.t.sizeBytes {
		return nil, fmt.Errorf("the server's VHD footer for %s '%s' says %d bytes, the %s holds %d", d.t.kind.noun(), d.t.name, f.CurrentSize, d.t.kind.noun(), d.t.sizeBytes)
	}
	return b, nil
}

// openPartial opens FILE.partial to continue it, or creates it afresh,
// sized as the finished file: a sparse file whose holes are never
// written.
func (d *downloader) openPartial(resume bool) error {
	flag := os.O_RDWR | os.O_CREATE
	if !resume {
		flag |= os.O_TRUNC
		d.done = nil
	}
	f, err := os.OpenFile(d.partial, flag, 0o644)
	if err != nil {
		return err
	}
	size := d.t.sizeBytes
	if d.format == formatVHD {
		size += vhd.FooterSize
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	d.out = f
	return nil
}

// discard removes the partial file and its state: what they hold cannot
// be continued.
func (d *downloader) discard() {
	if d.out != nil {
		d.out.Close()
		d.out = nil
	}
	_ = os.Remove(d.partial)
	_ = os.Remove(d.statePath)
}

// fetchAll reads the runs with d.parallel workers into the partial file,
// saving the state about once a second.
func (d *downloader) fetchAll(ctx context.Context, todo []extent) error {
	work := make(chan extent)
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		defer close(work)
		for _, p := range todo {
			select {
			case work <- p:
			case <-ectx.Done():
				return ectx.Err()
			}
		}
		return nil
	})
	for range d.parallel {
		eg.Go(func() error {
			buf := make([]byte, chunkSize)
			for p := range work {
				b := buf[:p.end-p.start]
				if err := d.fetch(ectx, p, b); err != nil {
					return err
				}
				if _, err := d.out.WriteAt(b, p.start); err != nil {
					return err
				}
				d.bar.add(p.end - p.start)
				d.mu.Lock()
				d.done = insertExtent(d.done, p)
				d.fetched += p.end - p.start
				d.dirty = true
				d.mu.Unlock()
				if err := d.saveState(false); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// fetch reads one run, retrying a read whose body breaks off or arrives
// damaged; a request that fails outright was retried by the SDK already.
func (d *downloader) fetch(ctx context.Context, p extent, b []byte) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err = d.fetchOnce(ctx, p, b)
		var be *bodyError
		if err == nil || !errors.As(err, &be) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// bodyError is an answer whose body broke off or does not match the MD5
// the server sent with it: worth asking for again.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// errDamaged is a range whose bytes do not match the MD5 the server sent.
var errDamaged = errors.New("the bytes received do not match the MD5 the server computed for them")

// fetchOnce reads one run of at most 4 MiB into b, checked against the
// server's MD5 of it and pinned to the ETag.
func (d *downloader) fetchOnce(ctx context.Context, p extent, b []byte) error {
	n := p.end - p.start
	resp, err := d.pb.DownloadStream(ctx, &blob.DownloadStreamOptions{
		Range: blob.HTTPRange{Offset: p.start, Count: n}, RangeGetContentMD5: to.Ptr(true), AccessConditions: ifMatch(d.etag),
	})
	if err != nil {
		return dataPlaneError(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength == nil || *resp.ContentLength != n {
		return fmt.Errorf("asked for %d bytes at %d, the server sent %v", n, p.start, resp.ContentLength)
	}
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		return &bodyError{fmt.Errorf("reading %d bytes at %d: %w", n, p.start, err)}
	}
	if len(resp.ContentMD5) != md5.Size {
		return fmt.Errorf("the server sent no Content-MD5 for the %d bytes at %d", n, p.start)
	}
	if sum := md5.Sum(b); !bytes.Equal(sum[:], resp.ContentMD5) {
		return &bodyError{fmt.Errorf("%d bytes at %d: %w", n, p.start, errDamaged)}
	}
	return nil
}

// saveState writes FILE.partial.json, at most once a second unless now:
// first the partial file is synced, so that the state never records a
// range that is not on disk; then the state is replaced atomically.
func (d *downloader) saveState(now bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !now && (!d.dirty || time.Since(d.stateSave) < time.Second) {
		return nil
	}
	if d.out != nil {
		if err := d.out.Sync(); err != nil {
			return err
		}
	}
	d.state.Done = d.state.Done[:0]
	for _, r := range d.done {
		d.state.Done = append(d.state.Done, [2]int64{r.start, r.end})
	}
	b, err := json.Marshal(d.state)
	if err != nil {
		return err
	}
	tmp := d.statePath + ".tmp"
	// 0600: it holds the SAS.
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, d.statePath); err != nil {
		return err
	}
	d.dirty, d.stateSave = false, time.Now()
	return nil
}

// explain adds what a data-plane refusal means for a download.
func (d *downloader) explain(err error) error {
	kind := d.t.kind.noun()
	switch {
	case isBlobStatus(err, http.StatusPreconditionFailed):
		return fmt.Errorf("%s '%s' changed during the download (%w); run the command again to download it as it is now", kind, d.t.name, err)
	case isBlobStatus(err, http.StatusForbidden):
		return fmt.Errorf("the access to %s '%s' was revoked or expired during the download (%w)", kind, d.t.name, err)
	}
	return err
}

// covered reports whether the sorted, merged runs cover p.
func covered(runs []extent, p extent) bool {
	var n int64
	for _, r := range overlapping(runs, p.start, p.end) {
		n += r.end - r.start
	}
	return n == p.end-p.start
}

// insertExtent adds e to sorted, merged runs.
func insertExtent(runs []extent, e extent) []extent {
	i, _ := slices.BinarySearchFunc(runs, e.start, func(r extent, off int64) int { return cmp.Compare(r.start, off) })
	runs = slices.Insert(runs, i, e)
	merged := runs[:0]
	for _, r := range runs {
		if n := len(merged); n > 0 && merged[n-1].end >= r.start {
			merged[n-1].end = max(merged[n-1].end, r.end)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}
