package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// binary is the deltadisk binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deltadisk-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "deltadisk")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building deltadisk:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// credentials is credentials.json as serve writes it.
type credentials struct {
	TenantID           string `json:"tenantId"`
	SubscriptionID     string `json:"subscriptionId"`
	ClientID           string `json:"clientId"`
	ClientSecret       string `json:"clientSecret"`
	ResourceManagerURL string `json:"resourceManagerUrl"`
	Authority          string `json:"authority"`
	Audience           string `json:"audience"`
	CACertFile         string `json:"caCertFile"`
	Location           string `json:"location"`
}

// server is a running `deltadisk serve`.
type server struct {
	t       *testing.T
	dir     string
	config  string
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	creds   credentials
	httpc   *http.Client
	stopped bool
}

// startServer runs the real binary on a free loopback port with a data
// dir and an optional config file, and waits until it is healthy.
func startServer(t *testing.T, dir, config string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, config: config}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	credPath := filepath.Join(s.dir, "credentials.json")
	_ = os.Remove(credPath)
	args := []string{"serve", "--data-dir", s.dir, "--listen", "127.0.0.1:0"}
	if s.config != "" {
		args = append(args, "--config", s.config)
	}
	s.cmd = exec.Command(binary, args...)
	s.stderr = &bytes.Buffer{}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.stopped = false
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			s.stop()
			t.Fatalf("deltadisk serve did not become healthy; stderr:\n%s", s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
		b, err := os.ReadFile(credPath)
		if err != nil || json.Unmarshal(b, &s.creds) != nil {
			continue
		}
		ca, err := os.ReadFile(s.creds.CACertFile)
		if err != nil {
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		s.httpc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
		resp, err := s.httpc.Get(s.creds.ResourceManagerURL + "healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (s *server) stop() {
	if s.stopped || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("deltadisk serve exited with %v after SIGTERM; stderr:\n%s", err, s.stderr)
		}
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		s.t.Errorf("deltadisk serve did not stop within 15s of SIGTERM")
	}
}

func (s *server) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// clientOptions points the Azure SDK at this server, trusting its CA.
func (s *server) clientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: strings.TrimSuffix(s.creds.Authority, "adfs"),
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.creds.ResourceManagerURL, Audience: s.creds.Audience},
			},
		},
		Transport: s.httpc,
	}
}

// armOptions are the ARM client options for a principal.
func (s *server) armOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: s.clientOptions()}
}

// credential logs in as a principal through deltadisk's token endpoint.
func (s *server) credential(clientID, secret string) azcore.TokenCredential {
	s.t.Helper()
	cred, err := azidentity.NewClientSecretCredential("adfs", clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            s.clientOptions(),
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return cred
}

func (s *server) defaultCredential() azcore.TokenCredential {
	return s.credential(s.creds.ClientID, s.creds.ClientSecret)
}

// do sends a raw request with an optional bearer token.
func (s *server) do(method, path, token string, body []byte) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, strings.TrimSuffix(s.creds.ResourceManagerURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}
