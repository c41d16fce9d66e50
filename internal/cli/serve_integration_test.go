package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// raceEnabled is set by race_test.go when the tests run with -race; the
// binary under test is then built with -race too.
var raceEnabled bool

// binDir holds the deltadisk binary the integration tests run. TestMain
// owns it; the binary is built on first use, once, so that a -run
// selecting only unit tests does not pay for the build.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deltadisk-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func deltadiskBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "deltadisk")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/deltadisk/deltadisk/cmd/deltadisk")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer a child's output can be copied into while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running deltadisk process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, once done
}

func startDeltadisk(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(deltadiskBinary(t), args...), stderr: new(syncBuffer), done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DELTADISK_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Logf("killed deltadisk %q; its output:\n%s", args, p.stderr)
		}
	})
	return p
}

// exitCode waits up to timeout for the process to exit and returns its
// exit code.
func (p *proc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("deltadisk still running after %v; output:\n%s", timeout, p.stderr)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("waiting for deltadisk: %v", p.err)
	return -1
}

var readyLine = regexp.MustCompile(`(?m)^deltadisk serving (\S+) \(credentials: (.+)\)$`)

// waitReady waits for the ready line and returns the URL and the path of
// credentials.json it names.
func (p *proc) waitReady(t *testing.T) (base, credPath string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		if m := readyLine.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1], m[2]
		}
		select {
		case <-p.done:
			t.Fatalf("deltadisk exited (%v) before it was ready; output:\n%s", p.err, p.stderr)
		case <-deadline:
			t.Fatalf("deltadisk not ready after 2 minutes; output:\n%s", p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and checks that the process exits 0 within seconds.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if code := p.exitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0; output:\n%s", code, p.stderr)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("deltadisk took %v to exit after SIGTERM", d)
	}
}

func readCredentials(t *testing.T, path string) map[string]string {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]string
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v (want an object of strings)\n%s", path, err, b)
	}
	return c
}

func clientTrusting(t *testing.T, caFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(b)
}

// waitHealthy polls /healthz until it answers 200 "ok".
func waitHealthy(t *testing.T, c *http.Client, base string) {
	t.Helper()
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = get(t, c, base+"/healthz"); code == 200 && body == "ok" {
			return
		}
	}
	t.Fatalf("GET /healthz = %d %q, want 200 ok", code, body)
}

// token asks the token endpoint for an access token with the client
// credentials grant, as az does.
func token(t *testing.T, c *http.Client, authority, clientID, secret string) int {
	t.Helper()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {clientID},
		"client_secret": {secret},
		"scope":         {audience + "/.default"},
	}
	resp, err := c.PostForm(authority+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode == 200 && body.AccessToken == "" {
		t.Errorf("token answer 200 without an access_token")
	}
	return resp.StatusCode
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

// TestServe runs the real binary: first start, what it writes, its
// endpoints, a refused second instance, SIGTERM, and a restart with a
// config file that keeps the identity.
func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startDeltadisk(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	base, credPath := p.waitReady(t)
	if want := filepath.Join(dir, credentialsFileName); credPath != want {
		t.Errorf("ready line names %s, want %s", credPath, want)
	}
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.1" || u.Port() == "0" || u.Port() == "" {
		t.Fatalf("ready line URL %q, want https://127.0.0.1:<bound port>", base)
	}

	creds := readCredentials(t, credPath)
	wantKeys := []string{"tenantId", "subscriptionId", "clientId", "clientSecret", "resourceManagerUrl", "authority", "audience", "caCertFile", "location"}
	if len(creds) != len(wantKeys) {
		t.Errorf("credentials.json has keys %v, want exactly %v", creds, wantKeys)
	}
	for _, k := range wantKeys {
		if creds[k] == "" {
			t.Errorf("credentials.json: %s is missing or empty", k)
		}
	}
	for _, k := range []string{"tenantId", "subscriptionId", "clientId"} {
		if uuid.Validate(creds[k]) != nil {
			t.Errorf("credentials.json: %s = %q, want a GUID", k, creds[k])
		}
	}
	for k, want := range map[string]string{
		"resourceManagerUrl": base + "/",
		"authority":          base + "/adfs",
		"audience":           "https://management.deltadisk.local/",
		"caCertFile":         filepath.Join(dir, "tls", "ca.pem"),
		"location":           "eastus",
	} {
		if creds[k] != want {
			t.Errorf("credentials.json: %s = %q, want %q", k, creds[k], want)
		}
	}
	wantMode(t, dir, 0o700)
	wantMode(t, filepath.Join(dir, stateFileName), 0o600)
	wantMode(t, filepath.Join(dir, "tls", "ca-key.pem"), 0o600)
	for _, name := range []string{formatFileName, metaFileName, filepath.Join(zonesDirName, "eastus-3"), filepath.Join(zonesDirName, "westus")} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("data dir lacks %s: %v", name, err)
		}
	}

	c := clientTrusting(t, creds["caCertFile"])
	waitHealthy(t, c, base)
	code, body := get(t, c, base+"/metrics")
	for _, want := range []string{"# TYPE deltadisk_http_requests_total counter", `handler="healthz"`, "go_goroutines", "process_open_fds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /metrics = %d, lacking %q", code, want)
		}
	}
	if got := token(t, c, creds["authority"], creds["clientId"], creds["clientSecret"]); got != 200 {
		t.Errorf("token for the default principal: status %d, want 200", got)
	}
	if got := token(t, c, creds["authority"], creds["clientId"], "wrong"); got == 200 {
		t.Error("token with a wrong secret: status 200, want a refusal")
	}

	// A second server on the same data dir is refused and changes nothing.
	before, _ := os.ReadFile(credPath)
	second := startDeltadisk(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	if code := second.exitCode(t, 30*time.Second); code == 0 || !strings.Contains(second.stderr.String(), "locked") {
		t.Errorf("second serve on the data dir: exit %d, output %q; want a non-zero exit saying the store is locked", code, second.stderr)
	}
	if after, _ := os.ReadFile(credPath); !bytes.Equal(before, after) {
		t.Error("the refused second server rewrote credentials.json")
	}

	p.stop(t)
	ca, _ := os.ReadFile(creds["caCertFile"])

	// Restart with a config file: same identity and CA, a new port, the
	// config's principal can log in.
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	cfg := fmt.Sprintf(`{
		"subscriptions": [{"subscriptionId": "44444444-4444-4444-4444-444444444444", "displayName": "second"}],
		"principals": [{"clientId": "reader", "clientSecret": "reader-secret-0123456789",
			"roles": [{"role": "Reader", "scope": "/subscriptions/%s"}]}],
		"regions": [{"name": "deltalab", "zones": 1}],
		"policy": {"snapshotRateWindow": "2s", "maxIncrementalPerDisk": 3}
	}`, creds["subscriptionId"])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startDeltadisk(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--config", cfgPath)
	base2, _ := p.waitReady(t)
	creds2 := readCredentials(t, credPath)
	for _, k := range []string{"tenantId", "subscriptionId", "clientId", "clientSecret", "caCertFile"} {
		if creds2[k] != creds[k] {
			t.Errorf("after restart %s = %q, want %q as before", k, creds2[k], creds[k])
		}
	}
	if creds2["resourceManagerUrl"] != base2+"/" {
		t.Errorf("after restart resourceManagerUrl = %q, want %q", creds2["resourceManagerUrl"], base2+"/")
	}
	if ca2, _ := os.ReadFile(creds2["caCertFile"]); !bytes.Equal(ca, ca2) {
		t.Error("the CA changed across a restart")
	}
	waitHealthy(t, c, base2)
	if got := token(t, c, creds2["authority"], "reader", "reader-secret-0123456789"); got != 200 {
		t.Errorf("token for the config's principal: status %d, want 200", got)
	}
	if got := token(t, c, creds2["authority"], creds["clientId"], creds["clientSecret"]); got != 200 {
		t.Errorf("token for the default principal after restart: status %d, want 200", got)
	}
	p.stop(t)
}

func TestServeRefusesUnknownFormat(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, formatFileName), []byte(`{"format": 42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDeltadisk(t, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	if code := p.exitCode(t, 30*time.Second); code == 0 {
		t.Fatalf("serve on a format-42 data dir exited 0; output:\n%s", p.stderr)
	}
	out := p.stderr.String()
	if !strings.Contains(out, "format 42") || !strings.Contains(out, dir) || !strings.Contains(out, "ERROR") {
		t.Errorf("output %q, want an error naming the data dir and format 42", out)
	}
	if _, err := os.Stat(filepath.Join(dir, metaFileName)); err == nil {
		t.Error("a metadata store was created in the refused data dir")
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"policy": {"snapshotRateWindw": "2s"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDeltadisk(t, "serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--config", cfg)
	if code := p.exitCode(t, 30*time.Second); code == 0 || !strings.Contains(p.stderr.String(), `"snapshotRateWindw"`) {
		t.Errorf("serve with a misspelt policy field: exit %d, output %q; want non-zero naming the field", code, p.stderr)
	}
}
