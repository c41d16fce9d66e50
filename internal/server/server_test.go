package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/server"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuffer collects JSON log lines from the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the decoded log lines.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// requestLine returns the "request" log line with the given request id.
func (b *logBuffer) requestLine(t *testing.T, id string) map[string]any {
	t.Helper()
	// The line is written after the answer; give the handler's goroutine
	// a moment to finish.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range b.lines(t) {
			if l["msg"] == "request" && l["request_id"] == id {
				return l
			}
		}
	}
	t.Fatalf("no request log line with request_id %q", id)
	return nil
}

type testServer struct {
	srv    *server.Server
	client *http.Client
	url    string
	caFile string
	logs   *logBuffer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// stop cancels Run's context and returns what Run returned.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.cancel()
	select {
	case err := <-ts.done:
		ts.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after its context was cancelled")
		return nil
	}
}

// start runs a Server with the given handlers on 127.0.0.1:0 and returns
// a client that trusts its CA. mod may change the Config first.
func start(t *testing.T, arm, identity http.Handler, mod func(*server.Config)) *testServer {
	t.Helper()
	cert, caFile, err := server.LoadOrCreateTLS(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{logs: new(logBuffer), reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg.ARM = arm
	cfg.Identity = identity
	cfg.Blob = echo("blob")
	cfg.Registry = ts.reg
	cfg.Logger = slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mod != nil {
		mod(&cfg)
	}
	ts.srv, err = server.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.url = "https://" + ts.srv.Addr().String()
	if fl, ok := cfg.Listener.(farListener); ok {
		ts.url = "https://" + fl.Listener.Addr().String()
	}
	ts.caFile = caFile
	ts.client = trustingClient(t, caFile)

	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- ts.srv.Run(ctx) }()
	t.Cleanup(func() {
		// Idle HTTP/2 connections first: the server's shutdown would
		// otherwise wait a second for the client to act on its GOAWAY.
		ts.client.CloseIdleConnections()
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	})
	return ts
}

func trustingClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	return &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		// A redirect would hide what the server answered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (ts *testServer) do(t *testing.T, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(body)
}

// echo answers "<name> <method> <path>" and the request id it sees.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Request-Id", server.RequestID(r.Context()))
		w.Header().Set("X-Seen-Header-Id", w.Header().Get(server.HeaderRequestID))
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, name+" "+r.Method+" "+r.URL.Path)
	})
}

func TestRouting(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), nil)
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/healthz", 200, "ok"},
		{"HEAD", "/healthz", 200, ""},
		{"POST", "/healthz", 405, "method not allowed\n"},
		{"GET", "/adfs/.well-known/openid-configuration", 418, "identity GET /adfs/.well-known/openid-configuration"},
		{"POST", "/adfs/oauth2/token", 418, "identity POST /adfs/oauth2/token"},
		{"GET", "/subscriptions?api-version=2022-12-01", 418, "arm GET /subscriptions"},
		{"PUT", "/subscriptions/S/resourceGroups/g/providers/Microsoft.Compute/disks/d", 418,
			"arm PUT /subscriptions/S/resourceGroups/g/providers/Microsoft.Compute/disks/d"},
		// Not cleaned or redirected: ARM gets the path as sent.
		{"PUT", "//subscriptions/S//x", 418, "arm PUT //subscriptions/S//x"},
		{"GET", "/md-3f2a/abcd?sv=2018-03-28&sig=x", 418, "blob GET /md-3f2a/abcd"},
		{"PUT", "/md-3f2a/abcd?comp=page", 418, "blob PUT /md-3f2a/abcd"},
		{"GET", "/md", 418, "arm GET /md"},
		{"GET", "/", 418, "arm GET /"},
		{"GET", "/adfs", 418, "arm GET /adfs"},
		{"GET", "/healthzz", 418, "arm GET /healthzz"},
	}
	for _, tc := range tests {
		resp, body := ts.do(t, tc.method, tc.path, nil)
		if resp.StatusCode != tc.wantStatus || body != tc.wantBody {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.wantStatus, tc.wantBody)
		}
		if resp.Header.Get(server.HeaderRequestID) == "" {
			t.Errorf("%s %s: no %s header", tc.method, tc.path, server.HeaderRequestID)
		}
	}
}

func TestMetrics(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), nil)
	ts.do(t, "GET", "/healthz", nil)
	ts.do(t, "GET", "/subscriptions", nil)
	ts.do(t, "BREW", "/subscriptions", nil)
	ts.do(t, "HEAD", "/md-g/abcd", nil)
	resp, body := ts.do(t, "GET", "/metrics", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s, want 200 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`deltadisk_http_requests_total{code="200",handler="healthz",method="GET"} 1`,
		`deltadisk_http_requests_total{code="418",handler="arm",method="GET"} 1`,
		`deltadisk_http_requests_total{code="418",handler="arm",method="OTHER"} 1`,
		`deltadisk_http_requests_total{code="418",handler="blob",method="HEAD"} 1`,
		`deltadisk_http_request_duration_seconds_count{handler="arm",method="GET"} 1`,
		// The scrape itself is in flight.
		"deltadisk_http_requests_in_flight 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestMetricsRegisteredTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	cert, _, err := server.LoadOrCreateTLS(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg.ARM, cfg.Identity, cfg.Blob, cfg.Registry = echo("arm"), echo("identity"), echo("blob"), reg
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := server.New(cfg); err == nil {
		s2.Close()
		t.Fatal("second New on the same registry succeeded, want an error")
	}
}

func TestRequestID(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), nil)

	t.Run("generated", func(t *testing.T) {
		resp, _ := ts.do(t, "GET", "/x", nil)
		id := resp.Header.Get(server.HeaderRequestID)
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("x-ms-request-id = %q, want a UUID", id)
		}
		if got := resp.Header.Get(server.HeaderCorrelationRequestID); got != id {
			t.Errorf("x-ms-correlation-request-id = %q, want %q", got, id)
		}
		if got := resp.Header.Get("X-Seen-Request-Id"); got != id {
			t.Errorf("RequestID(ctx) in handler = %q, want %q", got, id)
		}
		if got := resp.Header.Get("X-Seen-Header-Id"); got != id {
			t.Errorf("w.Header().Get(x-ms-request-id) in handler = %q, want %q", got, id)
		}
	})
	t.Run("client", func(t *testing.T) {
		const id = "my-client-id-1234"
		resp, _ := ts.do(t, "GET", "/x", http.Header{"X-Ms-Client-Request-Id": {id}})
		for _, h := range []string{server.HeaderRequestID, server.HeaderCorrelationRequestID, server.HeaderClientRequestID, "X-Seen-Request-Id"} {
			if got := resp.Header.Get(h); got != id {
				t.Errorf("%s = %q, want the client's %q", h, got, id)
			}
		}
	})
	t.Run("unusable client id", func(t *testing.T) {
		for _, bad := range []string{strings.Repeat("a", 129), "two words", "tab\there", "é"} {
			resp, _ := ts.do(t, "GET", "/x", http.Header{"X-Ms-Client-Request-Id": {bad}})
			if got := resp.Header.Get(server.HeaderRequestID); got == bad || uuid.Validate(got) != nil {
				t.Errorf("client id %q: x-ms-request-id = %q, want a new UUID", bad, got)
			}
		}
	})
}

func TestLogLine(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), nil)
	const id = "log-line-test"
	_, body := ts.do(t, "GET", "/subscriptions/s?api-version=2022-12-01&secret=x", http.Header{"X-Ms-Client-Request-Id": {id}})
	l := ts.logs.requestLine(t, id)
	if l["op"] != "GET /subscriptions/s" {
		t.Errorf("op = %v, want %q (no query)", l["op"], "GET /subscriptions/s")
	}
	if l["status"] != float64(418) {
		t.Errorf("status = %v, want 418", l["status"])
	}
	if l["bytes"] != float64(len(body)) {
		t.Errorf("bytes = %v, want %d", l["bytes"], len(body))
	}
	if d, ok := l["dur"].(float64); !ok || d <= 0 {
		t.Errorf("dur = %v, want a positive duration", l["dur"])
	}
	if l["level"] != "INFO" {
		t.Errorf("level = %v, want INFO", l["level"])
	}
}

func TestPanic(t *testing.T) {
	arm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/before":
			w.Header().Set("Content-Type", "text/secret")
			panic("the secret cause")
		case "/after":
			w.WriteHeader(200)
			_, _ = w.Write(bytes.Repeat([]byte("x"), 100))
			w.(http.Flusher).Flush()
			panic("too late")
		}
	})
	ts := start(t, arm, echo("identity"), nil)

	resp, body := ts.do(t, "GET", "/before", http.Header{"X-Ms-Client-Request-Id": {"panic-before"}})
	if resp.StatusCode != 500 {
		t.Fatalf("status = %d, want 500", resp.StatusCode)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "InternalServerError" {
		t.Fatalf("body = %q, want an ARM error with code InternalServerError (%v)", body, err)
	}
	if strings.Contains(body, "secret") || !strings.Contains(e.Error.Message, "panic-before") {
		t.Errorf("message = %q, want the request id and not the cause", e.Error.Message)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if l := ts.logs.requestLine(t, "panic-before"); l["status"] != float64(500) || l["level"] != "ERROR" {
		t.Errorf("request line = %v, want status 500 at ERROR", l)
	}
	var logged bool
	for _, l := range ts.logs.lines(t) {
		if l["request_id"] == "panic-before" && l["panic"] == "the secret cause" {
			stack, _ := l["stack"].(string)
			logged = strings.Contains(stack, "server_test.TestPanic")
		}
	}
	if !logged {
		t.Error("no log line with the panic and its stack")
	}

	// A panic after the answer began cuts the stream.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", ts.url+"/after", nil)
	if resp, err := ts.client.Do(req); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Error("a panic after writing gave a complete answer, want a broken stream")
		}
	}

	// The server still serves.
	if resp, body := ts.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("GET /healthz after panics = %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestIdentityBodyLimit(t *testing.T) {
	identity := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
		}
		w.WriteHeader(200)
	})
	ts := start(t, echo("arm"), identity, func(c *server.Config) { c.IdentityBodyLimit = 100 })
	for _, n := range []int{100, 101} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", ts.url+"/adfs/oauth2/token", bytes.NewReader(make([]byte, n)))
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if n > 100 {
			want = 413
		}
		if resp.StatusCode != want {
			t.Errorf("POST %d bytes to /adfs/ = %d, want %d", n, resp.StatusCode, want)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	arm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	})
	ts := start(t, arm, echo("identity"), nil)

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := ts.client.Get(ts.url + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	ts.cancel()
	// Shutdown stops the listener first: no new connection is accepted.
	addr := ts.srv.Addr().String()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts 5s after cancel")
		}
	}
	select {
	case err := <-ts.done:
		t.Fatalf("Run returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("request in flight at shutdown = %q, %v; want it to finish", r.body, r.err)
	}
	if err := ts.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	entered := make(chan struct{})
	arm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // until the connection is closed
	})
	ts := start(t, arm, echo("identity"), func(c *server.Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	errc := make(chan error, 1)
	go func() {
		resp, err := ts.client.Get(ts.url + "/stuck")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	began := time.Now()
	if err := ts.stop(t); err != nil {
		t.Errorf("Run = %v, want nil after closing the stuck connection", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Run took %v to return with ShutdownTimeout 100ms", d)
	}
	if err := <-errc; err == nil {
		t.Error("the stuck request succeeded, want its connection closed")
	}
}

func TestGivenListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, echo("arm"), echo("identity"), func(c *server.Config) { c.Listener, c.Listen = ln, "" })
	if ts.srv.Addr().String() != ln.Addr().String() {
		t.Errorf("Addr() = %v, want the given listener's %v", ts.srv.Addr(), ln.Addr())
	}
	if resp, _ := ts.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %d, want 200", resp.StatusCode)
	}
}

func TestRunTwice(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), nil)
	ts.do(t, "GET", "/healthz", nil) // the first Run is serving
	if err := ts.srv.Run(t.Context()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	cert, _, err := server.LoadOrCreateTLS(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg.ARM, cfg.Identity, cfg.Blob = echo("arm"), echo("identity"), echo("blob")
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	// The port is free again.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s after Close: %v", addr, err)
	}
	ln.Close()
}

func TestConfigValidate(t *testing.T) {
	good := server.DefaultConfig()
	good.TLS = &tls.Config{Certificates: []tls.Certificate{{}}}
	good.ARM, good.Identity, good.Blob = echo("arm"), echo("identity"), echo("blob")
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	tests := []struct {
		name string
		mod  func(*server.Config)
	}{
		{"no listen", func(c *server.Config) { c.Listen = "" }},
		{"no TLS", func(c *server.Config) { c.TLS = nil }},
		{"TLS without certificate", func(c *server.Config) { c.TLS = &tls.Config{} }},
		{"no ARM", func(c *server.Config) { c.ARM = nil }},
		{"no identity", func(c *server.Config) { c.Identity = nil }},
		{"no blob", func(c *server.Config) { c.Blob = nil }},
		{"no header timeout", func(c *server.Config) { c.ReadHeaderTimeout = 0 }},
		{"no idle timeout", func(c *server.Config) { c.IdleTimeout = 0 }},
		{"no shutdown timeout", func(c *server.Config) { c.ShutdownTimeout = 0 }},
		{"no identity body limit", func(c *server.Config) { c.IdentityBodyLimit = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate = nil, want an error")
			}
			if _, err := server.New(c); err == nil {
				t.Error("New = nil error, want one")
			}
		})
	}
}

func TestShutdownWaitsForHandlers(t *testing.T) {
	entered, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	arm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		close(entered)
		<-r.Context().Done()
		<-release // ignores its context for a while longer
	})
	ts := start(t, arm, echo("identity"), func(c *server.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	go func() {
		if resp, err := ts.client.Get(ts.url + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	ts.stop(t)
	select {
	case <-returned:
	default:
		t.Error("Run returned before the handler did")
	}

	// A handler that never returns delays Run by at most two timeouts.
	entered2, release2 := make(chan struct{}), make(chan struct{})
	defer close(release2)
	ts2 := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered2)
		<-release2
	}), echo("identity"), func(c *server.Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	go func() {
		if resp, err := ts2.client.Get(ts2.url + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered2
	began := time.Now()
	ts2.stop(t)
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("Run took %v with a stuck handler and ShutdownTimeout 100ms", d)
	}
	var logged bool
	for _, l := range ts2.logs.lines(t) {
		logged = logged || strings.Contains(fmt.Sprint(l["msg"]), "handlers still running")
	}
	if !logged {
		t.Error("no log line about the stuck handler")
	}
}
