package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/server"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func loadOrCreate(t *testing.T, dir string, hosts []string, now time.Time) (tls.Certificate, string) {
	t.Helper()
	cert, caFile, err := server.LoadOrCreateTLS(dir, hosts, now)
	if err != nil {
		t.Fatalf("LoadOrCreateTLS(%v): %v", hosts, err)
	}
	if cert.Leaf == nil {
		t.Fatal("certificate without Leaf")
	}
	return cert, caFile
}

func caPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return pool
}

func TestPKISANs(t *testing.T) {
	dir := t.TempDir()
	cert, caFile := loadOrCreate(t, dir, []string{"deltadisk.example", "10.1.2.3", "[fd00::1]", "Upper.Example.", "", "localhost"}, t0)
	if !filepath.IsAbs(caFile) || caFile != filepath.Join(dir, server.CAFile) {
		t.Errorf("caFile = %q, want the absolute path of %s in %s", caFile, server.CAFile, dir)
	}
	leaf := cert.Leaf
	if diff := cmp.Diff([]string{"deltadisk.example", "localhost", "upper.example"}, slices.Sorted(slices.Values(leaf.DNSNames))); diff != "" {
		t.Errorf("DNS SANs (-want +got):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if diff := cmp.Diff([]string{"10.1.2.3", "127.0.0.1", "::1", "fd00::1"}, ips); diff != "" {
		t.Errorf("IP SANs (-want +got):\n%s", diff)
	}
	// A client trusting ca.pem accepts the certificate for each name.
	pool := caPool(t, caFile)
	for _, name := range []string{"deltadisk.example", "upper.example", "localhost", "127.0.0.1", "::1", "10.1.2.3", "fd00::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: t0}); err != nil {
			t.Errorf("Verify(%s): %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool, CurrentTime: t0}); err == nil {
		t.Error("Verify(other.example) succeeded, want a name mismatch")
	}
	if ca := caCert(t, caFile); !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA IsCA=%t alg=%v, leaf alg=%v; want an ECDSA CA and leaf", ca.IsCA, ca.PublicKeyAlgorithm, leaf.PublicKeyAlgorithm)
	}
}

func caCert(t *testing.T, caFile string) *x509.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(caFile, filepath.Join(filepath.Dir(caFile), "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf
}

func TestPKIReuse(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"a.example", "192.0.2.1"}
	c1, caFile := loadOrCreate(t, dir, hosts, t0)
	ca1, _ := os.ReadFile(caFile)
	// Same names in another order and case, a day later: nothing changes.
	c2, caFile2 := loadOrCreate(t, dir, []string{"192.0.2.1", "A.example"}, t0.Add(24*time.Hour))
	ca2, _ := os.ReadFile(caFile2)
	if caFile2 != caFile || !bytes.Equal(ca1, ca2) {
		t.Error("the CA changed between calls")
	}
	if c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber) != 0 {
		t.Error("the server certificate was reissued for the same names")
	}
}

func TestPKIReissue(t *testing.T) {
	dir := t.TempDir()
	c1, caFile := loadOrCreate(t, dir, []string{"a.example"}, t0)
	ca1, _ := os.ReadFile(caFile)

	tests := []struct {
		name  string
		hosts []string
		now   time.Time
		want  bool // reissued
	}{
		{"host added", []string{"a.example", "b.example"}, t0, true},
		{"same again", []string{"a.example", "b.example"}, t0, false},
		{"host removed", []string{"b.example"}, t0, true},
		{"ip instead", []string{"198.51.100.7"}, t0, true},
		{"eleven months on", []string{"198.51.100.7"}, t0.Add(330 * 24 * time.Hour), false},
		{"near expiry", []string{"198.51.100.7"}, t0.Add(340 * 24 * time.Hour), true},
	}
	prev := c1
	pool := caPool(t, caFile)
	for _, tc := range tests {
		c, _ := loadOrCreate(t, dir, tc.hosts, tc.now)
		got := c.Leaf.SerialNumber.Cmp(prev.Leaf.SerialNumber) != 0
		if got != tc.want {
			t.Errorf("%s: reissued = %t, want %t", tc.name, got, tc.want)
		}
		for _, h := range tc.hosts {
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, CurrentTime: tc.now}); err != nil {
				t.Errorf("%s: Verify(%s) with the first CA: %v", tc.name, h, err)
			}
		}
		prev = c
	}
	if ca2, _ := os.ReadFile(caFile); !bytes.Equal(ca1, ca2) {
		t.Error("the CA changed when only the server certificate should have")
	}
}

func TestPKIModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	loadOrCreate(t, dir, nil, t0)
	want := map[string]os.FileMode{".": 0o700, "ca-key.pem": 0o600, "server-key.pem": 0o600, "ca.pem": 0o644, "server.pem": 0o644}
	check := func() {
		t.Helper()
		for name, mode := range want {
			info, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode().Perm(); got != mode {
				t.Errorf("mode of %s = %v, want %v", name, got, mode)
			}
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 4 {
			t.Errorf("%s holds %d entries, want 4 (no temporary files left)", dir, len(ents))
		}
	}
	check()
	// A key someone loosened is tightened again.
	for _, k := range []string{"ca-key.pem", "server-key.pem"} {
		if err := os.Chmod(filepath.Join(dir, k), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loadOrCreate(t, dir, nil, t0)
	check()
}

func TestPKIDamage(t *testing.T) {
	t.Run("CA key missing", func(t *testing.T) {
		dir := t.TempDir()
		loadOrCreate(t, dir, nil, t0)
		os.Remove(filepath.Join(dir, "ca-key.pem"))
		_, _, err := server.LoadOrCreateTLS(dir, nil, t0)
		if err == nil || !strings.Contains(err.Error(), "ca.pem") {
			t.Errorf("LoadOrCreateTLS = %v, want an error naming ca.pem", err)
		}
	})
	t.Run("CA key of another CA", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		loadOrCreate(t, dir, nil, t0)
		loadOrCreate(t, other, nil, t0)
		b, _ := os.ReadFile(filepath.Join(other, "ca-key.pem"))
		os.WriteFile(filepath.Join(dir, "ca-key.pem"), b, 0o600)
		if _, _, err := server.LoadOrCreateTLS(dir, nil, t0); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("LoadOrCreateTLS = %v, want a key mismatch error", err)
		}
	})
	t.Run("orphaned CA key", func(t *testing.T) {
		// A crash between writing the CA key and its certificate.
		dir := t.TempDir()
		loadOrCreate(t, dir, nil, t0)
		os.Remove(filepath.Join(dir, "ca.pem"))
		_, caFile := loadOrCreate(t, dir, nil, t0)
		if _, err := os.Stat(caFile); err != nil {
			t.Errorf("no new CA: %v", err)
		}
	})
	t.Run("server certificate damaged", func(t *testing.T) {
		dir := t.TempDir()
		_, caFile := loadOrCreate(t, dir, []string{"a.example"}, t0)
		os.WriteFile(filepath.Join(dir, "server.pem"), []byte("garbage"), 0o644)
		c, _ := loadOrCreate(t, dir, []string{"a.example"}, t0)
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "a.example", Roots: caPool(t, caFile), CurrentTime: t0}); err != nil {
			t.Errorf("reissued certificate: %v", err)
		}
	})
	t.Run("bad host", func(t *testing.T) {
		for _, h := range []string{"bad host", "a..b", "x/y", "host:443"} {
			if _, _, err := server.LoadOrCreateTLS(t.TempDir(), []string{h}, t0); err == nil {
				t.Errorf("LoadOrCreateTLS(%q) = nil error, want one", h)
			}
		}
	})
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	want, _ := loadOrCreate(t, dir, []string{"user.example"}, t0)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")

	got, err := server.LoadTLS(certFile, keyFile, t0)
	if err != nil {
		t.Fatalf("LoadTLS: %v", err)
	}
	if !bytes.Equal(got.Certificate[0], want.Certificate[0]) {
		t.Error("LoadTLS returned another certificate")
	}
	if _, err := server.LoadTLS(certFile, keyFile, t0.Add(2*365*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("LoadTLS two years on = %v, want an expiry error", err)
	}
	if _, err := server.LoadTLS(certFile, filepath.Join(dir, "ca-key.pem"), t0); err == nil {
		t.Error("LoadTLS with a key of another certificate = nil error, want one")
	}
	if _, err := server.LoadTLS(filepath.Join(dir, "missing.pem"), keyFile, t0); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("LoadTLS of a missing file = %v, want an error naming it", err)
	}
}

func TestSANsAcceptIPv6Listener(t *testing.T) {
	// A bracketed IPv6 host, as a URL's Host carries it, is one IP SAN.
	c, _ := loadOrCreate(t, t.TempDir(), []string{"[2001:db8::5]"}, t0)
	if !slices.ContainsFunc(c.Leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("2001:db8::5")) }) {
		t.Errorf("IP SANs = %v, want 2001:db8::5 among them", c.Leaf.IPAddresses)
	}
}
