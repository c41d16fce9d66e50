package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/server"
)

// hangLimit fails a test that waits this long for the server: the cases
// below must end well before it, and without the fixes they never do.
const hangLimit = 20 * time.Second

// readAll answers 200 with the size of the body it read, or 400 if the
// read failed (the answer a handler gives that does not know why).
var readAll = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d", n)
})

// tokenRequired refuses requests without an Authorization header before
// reading their body, as ARM does.
var tokenRequired = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	readAll(w, r)
})

// dialHTTP1 opens a TLS connection to ts that speaks HTTP/1.1 only. Its
// deadline makes a server that holds it fail the test rather than hang.
func dialHTTP1(t *testing.T, ts *testServer) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	pem, err := os.ReadFile(ts.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", ts.srv.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(hangLimit)); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// wantClosed checks that the server closed c after its answer, rather
// than keeping it open to read (or wait for) more.
func wantClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("reading after the answer = %q, %v; want io.EOF (connection closed)", b, err)
	}
}

// wantTimeoutAnswer checks a 408 with the JSON error body.
func wantTimeoutAnswer(t *testing.T, resp *http.Response) {
	t.Helper()
	defer resp.Body.Close()
	var body struct{ Error struct{ Code string } }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("408 body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || body.Error.Code != "RequestTimeout" {
		t.Errorf("answer = %d %q, want 408 RequestTimeout", resp.StatusCode, body.Error.Code)
	}
	if resp.Header.Get(server.HeaderRequestID) == "" {
		t.Errorf("408 has no %s header", server.HeaderRequestID)
	}
}

func TestStalledBodyHTTP1(t *testing.T) {
	ts := start(t, readAll, readAll, func(c *server.Config) {
		c.Blob = readAll
		c.BodyReadTimeout = 200 * time.Millisecond
	})
	tests := []struct {
		name, path, framing, partial string
	}{
		{"arm", "/subscriptions/s/resourceGroups/g", "Content-Length: 1000", "0123456789"},
		{"token endpoint", "/adfs/oauth2/token/", "Content-Length: 1000", "grant_type=client_credentials&"},
		{"blob", "/md-x/abcd?comp=page", "Content-Length: 4194304", "0123456789"},
		{"chunked", "/subscriptions/s", "Transfer-Encoding: chunked", "a\r\n0123456789\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialHTTP1(t, ts)
			fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: deltadisk\r\n%s\r\n\r\n%s", tc.path, tc.framing, tc.partial)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if !resp.Close {
				t.Error("408 without Connection: close")
			}
			wantTimeoutAnswer(t, resp)
			wantClosed(t, br)
		})
	}
}

func TestStalledBodyHTTP2(t *testing.T) {
	ts := start(t, readAll, echo("identity"), func(c *server.Config) { c.BodyReadTimeout = 200 * time.Millisecond })
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("0123456789")) }() // then nothing more
	req, err := http.NewRequestWithContext(t.Context(), "PUT", ts.url+"/subscriptions/s", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1000
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("PUT with a stalled body: %v", err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("answer over HTTP/%d, want HTTP/2", resp.ProtoMajor)
	}
	wantTimeoutAnswer(t, resp)
}

// TestRefusedBodyNotRead sends requests that announce a body and never
// send it: the refusal must come at once and the connection end, where
// net/http alone waits for (up to 256 KiB of) the body first.
func TestRefusedBodyNotRead(t *testing.T) {
	ts := start(t, tokenRequired, echo("identity"), nil) // BodyReadTimeout 30 s: not what ends these
	tests := []struct{ name, framing string }{
		{"small", "Content-Length: 1000"},
		{"1 MiB", "Content-Length: 1048576"},
		{"chunked", "Transfer-Encoding: chunked"},
		{"expect 100-continue", "Content-Length: 1000\r\nExpect: 100-continue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialHTTP1(t, ts)
			fmt.Fprintf(c, "PUT /subscriptions/s/resourceGroups/g HTTP/1.1\r\nHost: deltadisk\r\n%s\r\n\r\n", tc.framing)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Errorf("answer = %d, Connection: %q; want 401, close", resp.StatusCode, resp.Header.Get("Connection"))
			}
			wantClosed(t, br)
		})
	}
}

// TestRefusedBodyHTTP2 checks that a refusal over HTTP/2 does not wait
// for the body either, and leaves the connection usable.
func TestRefusedBodyHTTP2(t *testing.T) {
	ts := start(t, tokenRequired, echo("identity"), nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(t.Context(), "PUT", ts.url+"/subscriptions/s", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1 << 20
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("PUT without a token: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 {
		t.Errorf("answer = %d over HTTP/%d, want 401 over HTTP/2", resp.StatusCode, resp.ProtoMajor)
	}
	if resp, _ := ts.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("GET /healthz after the refusal = %d, want 200", resp.StatusCode)
	}
}

// TestSlowSteadyBody sends a body in pieces, with pauses shorter than the
// timeout but adding up to more than it: a flowing upload is never cut.
func TestSlowSteadyBody(t *testing.T) {
	const pieces, size = 12, 256 << 10
	ts := start(t, readAll, echo("identity"), func(c *server.Config) { c.BodyReadTimeout = time.Second })
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			client := ts.client
			if proto == "HTTP/1.1" {
				client = http1Client(t, ts)
			}
			pr, pw := io.Pipe()
			go func() {
				for range pieces {
					if _, err := pw.Write(make([]byte, size)); err != nil {
						return
					}
					time.Sleep(150 * time.Millisecond)
				}
				pw.Close()
			}()
			req, err := http.NewRequestWithContext(t.Context(), "PUT", ts.url+"/subscriptions/s", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = pieces * size
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("PUT: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprint(pieces * size); resp.StatusCode != 200 || string(body) != want || resp.Proto != proto {
				t.Errorf("answer = %s %d %q, want %s 200 %q", resp.Proto, resp.StatusCode, body, proto, want)
			}
			if resp.Close {
				t.Error("a request whose body was read ends its connection")
			}
		})
	}
}

// TestDeadlineOnlyForBody: once the body is in, a handler may take longer
// than the timeout to answer; the deadline left on the connection must not
// read as the client going away.
func TestDeadlineOnlyForBody(t *testing.T) {
	const timeout = 100 * time.Millisecond
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "request context ended: "+context.Cause(r.Context()).Error(), http.StatusInternalServerError)
		case <-time.After(5 * timeout):
			_, _ = io.WriteString(w, "done")
		}
	})
	ts := start(t, slow, echo("identity"), func(c *server.Config) { c.BodyReadTimeout = timeout })
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			client := ts.client
			if proto == "HTTP/1.1" {
				client = http1Client(t, ts)
			}
			req, err := http.NewRequestWithContext(t.Context(), "PUT", ts.url+"/subscriptions/s", strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("PUT: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "done" {
				t.Errorf("answer = %d %q, want 200 done", resp.StatusCode, body)
			}
		})
	}
}

// http1Client is ts.client without HTTP/2.
func http1Client(t *testing.T, ts *testServer) *http.Client {
	t.Helper()
	c := trustingClient(t, ts.caFile)
	tr := c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestUnreadBodyOfSuccess: a handler that answers without reading the
// body (/healthz, ARM's metadata) leaves net/http to drain it before
// answering; a client that never sends it is cut after the timeout.
func TestUnreadBodyOfSuccess(t *testing.T) {
	ts := start(t, echo("arm"), echo("identity"), func(c *server.Config) { c.BodyReadTimeout = 200 * time.Millisecond })
	c, br := dialHTTP1(t, ts)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: deltadisk\r\nContent-Length: 1000\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || !resp.Close {
		t.Errorf("answer = %d %q, Connection: %q; want 200 ok, close", resp.StatusCode, body, resp.Header.Get("Connection"))
	}
	wantClosed(t, br)
}
