package edgetls

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/devcert"
)

func issue(t *testing.T, ca *devcert.CA, name string, notAfter time.Time) devcert.Leaf {
	t.Helper()
	leaf, err := ca.Issue(name, []string{"127.0.0.1"}, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func write(t *testing.T, path string, data []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Explicit times: two writes within the file system's timestamp granularity would
	// otherwise look unchanged.
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func served(t *testing.T, c *Certificate) string {
	t.Helper()
	got, err := c.ServerConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(got.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestLoad_refuses_what_cannot_be_served(t *testing.T) {
	ca, err := devcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := issue(t, ca, "good", time.Now().Add(time.Hour))
	other := issue(t, ca, "other", time.Now().Add(time.Hour))
	expired := issue(t, ca, "expired", time.Now().Add(-time.Minute))
	files := map[string][]byte{"good.crt": good.CertPEM, "good.key": good.KeyPEM, "other.key": other.KeyPEM,
		"expired.crt": expired.CertPEM, "expired.key": expired.KeyPEM, "garbage.crt": []byte("not a certificate")}
	for name, data := range files {
		write(t, filepath.Join(dir, name), data, time.Now())
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"no key", p("good.crt"), "", "TLS_KEY_FILE"},
		{"no certificate", "", p("good.key"), "TLS_CERT_FILE"},
		{"missing file", p("absent.crt"), p("good.key"), "TLS_CERT_FILE: stat"},
		{"key of another certificate", p("good.crt"), p("other.key"), "private key does not match public key"},
		{"not PEM", p("garbage.crt"), p("good.key"), "failed to find any PEM data"},
		{"expired", p("expired.crt"), p("expired.key"), "certificate expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.cert, tc.key, 0, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A renewal replaces the files under a running gateway: the next handshake serves the new
// pair, and a pair caught half-written keeps the old one in service.
func TestCertificate_serves_a_renewed_pair(t *testing.T) {
	ca, err := devcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := issue(t, ca, "first", time.Now().Add(time.Hour))
	t0 := time.Now().Add(-time.Hour)
	write(t, certFile, first.CertPEM, t0)
	write(t, keyFile, first.KeyPEM, t0)
	c, err := Load(certFile, keyFile, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := served(t, c); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	second := issue(t, ca, "second", time.Now().Add(2*time.Hour))
	write(t, keyFile, second.KeyPEM, t0.Add(time.Minute)) // key replaced, certificate not yet
	if got := served(t, c); got != "first" {
		t.Fatalf("half-written renewal: served %q, want first", got)
	}
	write(t, certFile, second.CertPEM, t0.Add(time.Minute))
	if got := served(t, c); got != "second" {
		t.Fatalf("after renewal: served %q, want second", got)
	}

	// Between checks the files are not even looked at.
	c.recheck = time.Hour
	third := issue(t, ca, "third", time.Now().Add(3*time.Hour))
	write(t, certFile, third.CertPEM, t0.Add(2*time.Minute))
	write(t, keyFile, third.KeyPEM, t0.Add(2*time.Minute))
	if got := served(t, c); got != "second" {
		t.Fatalf("before the recheck interval: served %q, want second", got)
	}
	c.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if got := served(t, c); got != "third" {
		t.Fatalf("after the recheck interval: served %q, want third", got)
	}
}
