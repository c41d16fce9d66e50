package server_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/identity"
	"github.com/deltadisk/deltadisk/internal/server"
)

// farListener is a loopback listener that says it is bound to a public
// address, so that the server treats it as one; the test dials the real
// address.
type farListener struct{ net.Listener }

func (farListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 8443} }

func listenFar(t *testing.T) farListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return farListener{ln}
}

// fakeAuth accepts "Bearer good" only.
type fakeAuth struct{}

func (fakeAuth) Authenticate(r *http.Request) (*identity.Caller, error) {
	switch r.Header.Get("Authorization") {
	case "Bearer good":
		return &identity.Caller{ClientID: "c"}, nil
	case "":
		return nil, &identity.AuthError{Code: "AuthenticationFailed", Message: "The 'Authorization' header is missing."}
	}
	return nil, &identity.AuthError{Code: "InvalidAuthenticationToken", Message: "The access token is invalid."}
}

func (fakeAuth) Challenge(err error) string { return `Bearer error="invalid_token"` }

const metricsLine = "deltadisk_http_requests_in_flight"

func TestMetricsTokenOffLoopback(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), func(c *server.Config) {
		c.Listener = listenFar(t)
		c.MetricsAuth = fakeAuth{}
	})
	tests := []struct {
		name, authorization string
		wantStatus          int
		wantCode            string // of the 401
	}{
		{"no token", "", 401, "AuthenticationFailed"},
		{"bad token", "Bearer forged", 401, "InvalidAuthenticationToken"},
		{"valid token", "Bearer good", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.authorization != "" {
				h.Set("Authorization", tc.authorization)
			}
			resp, body := ts.do(t, "GET", "/metrics", h)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("GET /metrics = %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if tc.wantStatus == 200 {
				if !strings.Contains(body, metricsLine) {
					t.Errorf("GET /metrics with a token lacks %s:\n%s", metricsLine, body)
				}
				return
			}
			var e struct{ Error struct{ Code string } }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != tc.wantCode {
				t.Errorf("401 body %q (%v), want code %s", body, err, tc.wantCode)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if strings.Contains(body, metricsLine) {
				t.Error("401 carries metrics")
			}
		})
	}
	// The rest is as on loopback.
	if resp, body := ts.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("GET /healthz = %d %s, want 200", resp.StatusCode, body)
	}
}

func TestMetricsOpenOnLoopback(t *testing.T) {
	// MetricsAuth refuses everyone: it must not be asked.
	ts := start(t, echo("arm"), echo("identity"), func(c *server.Config) { c.MetricsAuth = fakeAuth{} })
	if resp, body := ts.do(t, "GET", "/metrics", nil); resp.StatusCode != 200 || !strings.Contains(body, metricsLine) {
		t.Errorf("GET /metrics without a token on loopback = %d, want 200 with metrics", resp.StatusCode)
	}
}

func TestMetricsAuthRequiredOffLoopback(t *testing.T) {
	cert, _, err := server.LoadOrCreateTLS(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln := listenFar(t)
	defer ln.Close()
	cfg := server.DefaultConfig()
	cfg.Listener = ln
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	cfg.ARM, cfg.Identity, cfg.Blob = echo("arm"), echo("identity"), echo("blob")
	s, err := server.New(cfg)
	if err == nil {
		s.Close()
		t.Fatal("New with a public listener and no MetricsAuth succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "MetricsAuth") {
		t.Errorf("New = %v, want an error naming MetricsAuth", err)
	}
}

func TestMetricsListener(t *testing.T) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := mln.Addr().String()
	ts := start(t, echo("arm"), echo("identity"), func(c *server.Config) {
		c.Listener = listenFar(t)
		c.MetricsAuth = fakeAuth{}
		c.MetricsListener = mln
	})
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + maddr + path)
		if err != nil {
			t.Fatalf("GET %s on the metrics listener: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// No token there, while the main listener wants one.
	if st, body := get("/metrics"); st != 200 || !strings.Contains(body, metricsLine) {
		t.Errorf("GET /metrics on the metrics listener = %d, want 200 with metrics:\n%s", st, body)
	}
	if resp, _ := ts.do(t, "GET", "/metrics", nil); resp.StatusCode != 401 {
		t.Errorf("GET /metrics on the main listener without a token = %d, want 401", resp.StatusCode)
	}
	// Only /metrics: the API is not reachable through it.
	for _, path := range []string{"/subscriptions", "/healthz", "/adfs/oauth2/token"} {
		if st, body := get(path); st != 404 {
			t.Errorf("GET %s on the metrics listener = %d %q, want 404", path, st, body)
		}
	}
	client.CloseIdleConnections()
	if err := ts.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if c, err := net.Dial("tcp", maddr); err == nil {
		c.Close()
		t.Error("the metrics listener still accepts after Run returned")
	}
}
