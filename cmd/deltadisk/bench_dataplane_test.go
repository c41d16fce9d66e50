package main_test

// BenchmarkDataPlane measures the page-blob data plane of the real binary
// with the official azblob page-blob client, beside two baselines run in
// the same loop: Azurite (the blob emulator, npm package azurite) and Go's
// http.ServeContent serving the same bytes from a file in the page cache.
// Every server speaks HTTPS with the same certificate (deltadisk's own
// ECDSA P-256 server certificate, which Azurite is given with --cert and
// --key), HTTP/1.1, to the same http.Client and the same pageblob client
// options, so the servers are the only difference.
//
//   - upload: size bytes of random data with Put Pages of 4 MiB, par at a
//     time, into an Upload disk of deltadisk and a page blob of Azurite.
//   - download: the same size bytes plus the VHD footer, with the SDK's
//     parallel download (DownloadBuffer: block 4 MiB, concurrency par), from
//     a snapshot of deltadisk, a page blob of Azurite holding the same bytes
//     and http.ServeContent in a child process (this test binary).
//   - pageranges: Get Page Ranges (the whole pager) of a 1 GiB blob with
//     scattered 4 KiB writes, each in a 64 KiB block of its own, so both
//     servers list the same number of ranges.
//
// Each sub-benchmark named compare runs the candidates in turn, once each
// per iteration (rotating the order), and reports their median
// throughputs or times and the ratios; scripts/bench-dataplane.sh gathers
// them into a table.
//
// By default the sizes are small (32 MiB, 100 writes) and Azurite only runs
// when DELTADISK_BENCH_AZURITE names its azurite-blob executable, so that
// CI's `go test -run='^$' -bench=. -benchtime=1x ./...` stays quick and
// needs no Node. DELTADISK_BENCH_FULL=1 selects the sizes of the issue
// (1 GiB, 1,000 writes) and requires Azurite.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	encbin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/vhd"
)

const (
	// benchFullEnv selects the sizes.
	benchFullEnv = "DELTADISK_BENCH_FULL"
	// azuriteEnv names the azurite-blob executable; without it Azurite
	// does not run (an error at full size).
	azuriteEnv = "DELTADISK_BENCH_AZURITE"
	// azuriteModeEnv is "memory" (--inMemoryPersistence, the default) or
	// "disk" (a workspace in a temp dir).
	azuriteModeEnv = "DELTADISK_BENCH_AZURITE_MODE"
	// parEnv overrides the parallelism of uploads and downloads (8).
	parEnv = "DELTADISK_BENCH_PAR"

	// The ServeContent child: the file it serves and its certificate.
	serveFileEnv = "DELTADISK_BENCH_SERVE_FILE"
	serveCertEnv = "DELTADISK_BENCH_SERVE_CERT"
	serveKeyEnv  = "DELTADISK_BENCH_SERVE_KEY"

	// Azurite's well-known development account.
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

	putSize   = 4 << 20 // bytes per Put Page in the upload
	blockSize = 4 << 20 // bytes per ranged GET of the parallel download
)

// init turns this test binary into the ServeContent baseline when the
// benchmark starts it as a child: it serves one file over HTTPS on a free
// loopback port (and discards the bodies of PUTs), prints the address, and
// exits when its stdin closes.
func init() {
	path := os.Getenv(serveFileEnv)
	if path == "" {
		return
	}
	if err := serveContentChild(path, os.Getenv(serveCertEnv), os.Getenv(serveKeyEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "servecontent child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveContentChild(path, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// As http.FileServer does: open the file per request and let
	// ServeContent answer ranges and conditions. The SDK sends its range
	// as x-ms-range, which becomes the Range that ServeContent reads. The
	// ETag makes the SDK's parallel download send If-Match, as it does to
	// the blob servers.
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				// The discarding server of BenchmarkManyWriters: read
				// the body, keep nothing, answer as Put Page does.
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.Header().Set("ETag", `"0x8D0000000000001"`)
				w.WriteHeader(http.StatusCreated)
				return
			}
			if v := r.Header.Get("x-ms-range"); v != "" {
				r.Header.Set("Range", v)
			}
			f, err := os.Open(path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			w.Header().Set("ETag", `"0x8D0000000000001"`)
			w.Header().Set("x-ms-blob-type", "PageBlob")
			http.ServeContent(w, r, "", st.ModTime(), f)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("listening %s\n", ln.Addr())
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// dpSizes are a run's sizes.
type dpSizes struct {
	data   int64 // bytes uploaded and downloaded (the blob is data + 512)
	writes int   // 4 KiB writes of the page-range blob (1 GiB)
	par    int   // requests in flight in uploads and downloads
}

func dataPlaneSizes(b *testing.B) dpSizes {
	s := dpSizes{data: 32 << 20, writes: 100, par: 8}
	if os.Getenv(benchFullEnv) == "1" {
		s = dpSizes{data: oneGiB, writes: 1000, par: 8}
	}
	if v := os.Getenv(parEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", parEnv, v)
		}
		s.par = n
	}
	return s
}

func BenchmarkDataPlane(b *testing.B) {
	sz := dataPlaneSizes(b)
	dd := startBenchDeltadisk(b)
	httpc := benchHTTPClient(dd.pool)
	var az *benchAzurite
	switch path := os.Getenv(azuriteEnv); {
	case path != "":
		az = startBenchAzurite(b, path, dd.dir, httpc)
	case os.Getenv(benchFullEnv) == "1":
		b.Fatalf("%s=1 needs %s (the azurite-blob executable); scripts/bench-dataplane.sh installs it", benchFullEnv, azuriteEnv)
	default:
		b.Logf("%s is not set: Azurite does not run, only deltadisk and ServeContent", azuriteEnv)
	}
	pc := func(sasURL string) *pageblob.Client { return benchPageClient(b, sasURL, httpc) }
	logTLS(b, httpc, "deltadisk", dd.creds.ResourceManagerURL+"healthz")
	if az != nil {
		logTLS(b, httpc, "azurite", az.url+"/"+azuriteAccount+"?comp=list")
	}
	b.Logf("sizes: data %s, %d page-range writes, parallelism %d", sizeName(sz.data), sz.writes, sz.par)

	b.Run(fmt.Sprintf("upload/size=%s/put=4MiB/par=%d/compare", sizeName(sz.data), sz.par), func(b *testing.B) {
		ctx := b.Context()
		data := randomBytes(sz.data, 1)
		dd.uploadDisk(b, "up", sz.data+vhd.FooterSize)
		cands := []candidate{{"deltadisk", pc(dd.grant(b, "up", true, armcompute.AccessLevelWrite)), dd.pid}}
		if az != nil {
			cands = append(cands, candidate{"azurite", pc(az.blob(b, "up", sz.data+vhd.FooterSize)), az.pid})
		}
		var stamp uint64
		tails := make(map[string][]byte) // the last 4 MiB each candidate was sent
		compare(b, cands, func(c candidate) {
			// New bytes in every 64 KiB block each time, so that no chunk
			// deduplicates against an earlier upload.
			stamp++
			stampBlocks(data, stamp)
			if err := putPages(ctx, c.client, data, 0, putSize, sz.par); err != nil {
				b.Fatalf("%s: upload: %v", c.name, err)
			}
			tails[c.name] = append(tails[c.name][:0], data[sz.data-putSize:]...)
		}, func(d time.Duration) float64 { return mbps(sz.data, d) }, "MB/s", true)
		for _, c := range cands {
			if got := benchRead(b, c.client, sz.data-putSize, putSize); !bytes.Equal(got, tails[c.name]) {
				b.Fatalf("%s: the last upload reads back differently", c.name)
			}
		}
	})

	b.Run(fmt.Sprintf("download/size=%s/block=4MiB/par=%d/compare", sizeName(sz.data+vhd.FooterSize), sz.par), func(b *testing.B) {
		ctx := b.Context()
		data := randomBytes(sz.data, 2)
		total := sz.data + vhd.FooterSize
		// deltadisk: an Upload disk, revoked (which validates the footer),
		// snapshotted, and the snapshot granted Read.
		dd.uploadDisk(b, "down", total)
		w := pc(dd.grant(b, "down", true, armcompute.AccessLevelWrite))
		footer := vhdFooterBytes(b, sz.data)
		if err := putPages(ctx, w, data, 0, putSize, sz.par); err != nil {
			b.Fatal(err)
		}
		if err := putPages(ctx, w, footer, sz.data, putSize, 1); err != nil {
			b.Fatal(err)
		}
		dd.revoke(b, "down", true)
		dd.snapshot(b, "down1", "down")
		cands := []candidate{{"deltadisk", pc(dd.grant(b, "down1", false, armcompute.AccessLevelRead)), dd.pid}}

		// The expected bytes: the data and the snapshot's footer (the
		// server's, naming the snapshot).
		want := make([]byte, total)
		copy(want, data)
		copy(want[sz.data:], benchRead(b, cands[0].client, sz.data, vhd.FooterSize))
		data = nil
		if !bytes.HasPrefix(want[sz.data:], []byte("conectix")) {
			b.Fatalf("the snapshot's footer is %x", want[sz.data:sz.data+16])
		}
		if az != nil {
			c := pc(az.blob(b, "down", total))
			if err := putPages(ctx, c, want, 0, putSize, sz.par); err != nil {
				b.Fatal(err)
			}
			cands = append(cands, candidate{"azurite", c, az.pid})
		}
		file := filepath.Join(b.TempDir(), "blob.vhd")
		if err := os.WriteFile(file, want, 0o600); err != nil {
			b.Fatal(err)
		}
		scURL, scPid := startServeContent(b, file, dd.dir)
		cands = append(cands, candidate{"servecontent", pc(scURL + "/blob.vhd"), scPid})

		buf := make([]byte, total)
		download := func(c candidate) {
			n, err := c.client.DownloadBuffer(ctx, buf, &blob.DownloadBufferOptions{BlockSize: blockSize, Concurrency: uint16(sz.par)})
			if err != nil || n != total {
				b.Fatalf("%s: DownloadBuffer = %d, %v; want %d bytes", c.name, n, err, total)
			}
		}
		// One untimed download each, checked: it also brings every
		// server's bytes into the page cache.
		for _, c := range cands {
			clear(buf)
			download(c)
			if !bytes.Equal(buf, want) {
				b.Fatalf("%s: the download differs from the data", c.name)
			}
		}
		compare(b, cands, download, func(d time.Duration) float64 { return mbps(total, d) }, "MB/s", true)
	})

	b.Run(fmt.Sprintf("pageranges/blob=1GiB/writes=%dx4KiB/compare", sz.writes), func(b *testing.B) {
		ctx := b.Context()
		offs := scatteredOffsets(sz.writes, oneGiB, 3)
		page := randomBytes(int64(sz.writes)*4096, 3)
		footer := vhdFooterBytes(b, oneGiB)
		write := func(c *pageblob.Client) {
			b.Helper()
			if err := scatteredWrites(ctx, c, page, offs, sz.par); err != nil {
				b.Fatal(err)
			}
			if err := putPages(ctx, c, footer, oneGiB, putSize, 1); err != nil {
				b.Fatal(err)
			}
		}
		dd.uploadDisk(b, "pr", oneGiB+vhd.FooterSize)
		write(pc(dd.grant(b, "pr", true, armcompute.AccessLevelWrite)))
		dd.revoke(b, "pr", true)
		dd.snapshot(b, "pr1", "pr")
		cands := []candidate{{"deltadisk", pc(dd.grant(b, "pr1", false, armcompute.AccessLevelRead)), dd.pid}}
		if az != nil {
			c := pc(az.blob(b, "pr", oneGiB+vhd.FooterSize))
			write(c)
			cands = append(cands, candidate{"azurite", c, az.pid})
		}
		list := func(c candidate) int {
			n := 0
			pager := c.client.NewGetPageRangesPager(nil)
			for pager.More() {
				p, err := pager.NextPage(ctx)
				if err != nil {
					b.Fatalf("%s: GetPageRanges: %v", c.name, err)
				}
				n += len(p.PageRange) + len(p.ClearRange)
			}
			return n
		}
		// Each write is a range of its own, and so is the footer.
		for _, c := range cands {
			if n := list(c); n != sz.writes+1 {
				b.Fatalf("%s: GetPageRanges lists %d ranges, want %d", c.name, n, sz.writes+1)
			}
		}
		compare(b, cands, func(c candidate) { list(c) }, func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }, "ms", false)
	})
}

// candidate is one server under comparison, through its page-blob client,
// and the process that serves it.
type candidate struct {
	name   string
	client *pageblob.Client
	pid    int
}

// compare runs run on each candidate in turn, once each per b.Loop
// iteration (rotating which goes first), as the engine's benchmarks do:
// every candidate meets the same neighbours, and the median discards the
// stalls. It reports each candidate's median time through metric as
// name-unit, the ratio deltadisk:baseline for each baseline as
// ratio-baseline, oriented so that above 1 means deltadisk is faster
// (higherIsBetter says how metric reads), and the mean CPU time of each
// server process per run as name-cpu-ms.
func compare(b *testing.B, cands []candidate, run func(candidate), metric func(time.Duration) float64, unit string, higherIsBetter bool) {
	b.Helper()
	times := make([][]time.Duration, len(cands))
	cpu := make([]time.Duration, len(cands))
	for i := 0; b.Loop(); i++ {
		for j := range cands {
			k := (i + j) % len(cands)
			c0 := processCPU(b, cands[k].pid)
			start := time.Now()
			run(cands[k])
			times[k] = append(times[k], time.Since(start))
			cpu[k] += processCPU(b, cands[k].pid) - c0
		}
	}
	vals := make([]float64, len(cands))
	for k, ts := range times {
		slices.Sort(ts)
		b.Logf("%s: %d runs, min %v, median %v, max %v", cands[k].name, len(ts), ts[0], ts[len(ts)/2], ts[len(ts)-1])
		vals[k] = metric(ts[len(ts)/2])
		b.ReportMetric(vals[k], cands[k].name+"-"+unit)
		b.ReportMetric(float64(cpu[k])/float64(len(ts))/float64(time.Millisecond), cands[k].name+"-cpu-ms")
	}
	for k := 1; k < len(cands); k++ {
		r := vals[0] / vals[k]
		if !higherIsBetter {
			r = vals[k] / vals[0]
		}
		b.ReportMetric(r, "ratio-"+cands[k].name)
	}
}

// processCPU is the user and system time a process has used so far, from
// /proc (in clock ticks of 10 ms).
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	p, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which ends with the last ')':
	// state is the first, utime and stime the 12th and 13th.
	f := strings.Fields(string(p[bytes.LastIndexByte(p, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func sizeName(n int64) string {
	switch {
	case n%oneGiB == 0:
		return fmt.Sprintf("%dGiB", n/oneGiB)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n > oneGiB && (n-vhd.FooterSize)%oneGiB == 0:
		return fmt.Sprintf("%dGiB+512", (n-vhd.FooterSize)/oneGiB)
	case n > 1<<20 && (n-vhd.FooterSize)%(1<<20) == 0:
		return fmt.Sprintf("%dMiB+512", (n-vhd.FooterSize)>>20)
	}
	return strconv.FormatInt(n, 10)
}

// randomBytes are n bytes that neither compress nor deduplicate.
func randomBytes(n int64, seed uint64) []byte {
	p := make([]byte, n)
	var s [32]byte
	encbin.LittleEndian.PutUint64(s[:], seed)
	_, _ = rand.NewChaCha8(s).Read(p)
	return p
}

// stampBlocks writes v into the first 8 bytes of every 64 KiB block.
func stampBlocks(p []byte, v uint64) {
	for off := 0; off+8 <= len(p); off += 64 << 10 {
		encbin.LittleEndian.PutUint64(p[off:], v)
	}
}

// putPages writes p at off with Put Pages of at most put bytes, par at a
// time.
func putPages(ctx context.Context, c *pageblob.Client, p []byte, off int64, put, par int) error {
	n := (len(p) + put - 1) / put
	return parallel(ctx, n, par, func(ctx context.Context, i int) error {
		lo := i * put
		hi := min(lo+put, len(p))
		_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(p[lo:hi])),
			blob.HTTPRange{Offset: off + int64(lo), Count: int64(hi - lo)}, nil)
		if err != nil {
			return fmt.Errorf("UploadPages at %d (%d bytes): %w", off+int64(lo), hi-lo, err)
		}
		return nil
	})
}

// scatteredWrites writes the i-th 4 KiB of page at offs[i], par at a time.
func scatteredWrites(ctx context.Context, c *pageblob.Client, page []byte, offs []int64, par int) error {
	return parallel(ctx, len(offs), par, func(ctx context.Context, i int) error {
		_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page[i*4096:(i+1)*4096])),
			blob.HTTPRange{Offset: offs[i], Count: 4096}, nil)
		return err
	})
}

// parallel runs f(0..n-1) on par goroutines and returns the first error.
func parallel(ctx context.Context, n, par int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// scatteredOffsets picks n 4 KiB-aligned offsets in [0, size), each in a
// 64 KiB block of its own with no neighbour written, in offset order, so
// that a server listing 4 KiB pages and one listing 64 KiB blocks both
// show n ranges.
func scatteredOffsets(n int, size int64, seed uint64) []int64 {
	const block = 64 << 10
	blocks := int(size / block)
	r := rand.New(rand.NewPCG(seed, seed))
	taken := make(map[int]bool)
	var offs []int64
	for len(offs) < n {
		k := r.IntN(blocks)
		if taken[k] || taken[k-1] || taken[k+1] {
			continue
		}
		taken[k] = true
		offs = append(offs, int64(k)*block+int64(r.IntN(block/4096))*4096)
	}
	slices.Sort(offs)
	return offs
}

// benchRead downloads count bytes at off.
func benchRead(b *testing.B, c *pageblob.Client, off, count int64) []byte {
	b.Helper()
	r, err := c.DownloadStream(b.Context(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off, Count: count}})
	if err != nil {
		b.Fatalf("DownloadStream %d+%d: %v", off, count, err)
	}
	defer r.Body.Close()
	p, err := io.ReadAll(r.Body)
	if err != nil || int64(len(p)) != count {
		b.Fatalf("DownloadStream %d+%d: %d bytes, %v", off, count, len(p), err)
	}
	return p
}

// vhdFooterBytes is the fixed VHD footer of a disk of size bytes, as a
// client's tool writes it.
func vhdFooterBytes(b *testing.B, size int64) []byte {
	b.Helper()
	f, err := vhd.New(size, uuid.New(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	p, err := f.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchHTTPClient is the one client of every server: HTTP/1.1 over TLS,
// trusting deltadisk's CA, with enough idle connections per host that a
// parallel transfer reuses its connections instead of handshaking again.
func benchHTTPClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func benchPageClient(b *testing.B, sasURL string, httpc *http.Client) *pageblob.Client {
	b.Helper()
	c, err := pageblob.NewClientWithNoCredential(sasURL, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: httpc,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// logTLS logs the TLS version and cipher suite a server negotiates with
// the benchmark's client.
func logTLS(b *testing.B, httpc *http.Client, name, url string) {
	b.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.TLS == nil {
		b.Fatalf("%s: not TLS", name)
	}
	b.Logf("%s: %s, %s, %s", name, resp.Proto, tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite))
}

// benchDeltadisk is a `deltadisk serve` of the binary TestMain built, with
// ARM clients logged in as its default principal.
type benchDeltadisk struct {
	pid    int
	dir    string
	creds  credentials
	pool   *x509.CertPool
	disks  *armcompute.DisksClient
	snaps  *armcompute.SnapshotsClient
	rgName string
}

func startBenchDeltadisk(b *testing.B) *benchDeltadisk {
	b.Helper()
	dd := &benchDeltadisk{dir: b.TempDir(), rgName: "bench"}
	logf, err := os.Create(filepath.Join(b.TempDir(), "deltadisk.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--data-dir", dd.dir, "--listen", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	dd.pid = cmd.Process.Pid
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			b.Fatalf("deltadisk serve did not become healthy; stderr:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
		p, err := os.ReadFile(filepath.Join(dd.dir, "credentials.json"))
		if err != nil || json.Unmarshal(p, &dd.creds) != nil {
			continue
		}
		ca, err := os.ReadFile(dd.creds.CACertFile)
		if err != nil {
			continue
		}
		dd.pool = x509.NewCertPool()
		dd.pool.AppendCertsFromPEM(ca)
		resp, err := benchHTTPClient(dd.pool).Get(dd.creds.ResourceManagerURL + "healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}

	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: dd.pool}}, Timeout: 60 * time.Second}
	opts := azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: strings.TrimSuffix(dd.creds.Authority, "adfs"),
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: dd.creds.ResourceManagerURL, Audience: dd.creds.Audience},
			},
		},
		Transport: httpc,
	}
	cred, err := azidentity.NewClientSecretCredential("adfs", dd.creds.ClientID, dd.creds.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		b.Fatal(err)
	}
	armOpts := &arm.ClientOptions{ClientOptions: opts}
	groups, err1 := armresources.NewResourceGroupsClient(dd.creds.SubscriptionID, cred, armOpts)
	disks, err2 := armcompute.NewDisksClient(dd.creds.SubscriptionID, cred, armOpts)
	snaps, err3 := armcompute.NewSnapshotsClient(dd.creds.SubscriptionID, cred, armOpts)
	if err := errors.Join(err1, err2, err3); err != nil {
		b.Fatal(err)
	}
	dd.disks, dd.snaps = disks, snaps
	if _, err := groups.CreateOrUpdate(b.Context(), dd.rgName, armresources.ResourceGroup{Location: to.Ptr("eastus")}, nil); err != nil {
		b.Fatal(err)
	}
	return dd
}

// uploadDisk creates an Upload disk awaiting size bytes (footer included).
func (dd *benchDeltadisk) uploadDisk(b *testing.B, name string, size int64) {
	b.Helper()
	p, err := dd.disks.BeginCreateOrUpdate(b.Context(), dd.rgName, name, armcompute.Disk{Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(size)}}}, nil)
	if err == nil {
		_, err = p.PollUntilDone(b.Context(), nil)
	}
	if err != nil {
		b.Fatalf("create upload disk %s: %v", name, err)
	}
}

// snapshot takes an incremental snapshot of a disk.
func (dd *benchDeltadisk) snapshot(b *testing.B, name, disk string) {
	b.Helper()
	d, err := dd.disks.Get(b.Context(), dd.rgName, disk, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := dd.snaps.BeginCreateOrUpdate(b.Context(), dd.rgName, name, armcompute.Snapshot{
		Location: to.Ptr("eastus"),
		Properties: &armcompute.SnapshotProperties{
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: d.ID},
			Incremental:  to.Ptr(true),
		},
	}, nil)
	if err == nil {
		_, err = p.PollUntilDone(b.Context(), nil)
	}
	if err != nil {
		b.Fatalf("snapshot %s of %s: %v", name, disk, err)
	}
}

// grant grants access to a disk or snapshot for an hour and returns its
// SAS URL.
func (dd *benchDeltadisk) grant(b *testing.B, name string, disk bool, access armcompute.AccessLevel) string {
	b.Helper()
	data := armcompute.GrantAccessData{Access: to.Ptr(access), DurationInSeconds: to.Ptr[int32](3600)}
	var sasURL *string
	var err error
	if disk {
		p, perr := dd.disks.BeginGrantAccess(b.Context(), dd.rgName, name, data, nil)
		if err = perr; err == nil {
			var res armcompute.DisksClientGrantAccessResponse
			if res, err = p.PollUntilDone(b.Context(), nil); err == nil {
				sasURL = res.AccessSAS
			}
		}
	} else {
		p, perr := dd.snaps.BeginGrantAccess(b.Context(), dd.rgName, name, data, nil)
		if err = perr; err == nil {
			var res armcompute.SnapshotsClientGrantAccessResponse
			if res, err = p.PollUntilDone(b.Context(), nil); err == nil {
				sasURL = res.AccessSAS
			}
		}
	}
	if err != nil || sasURL == nil {
		b.Fatalf("grant %s on %s: %v", access, name, err)
	}
	return *sasURL
}

// revoke ends the access to a disk or snapshot.
func (dd *benchDeltadisk) revoke(b *testing.B, name string, disk bool) {
	b.Helper()
	var err error
	if disk {
		p, perr := dd.disks.BeginRevokeAccess(b.Context(), dd.rgName, name, nil)
		if err = perr; err == nil {
			_, err = p.PollUntilDone(b.Context(), nil)
		}
	} else {
		p, perr := dd.snaps.BeginRevokeAccess(b.Context(), dd.rgName, name, nil)
		if err = perr; err == nil {
			_, err = p.PollUntilDone(b.Context(), nil)
		}
	}
	if err != nil {
		b.Fatalf("revoke %s: %v", name, err)
	}
}

// benchAzurite is an Azurite blob service on a free loopback port, serving
// HTTPS with deltadisk's server certificate.
type benchAzurite struct {
	pid  int
	url  string // https://127.0.0.1:port
	cred *blob.SharedKeyCredential
	cont *container.Client
}

func startBenchAzurite(b *testing.B, exe, ddDir string, httpc *http.Client) *benchAzurite {
	b.Helper()
	mode := os.Getenv(azuriteModeEnv)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			b.Fatal(err)
		}
		args := []string{"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
			"--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent",
			"--cert", filepath.Join(ddDir, "tls", "server.pem"), "--key", filepath.Join(ddDir, "tls", "server-key.pem")}
		switch mode {
		case "", "memory":
			args = append(args, "--inMemoryPersistence")
		case "disk":
			args = append(args, "--location", b.TempDir())
		default:
			b.Fatalf("%s=%q: want memory or disk", azuriteModeEnv, mode)
		}
		cmd := exec.Command(exe, args...)
		cmd.Dir = b.TempDir()
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatalf("starting Azurite (%s): %v", exe, err)
		}
		ready := make(chan bool, 1)
		var outLog bytes.Buffer
		go func() {
			sc := bufio.NewScanner(out)
			ok := false
			for sc.Scan() {
				outLog.WriteString(sc.Text() + "\n")
				if !ok && strings.Contains(sc.Text(), "successfully listens") {
					ok = true
					ready <- true
				}
			}
			if !ok {
				ready <- false
			}
		}()
		var ok bool
		select {
		case ok = <-ready:
		case <-time.After(30 * time.Second):
		}
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			lastErr = fmt.Errorf("azurite did not start: %s%s", outLog.String(), stderr.String())
			continue
		}
		b.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		if v, err := exec.Command(exe, "--version").Output(); err == nil {
			b.Logf("azurite %s (%s persistence)", strings.TrimSpace(string(v)), map[bool]string{true: "in-memory", false: "disk"}[mode != "disk"])
		}
		az := &benchAzurite{pid: cmd.Process.Pid, url: fmt.Sprintf("https://127.0.0.1:%d", port)}
		if az.cred, err = blob.NewSharedKeyCredential(azuriteAccount, azuriteKey); err != nil {
			b.Fatal(err)
		}
		az.cont, err = container.NewClientWithSharedKeyCredential(az.url+"/"+azuriteAccount+"/bench", az.cred,
			&container.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: httpc}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := az.cont.Create(b.Context(), nil); err != nil {
			b.Fatalf("azurite: create container: %v", err)
		}
		return az
	}
	b.Fatal(lastErr)
	return nil
}

// blob creates a page blob of size bytes and returns a SAS URL for it
// (read and write, an hour), signed with the account's shared key.
func (az *benchAzurite) blob(b *testing.B, name string, size int64) string {
	b.Helper()
	c := az.cont.NewPageBlobClient(name)
	if _, err := c.Create(b.Context(), size, nil); err != nil {
		b.Fatalf("azurite: create page blob %s: %v", name, err)
	}
	u, err := c.GetSASURL(sas.BlobPermissions{Read: true, Write: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServeContent starts this test binary as the ServeContent baseline
// for file, with deltadisk's server certificate, and returns its URL and
// process id.
func startServeContent(b *testing.B, file, ddDir string) (string, int) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serveFileEnv+"="+file,
		serveCertEnv+"="+filepath.Join(ddDir, "tls", "server.pem"),
		serveKeyEnv+"="+filepath.Join(ddDir, "tls", "server-key.pem"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child exits when its stdin closes
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		b.Fatalf("servecontent child: %q, %v", line, err)
	}
	return "https://" + addr, cmd.Process.Pid
}
