package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/deltadisk/deltadisk/internal/arm"
	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/local"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/nbd"
	"github.com/deltadisk/deltadisk/internal/server"
	"github.com/deltadisk/deltadisk/internal/service"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const (
	defaultListen = "127.0.0.1:8443"
	// audience is what tokens are issued for; az asks for
	// "<audience>/.default".
	audience = "https://management.deltadisk.local/"
	// defaultLocation is the location credentials.json suggests.
	defaultLocation = "eastus"
	// gcInterval is how often the server collects unreferenced chunks.
	gcInterval = 10 * time.Minute
	// replicateRetry is how soon replication that failed (a zone down)
	// is tried again.
	replicateRetry = 30 * time.Second
)

type serveOptions struct {
	dataDir   string
	listen    string
	nbdListen string
	// metricsListen is where /metrics is served over plain HTTP without a
	// token; empty: nowhere but the main listener.
	metricsListen string
	publicURL     string
	config        string
	tlsCert       string
	tlsKey        string
	logLevel      string
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data-dir", "", "directory of the embedded stores, keys and credentials.json (default $DELTADISK_DATA_DIR, else ~/.local/share/deltadisk)")
	fs.StringVar(&o.listen, "listen", defaultListen, "TCP address to serve HTTPS on; port 0 picks a free port")
	fs.StringVar(&o.nbdListen, "nbd-listen", "127.0.0.1:0", "TCP address to serve attached disks on over NBD (also on the unix socket DIR/nbd.sock)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "TCP address to serve /metrics on over plain HTTP, without a token (on --listen, /metrics needs one unless it is a loopback address)")
	fs.StringVar(&o.publicURL, "public-url", "", "URL clients reach the server at, used in credentials.json, SAS URLs and links (default https:// + the listen address)")
	fs.StringVar(&o.config, "config", "", "JSON file with extra subscriptions, principals, regions and policy (see README)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate to serve instead of the generated one (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.logLevel, "log-level", "info", "least severe log level written to stderr: debug, info, warn or error")
}

func newServeCommand(g *globals) *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the deltadisk service",
		Long: `Run the deltadisk service on an embedded store in a data directory.

The first start creates the data directory with a CA and server certificate,
a tenant, a subscription and a service principal that owns it. It keeps
credentials.json in the data directory up to date (rewriting it only when
its content changed), with what az and the Azure SDKs need to log in and
trust the server. The service runs until SIGINT or
SIGTERM, then drains requests in flight and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, opts, args)
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func runServe(ctx context.Context, g *globals, opts serveOptions, _ []string) (err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", opts.logLevel)
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	if (opts.tlsCert == "") != (opts.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	dir, err := resolveDataDir(opts.dataDir, g.getenv, g.homeDir)
	if err != nil {
		return err
	}
	// The config first: a mistake in it should change nothing on disk.
	cfg := defaultServeConfig()
	if opts.config != "" {
		if cfg, err = loadServeConfig(opts.config); err != nil {
			return err
		}
	}
	if err := prepareDataDir(dir); err != nil {
		return err
	}

	// The metadata store next: its file lock keeps a second server on the
	// same data dir from touching anything else in it.
	bcfg := bolt.DefaultConfig()
	bcfg.Path = filepath.Join(dir, metaFileName)
	bcfg.Logger = log
	metaStore, err := bolt.Open(ctx, bcfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, metaStore.Close()) }()

	st, err := loadOrCreateState(dir)
	if err != nil {
		return err
	}
	set, err := cfg.resolve(st)
	if err != nil {
		return fmt.Errorf("config %s: %w", opts.config, err)
	}

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	lnOwned := true // until the server takes it
	defer func() {
		if lnOwned {
			_ = ln.Close()
		}
	}()
	pub, err := derivePublicURL(opts.publicURL, opts.listen, ln.Addr())
	if err != nil {
		return err
	}

	var cert tls.Certificate
	var caFile string
	if opts.tlsCert != "" {
		if cert, err = server.LoadTLS(opts.tlsCert, opts.tlsKey, time.Now()); err != nil {
			return err
		}
		if caFile, err = filepath.Abs(opts.tlsCert); err != nil {
			return err
		}
	} else {
		if cert, caFile, err = server.LoadOrCreateTLS(filepath.Join(dir, tlsDirName), certHosts(pub, opts.listen), time.Now()); err != nil {
			return err
		}
	}

	zones, closeZones, err := openZoneStores(ctx, filepath.Join(dir, zonesDirName), set.regions, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeZones()) }()
	ecfg := engine.DefaultConfig()
	ecfg.Meta, ecfg.Zones, ecfg.Logger = metaStore, zones, log
	ecfg.JournalDir = filepath.Join(dir, journalDirName)
	eng, err := engine.Open(ctx, ecfg)
	if err != nil {
		return err
	}
	scfg := service.DefaultConfig()
	scfg.Meta, scfg.Engine, scfg.Logger = metaStore, eng, log
	scfg.Subscriptions, scfg.Regions, scfg.Policy = set.subscriptions, set.regions, set.policy
	svc, err := service.Open(ctx, scfg)
	if err != nil {
		return err
	}
	authority := pub.String() + "/adfs"
	icfg := identity.DefaultConfig()
	icfg.Authority, icfg.Audience, icfg.TenantID = authority, audience, st.TenantID
	icfg.Principals, icfg.SigningKey, icfg.Logger = set.principals, st.SigningKey, log
	id, err := identity.New(icfg)
	if err != nil {
		return err
	}
	// Attached disks are served over NBD on loopback TCP and a unix
	// socket in the data dir.
	nbdSrv := nbd.NewServer(nbd.Config{Logger: log})
	nbdTCP, err := net.Listen("tcp", opts.nbdListen)
	if err != nil {
		return fmt.Errorf("--nbd-listen: %w", err)
	}
	nbdCtx, stopNBD := context.WithCancel(context.WithoutCancel(ctx))
	var nbdWG sync.WaitGroup
	defer func() {
		stopNBD()
		nbdWG.Wait()
	}()
	nbdWG.Go(func() { _ = nbdSrv.Serve(nbdCtx, nbdTCP) })
	socket := filepath.Join(dir, nbdSocketName)
	_ = os.Remove(socket) // left by a server that did not stop cleanly; the meta lock says none runs now
	if nbdUnix, err := net.Listen("unix", socket); err != nil {
		log.Warn("not serving NBD on a unix socket", "path", socket, "err", err)
		socket = ""
	} else {
		nbdWG.Go(func() { _ = nbdSrv.Serve(nbdCtx, nbdUnix) })
	}
	// Stopping ends the exports and commits what their buffers hold, as an
	// orderly shutdown of a disk flushes its cache. What cannot be committed
	// (a full store) was never flushed, so no client was told it was
	// durable: it is lost as in a crash, which is no reason to fail the stop.
	attachments := server.NewAttachments(nbdSrv, eng, nbdAddr(nbdTCP.Addr(), pub), socket)
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := attachments.Close(fctx); err != nil {
			log.Warn("attached disks' unflushed writes could not be committed at stop and are lost, as in a crash", "err", err)
		}
	}()
	armHandler := arm.New(arm.Config{
		Service:   svc,
		Identity:  id,
		PublicURL: pub,
		Authority: authority,
		Audience:  audience,
		Attacher:  attachments,
		Logger:    log,
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerZoneMetrics(reg, eng)
	registerCacheMetrics(reg, eng)
	srvCfg := server.DefaultConfig()
	srvCfg.Listener = ln
	srvCfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srvCfg.ARM, srvCfg.Identity = armHandler, id.Handler()
	srvCfg.Blob = blob.New(blob.Config{Service: svc, Identity: id, Logger: log})
	srvCfg.Registry, srvCfg.Logger = reg, log
	srvCfg.MetricsAuth = id
	if opts.metricsListen != "" {
		if srvCfg.MetricsListener, err = net.Listen("tcp", opts.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	srv, err := server.New(srvCfg)
	if err != nil {
		if srvCfg.MetricsListener != nil {
			_ = srvCfg.MetricsListener.Close()
		}
		return err
	}
	lnOwned = false
	if ml := srvCfg.MetricsListener; ml != nil {
		log.Info("serving /metrics without a token", "url", "http://"+ml.Addr().String()+"/metrics")
	}

	// Cross-region copies read their sources through this server's own data
	// plane, trusting its certificate.
	transportClient, err := httpClientTrusting(caFile)
	if err != nil {
		_ = srv.Close()
		return err
	}
	stopCopies := svc.StartCopier(ctx, server.NewTransport(svc, id, pub, transportClient, reg))
	defer stopCopies()

	credPath := filepath.Join(dir, credentialsFileName)
	if err := writeCredentials(credPath, credentials{
		TenantID:           st.TenantID,
		SubscriptionID:     st.SubscriptionID,
		ClientID:           st.ClientID,
		ClientSecret:       st.ClientSecret,
		ResourceManagerURL: pub.String() + "/",
		Authority:          authority,
		Audience:           audience,
		CACertFile:         caFile,
		Location:           defaultLocation,
	}); err != nil {
		_ = srv.Close()
		return fmt.Errorf("writing %s: %w", credPath, err)
	}

	gcCtx, stopGC := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { collectGarbage(gcCtx, eng, log, gcInterval) })
	wg.Go(func() { replicate(gcCtx, eng, log, replicateRetry) })
	defer func() {
		stopGC()
		wg.Wait()
	}()

	fmt.Fprintf(g.stderr, "deltadisk serving %s (credentials: %s)\n", pub, credPath)
	return srv.Run(ctx)
}

// httpClientTrusting returns an HTTP client that trusts the PEM certificates
// in file.
func httpClientTrusting(file string) (*http.Client, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}

// openZoneStores opens a local pack store for every zone of every region,
// each in a directory of its own under dir.
func openZoneStores(ctx context.Context, dir string, regions []service.Region, log *slog.Logger) ([]engine.Zone, func() error, error) {
	var backends []*local.Backend
	closeAll := func() error {
		var err error
		for _, b := range backends {
			err = errors.Join(err, b.Close())
		}
		return err
	}
	zones, err := service.Zones(regions, func(name string) (*chunks.Store, error) {
		lcfg := local.DefaultConfig()
		lcfg.Dir = filepath.Join(dir, name)
		lcfg.Logger = log
		backend, err := local.Open(ctx, lcfg)
		if err != nil {
			return nil, err
		}
		backends = append(backends, backend)
		ccfg := chunks.DefaultConfig()
		ccfg.Backend = backend
		ccfg.Compress = true
		ccfg.Logger = log
		return chunks.New(ccfg)
	})
	if err != nil {
		return nil, nil, errors.Join(err, closeAll())
	}
	return zones, closeAll, nil
}

// derivePublicURL returns the URL clients reach the server at: the
// --public-url flag, else https:// + the listen address with the port the
// listener got (so port 0 works), and 127.0.0.1 for an unspecified host.
// The result has no trailing slash.
func derivePublicURL(flag, listen string, bound net.Addr) (*url.URL, error) {
	if flag != "" {
		u, err := url.Parse(flag)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--public-url: %w", err)
		case u.Scheme != "https" || u.Host == "" || u.Hostname() == "":
			return nil, fmt.Errorf("--public-url %q: want https://host[:port]", flag)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
			return nil, fmt.Errorf("--public-url %q: want no user, query or fragment", flag)
		case u.Path != "" && u.Path != "/":
			// ARM, identity (/adfs) and blob paths sit at the root.
			return nil, fmt.Errorf("--public-url %q: want no path; deltadisk serves at the root of its host", flag)
		}
		return &url.URL{Scheme: "https", Host: u.Host}, nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return nil, fmt.Errorf("listener address %q: %w", bound, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 {
		return nil, fmt.Errorf("listener address %q has no port", bound)
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}, nil
}

// certHosts are the names the generated certificate covers beside the
// loopback ones: the public URL's host, and the listen host when it names
// a specific interface.
// nbdAddr is the address an attach answer's nbdUri names: the NBD
// listener's, with the public URL's host where the listener has none of
// its own (0.0.0.0 or ::), which no client could dial.
func nbdAddr(listen net.Addr, pub *url.URL) string {
	host, port, err := net.SplitHostPort(listen.String())
	if err != nil {
		return listen.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = pub.Hostname()
	}
	return net.JoinHostPort(host, port)
}

func certHosts(pub *url.URL, listen string) []string {
	hosts := []string{pub.Hostname()}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// replicate fills the zones of pending images whenever the engine asks for
// it, and retries failures every retry interval until ctx ends.
func replicate(ctx context.Context, eng *engine.Engine, log *slog.Logger, retry time.Duration) {
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-eng.ReplicationNeeded():
		case <-t.C:
		}
		began := time.Now()
		n, err := eng.Replicate(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Error("replication failed; retrying later", "images_done", n, "err", err, "retry_in", retry)
		case n > 0:
			log.Info("replicated", "images", n, "dur", time.Since(began))
		}
	}
}

// registerZoneMetrics exports the engine's zone counters.
func registerZoneMetrics(reg prometheus.Registerer, eng *engine.Engine) {
	for _, zone := range eng.Zones() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "deltadisk_zone_read_failures_total",
			Help:        "Chunk reads that failed in a zone (and were retried in another).",
			ConstLabels: prometheus.Labels{"zone": zone},
		}, func() float64 { return float64(eng.ZoneFaults()[zone]) }))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "deltadisk_zone_replication_pending",
		Help: "Disks and snapshots whose zones are still being filled (-1: the count failed).",
	}, func() float64 {
		n, err := eng.PendingImages(context.Background())
		if err != nil {
			return -1
		}
		return float64(n)
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "deltadisk_zone_replicated_bytes_total",
		Help: "Chunk bytes copied between zones by background replication and scrub repairs.",
	}, func() float64 { return float64(eng.ReplicatedBytes()) }))
}

// registerCacheMetrics exports the engine's block cache counters.
func registerCacheMetrics(reg prometheus.Registerer, eng *engine.Engine) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "deltadisk_chunk_cache_hits_total",
		Help: "Block reads served from the cache of decompressed, verified chunks.",
	}, func() float64 { return float64(eng.CacheStats().Hits) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "deltadisk_chunk_cache_misses_total",
		Help: "Block reads the chunk cache could not serve, which read a chunk store.",
	}, func() float64 { return float64(eng.CacheStats().Misses) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "deltadisk_chunk_cache_bytes",
		Help: "Memory held by the chunk cache's entries.",
	}, func() float64 { return float64(eng.CacheStats().Bytes) }))
}

// collectGarbage runs the engine's GC every interval until ctx ends.
func collectGarbage(ctx context.Context, eng *engine.Engine, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		began := time.Now()
		st, err := eng.GC(ctx, engine.DefaultGCOptions())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Error("gc failed", "err", err)
		case st.ChunksFreed+st.PacksDeleted+st.PacksCompacted > 0:
			log.Info("gc", "chunks_freed", st.ChunksFreed, "packs_deleted", st.PacksDeleted,
				"packs_compacted", st.PacksCompacted, "bytes_freed", st.BytesFreed, "dur", time.Since(began))
		}
	}
}
