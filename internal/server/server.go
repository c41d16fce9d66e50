// Package server is deltadisk's HTTPS front: the listener, the routing
// between the wire-protocol handlers (ARM, identity, blob) and the operational
// endpoints (/healthz, /metrics), and the middleware every request passes
// through: request ids, one log line, metrics, panic recovery, and a
// read-progress deadline on request bodies.
//
// A request body that stops arriving for Config.BodyReadTimeout is cut
// (408, connection closed); one left unread by an error answer, such as a
// 401 sent before the body was read, is not drained: the connection is
// closed instead. /metrics is open on a loopback listener; on any other it
// needs a bearer token, and Config.MetricsListener serves it alone.
//
// The request id is set as the x-ms-request-id response header before the
// inner handler runs, and put in the request's context ([RequestID]).
// Packages below server cannot import it, so they read the id back from
// the response header: w.Header().Get("x-ms-request-id").
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a [Server]. Start from [DefaultConfig].
type Config struct {
	// Listen is the TCP address to bind, such as "127.0.0.1:8443" or
	// "127.0.0.1:0". It is ignored when Listener is set.
	Listen string
	// Listener, if set, is used instead of binding Listen. The caller binds
	// it first when it needs the port before building the handlers (a
	// public URL derived from port 0). The Server closes it.
	Listener net.Listener
	// TLS holds the server certificate. Required: deltadisk serves HTTPS
	// only, since bearer tokens and SAS signatures travel in requests.
	TLS *tls.Config
	// ARM serves every path not served by the others. It does its own
	// case-insensitive routing, authentication and body limits.
	ARM http.Handler
	// Identity serves /adfs/ (token endpoint and OpenID metadata).
	Identity http.Handler
	// Blob serves the data plane: every path starting with
	// [blob.PathPrefix], the SAS URLs of grants. It does its own SAS
	// checks and limits.
	Blob http.Handler
	// Registry receives the HTTP metrics, and /metrics serves everything
	// registered in it. Nil means a new, private registry.
	Registry *prometheus.Registry
	// MetricsAuth checks the bearer token that /metrics on the main
	// listener needs when that listener is not loopback: any principal's
	// valid token will do (the metrics name no subscription, group or
	// resource). On a loopback listener /metrics is open, as /healthz is.
	// Required when the listener is not loopback.
	MetricsAuth Authenticator
	// MetricsListener, if set, serves /metrics (and nothing else) over
	// plain HTTP without a token, for a scraper that cannot log in. Bind it
	// where only the monitoring reaches. The Server closes it once New
	// has succeeded.
	MetricsListener net.Listener
	// Logger gets one line per request and the stack of every panic. Nil
	// discards.
	Logger *slog.Logger
	// ReadHeaderTimeout bounds the wait for a request's headers (slowloris).
	// There is deliberately no read or write timeout on whole requests: a
	// VHD upload or download may stream for hours.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout cuts a request whose body stops arriving: when no
	// byte of it comes for this long, the handler's read fails, the client
	// gets a 408 if nothing was answered yet, and the connection is closed.
	// A body that keeps flowing, however slowly, is not cut.
	BodyReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long Run waits for requests in flight once
	// its context is cancelled; then it closes the remaining connections.
	ShutdownTimeout time.Duration
	// IdentityBodyLimit bounds request bodies sent to /adfs/: token
	// requests are a few hundred bytes of form data.
	IdentityBodyLimit int64
}

// Authenticator checks a request's bearer token; *identity.Identity is
// one.
type Authenticator interface {
	// Authenticate returns the caller, or an error that is an
	// *identity.AuthError when the token is missing or refused.
	Authenticate(r *http.Request) (*identity.Caller, error)
	// Challenge is the WWW-Authenticate header for a 401 caused by err.
	Challenge(err error) string
}

var _ Authenticator = (*identity.Identity)(nil)

// DefaultConfig returns the timeouts and limits deltadisk serve uses; the
// caller sets the listener, TLS and handlers.
func DefaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:8443",
		ReadHeaderTimeout: 10 * time.Second,
		BodyReadTimeout:   30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
		IdentityBodyLimit: 64 << 10,
	}
}

// Validate reports the first unusable field of c.
func (c Config) Validate() error {
	switch {
	case c.Listener == nil && c.Listen == "":
		return errors.New("server: config: neither Listen nor Listener is set")
	case c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil):
		return errors.New("server: config: TLS with a certificate is required")
	case c.ARM == nil:
		return errors.New("server: config: ARM handler is required")
	case c.Identity == nil:
		return errors.New("server: config: Identity handler is required")
	case c.Blob == nil:
		return errors.New("server: config: Blob handler is required")
	case c.ReadHeaderTimeout <= 0:
		return fmt.Errorf("server: config: ReadHeaderTimeout %v is not positive", c.ReadHeaderTimeout)
	case c.BodyReadTimeout <= 0:
		return fmt.Errorf("server: config: BodyReadTimeout %v is not positive", c.BodyReadTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("server: config: IdleTimeout %v is not positive", c.IdleTimeout)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("server: config: ShutdownTimeout %v is not positive", c.ShutdownTimeout)
	case c.IdentityBodyLimit <= 0:
		return fmt.Errorf("server: config: IdentityBodyLimit %d is not positive", c.IdentityBodyLimit)
	}
	return nil
}

// Server serves deltadisk's HTTPS endpoints on one listener.
type Server struct {
	cfg            Config
	ln             net.Listener
	srv            *http.Server
	log            *slog.Logger
	metrics        *metrics
	metricsHandler http.Handler
	// metricsToken is set when /metrics on the main listener needs a
	// token: the listener is not loopback.
	metricsToken bool
	// metricsSrv serves Config.MetricsListener; nil without one.
	metricsSrv *http.Server

	// ready is true while Run serves and its context is live: /healthz
	// answers 503 before and while shutting down, so a load balancer stops
	// sending new work first.
	ready atomic.Bool
	// ran makes a second Run an error rather than a second Serve on a
	// closed listener.
	ran atomic.Bool
	// handlers counts handlers running, so that Run returns only after
	// they have, even those whose connection it had to close: the caller
	// closes the stores they use next.
	handlers sync.WaitGroup
}

// New binds the listener (unless cfg.Listener is given) and builds the
// server. Call [Server.Run] to serve, or [Server.Close] to release the
// listener without serving.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	s := &Server{
		cfg:     cfg,
		ln:      ln,
		log:     log,
		metrics: m,
		metricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
		}),
		metricsToken: !isLoopback(ln.Addr()),
	}
	if s.metricsToken && cfg.MetricsAuth == nil {
		if cfg.Listener == nil {
			_ = ln.Close()
		}
		return nil, fmt.Errorf("server: config: MetricsAuth is required: %s is not a loopback address, so /metrics needs a token there", ln.Addr())
	}
	s.srv = s.httpServer(http.HandlerFunc(s.route))
	s.srv.TLSConfig = cfg.TLS.Clone()
	if s.srv.TLSConfig.MinVersion < tls.VersionTLS12 {
		s.srv.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if cfg.MetricsListener != nil {
		s.metricsSrv = s.httpServer(http.HandlerFunc(s.routeMetrics))
	}
	return s, nil
}

// httpServer returns an http.Server with the Config's timeouts that serves
// route through the middleware.
func (s *Server) httpServer(route http.HandlerFunc) *http.Server {
	return &http.Server{
		Handler:           s.middleware(route),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		// net/http's own complaints are nearly all failed TLS handshakes
		// of clients that do not trust the CA (yet); one per probe.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// isLoopback reports whether a listener's address is a loopback one, which
// only this host's processes reach.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr returns the address the server listens on, with the port the
// system chose when the configured port was 0.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves HTTPS until ctx is cancelled, then shuts down gracefully:
// it stops accepting, lets requests in flight finish for up to
// Config.ShutdownTimeout, and closes what remains. It returns once no
// handler runs (waiting at most another ShutdownTimeout for handlers that
// ignore their context): nil after a shutdown caused by ctx, the error
// otherwise. Run may be called once.
//
// Request contexts do not inherit ctx's cancellation, only its values, so
// that cancelling ctx drains requests instead of aborting them.
func (s *Server) Run(ctx context.Context) error {
	if s.ran.Swap(true) {
		return errors.New("server: Run called twice")
	}
	base := func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	s.srv.BaseContext = base
	errc := make(chan error, 2)
	serving := 1
	s.ready.Store(true)
	go func() { errc <- s.srv.ServeTLS(s.ln, "", "") }()
	if s.metricsSrv != nil {
		s.metricsSrv.BaseContext = base
		serving++
		go func() { errc <- s.metricsSrv.Serve(s.cfg.MetricsListener) }()
	}
	select {
	case err := <-errc:
		// One listener failed, or Close was called: stop serving on the
		// other too.
		_ = s.Close()
		for range serving - 1 {
			<-errc
		}
		if errors.Is(err, http.ErrServerClosed) {
			return errors.New("server: closed before its context was cancelled")
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	s.log.Info("server: shutting down", "addr", s.ln.Addr().String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		if s.metricsSrv != nil && s.metricsSrv.Shutdown(sctx) != nil {
			_ = s.metricsSrv.Close()
		}
	}()
	err := s.srv.Shutdown(sctx)
	if err != nil {
		s.log.Warn("server: requests still running at the shutdown deadline; closing their connections",
			"timeout", s.cfg.ShutdownTimeout, "err", err)
		err = s.srv.Close()
		// Closing a connection cancels its requests' contexts; give their
		// handlers as long again to notice.
		stopped := make(chan struct{})
		go func() {
			s.handlers.Wait()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(s.cfg.ShutdownTimeout):
			s.log.Error("server: handlers still running after their connections were closed", "timeout", s.cfg.ShutdownTimeout)
		}
	}
	<-metricsDone
	for range serving {
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// Close releases the listeners and closes every connection at once. It is
// for a Server that will not Run, or to abort one.
func (s *Server) Close() error {
	s.ready.Store(false)
	err := s.srv.Close()
	if s.metricsSrv != nil {
		err = errors.Join(err, s.metricsSrv.Close())
	}
	if !s.ran.Load() {
		// Serve never took the listeners, so closing the servers did not
		// close them.
		err = errors.Join(err, s.ln.Close())
		if s.cfg.MetricsListener != nil {
			err = errors.Join(err, s.cfg.MetricsListener.Close())
		}
	}
	return err
}

// route sends a request to its handler. It is a switch rather than a
// ServeMux: ServeMux answers paths it considers unclean ("//x", "/a/../b")
// with a redirect, which would turn an ARM PUT into a GET; ARM does its
// own matching of everything below "/".
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/healthz":
		s.health(w, r)
	case p == "/metrics":
		if s.metricsToken {
			if _, err := s.cfg.MetricsAuth.Authenticate(r); err != nil {
				refuse(w, s.cfg.MetricsAuth, err)
				return
			}
		}
		s.metricsHandler.ServeHTTP(w, r)
	case strings.HasPrefix(p, "/adfs/"):
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.IdentityBodyLimit)
		}
		s.cfg.Identity.ServeHTTP(w, r)
	case strings.HasPrefix(p, blob.PathPrefix):
		s.cfg.Blob.ServeHTTP(w, r)
	default:
		s.cfg.ARM.ServeHTTP(w, r)
	}
}

// routeMetrics routes the requests of Config.MetricsListener.
func (s *Server) routeMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	s.metricsHandler.ServeHTTP(w, r)
}

// refuse answers a request whose token auth refused, as ARM does.
func refuse(w http.ResponseWriter, auth Authenticator, err error) {
	code, msg := "AuthenticationFailed", "Authentication failed."
	if ae, ok := errors.AsType[*identity.AuthError](err); ok {
		code, msg = ae.Code, ae.Message
	}
	w.Header().Set("WWW-Authenticate", auth.Challenge(err))
	writeError(w, http.StatusUnauthorized, code, msg)
}

// routeName is the metrics label for the handler a path goes to; a fixed
// set, unlike paths.
func routeName(path string) string {
	switch {
	case path == "/healthz":
		return "healthz"
	case path == "/metrics":
		return "metrics"
	case strings.HasPrefix(path, "/adfs/"):
		return "identity"
	case strings.HasPrefix(path, blob.PathPrefix):
		return "blob"
	default:
		return "arm"
	}
}

// health answers probes without authentication.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	_, _ = w.Write([]byte("ok"))
}
