package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files [LoadOrCreateTLS] keeps in its directory. Only CAFile is meant for
// clients; the keys never leave the directory.
const (
	CAFile         = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 365 * 24 * time.Hour
	// renewBefore is how long before its expiry a certificate is replaced.
	renewBefore = 30 * 24 * time.Hour
	// backdate absorbs clock skew between the server and its clients.
	backdate = time.Hour
)

// defaultHosts are in every generated server certificate, so a local
// client reaches the server by any of its loopback names.
var defaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// LoadOrCreateTLS returns a server certificate for hosts (IP addresses or
// DNS names, plus 127.0.0.1, ::1 and localhost), signed by a private CA
// kept in dir, and the path of the CA certificate clients should trust.
//
// The first call creates dir (0700), an ECDSA P-256 CA whose key is
// written 0600 and never leaves dir, and the server certificate. Later
// calls reuse both; the server certificate is reissued, by the same CA,
// when the wanted names differ from its SANs or it is within 30 days of
// expiry. The CA is replaced only when it nears its own expiry (after ten
// years): a CA certificate whose key is missing or does not match is an
// error, since clients trust it and a silent replacement would break them.
func LoadOrCreateTLS(dir string, hosts []string, now time.Time) (cert tls.Certificate, caFile string, err error) {
	ips, dnsNames, err := sanNames(hosts)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: %w", err)
	}
	ca, caKey, err := loadOrCreateCA(dir, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	caFile, err = filepath.Abs(filepath.Join(dir, CAFile))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("pki: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && c.Leaf != nil &&
		c.Leaf.CheckSignatureFrom(ca) == nil && fresh(c.Leaf, now) &&
		slices.Equal(leafIPs(c.Leaf), ips) && slices.Equal(leafDNSNames(c.Leaf), dnsNames) {
		if err := restrictMode(keyPath); err != nil {
			return tls.Certificate{}, "", err
		}
		return c, caFile, nil
	}
	// Missing, damaged, of another CA, expiring or for other names: issue
	// a new one.
	cert, err = issueServerCert(dir, ca, caKey, ips, dnsNames, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, caFile, nil
}

// LoadTLS loads a certificate and key the user provides (PEM files). It
// refuses a certificate that is not valid at now, which clients would
// refuse anyway, with a less helpful message.
func LoadTLS(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: loading %s and %s: %w", certFile, keyFile, err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("pki: %s: %w", certFile, err)
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, fmt.Errorf("pki: %s expired on %s", certFile, leaf.NotAfter.Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, fmt.Errorf("pki: %s is not valid before %s", certFile, leaf.NotBefore.Format(time.RFC3339))
	}
	return c, nil
}

// sanNames splits hosts, plus the loopback names, into sorted, distinct IP
// addresses (in their String form) and lowercase DNS names.
func sanNames(hosts []string) (ips, dnsNames []string, err error) {
	for _, h := range slices.Concat(defaultHosts, hosts) {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip.String())
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("pki: %q is neither an IP address nor a DNS name", h)
		}
		dnsNames = append(dnsNames, h)
	}
	slices.Sort(ips)
	slices.Sort(dnsNames)
	return slices.Compact(ips), slices.Compact(dnsNames), nil
}

// validDNSName accepts letters, digits, '-' and '.' in labels of 1 to 63
// bytes, and a leading "*." wildcard.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func leafIPs(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func leafDNSNames(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fresh reports whether c is valid at now and stays so for longer than
// the renewal margin.
func fresh(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && now.Add(renewBefore).Before(c.NotAfter)
}

// loadOrCreateCA returns the CA in dir, making one if there is none or
// the present one nears its expiry. The key is written before the
// certificate, so a crash in between leaves no certificate and the next
// start makes a new CA over the orphaned key.
func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKeyFile)
	certPEM, err := os.ReadFile(certPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createCA(dir, now)
	case err != nil:
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	ca, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: the CA certificate %s has no usable key (%w); remove %s to make a new CA, which clients must then trust instead",
			certPath, err, certPath)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("pki: %s does not match the CA certificate %s; remove %s to make a new CA, which clients must then trust instead",
			keyPath, certPath, certPath)
	}
	if !fresh(ca, now) || !ca.IsCA {
		return createCA(dir, now)
	}
	if err := restrictMode(keyPath); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func createCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	// A random suffix tells apart the CAs of several installations in a
	// client's trust store.
	tag := make([]byte, 4)
	if _, err := rand.Read(tag); err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"deltadisk"}, CommonName: "deltadisk local CA " + hex.EncodeToString(tag)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: creating the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAFile), pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func issueServerCert(dir string, ca *x509.Certificate, caKey crypto.Signer, ips, dnsNames []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"deltadisk"}, CommonName: "deltadisk server"},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, s := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issuing the server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	// Key first: a crash before the certificate is written leaves a pair
	// that does not match, which the next start replaces.
	if err := writeKey(filepath.Join(dir, serverKeyFile), key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(filepath.Join(dir, serverCertFile), pemCert(der), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return n, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// restrictMode makes a key file 0600 again if someone loosened it.
func restrictMode(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file beside it is
// written, synced and renamed over it, and the directory synced, so a
// crash leaves the old file or the new one, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600; set perm before any byte is written.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
