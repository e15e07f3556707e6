package app_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/devcert"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// With a certificate the gateway itself serves HTTPS and WSS to clients that trust its CA,
// marks its answers with HSTS, and a plain-HTTP client gets no answer it could mistake for
// the API.
func TestTLS_serves_https_and_wss_with_hsts(t *testing.T) {
	t.Parallel()
	ca, err := devcert.NewCA("gateway test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("gateway", []string{"127.0.0.1", "localhost"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, leaf.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, leaf.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *app.Config) { c.TLSCertFile, c.TLSKeyFile, c.HSTSMaxAge = certFile, keyFile, 2*time.Hour })
	if !strings.HasPrefix(h.base, "https://") {
		t.Fatalf("base %s", h.base)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	stacktest.WaitHTTPWith(t, client, h.base+"/readyz", time.Minute)

	post := func(path string, body any) (*http.Response, gwtest.Frame) {
		t.Helper()
		raw, _ := json.Marshal(body)
		res, err := client.Post(h.base+path, "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		var f gwtest.Frame
		_ = json.NewDecoder(res.Body).Decode(&f)
		return res, f
	}
	creds := map[string]string{"username": "tess", "password": "password-tess"}
	if res, f := post("/api/register", creds); res.StatusCode != 201 {
		t.Fatalf("register over HTTPS: %d %v", res.StatusCode, f)
	}
	res, login := post("/api/login", creds)
	if res.StatusCode != 200 {
		t.Fatalf("login over HTTPS: %d %v", res.StatusCode, login)
	}
	if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=7200" {
		t.Fatalf("Strict-Transport-Security %q, want max-age=7200", got)
	}

	c := gwtest.Dial(t, h.ws, &websocket.DialOptions{HTTPClient: client})
	c.Send(map[string]any{"type": "auth", "token": login.Str("token"), "ref": "auth"})
	c.Expect("welcome", "auth")

	// The same port spoken to in plain HTTP: Go's server answers a TLS port's plain
	// request with 400 and a fixed text, never with the API.
	plain, err := http.Get(strings.Replace(h.base, "https://", "http://", 1) + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the TLS port: %d, want 400", plain.StatusCode)
	}
	// A client that does not trust the CA is refused at the handshake.
	if _, err := http.Get(h.base + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusting client: %v, want a certificate error", err)
	}
}

// Without TLS of its own, HSTS goes out only for requests a trusted proxy says came over
// HTTPS; a client-written X-Forwarded-Proto is not believed when no proxy is trusted.
func TestTLS_hsts_behind_a_proxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		trustProxy bool
		proto      string
		want       string
	}{
		{"trusted proxy, https", true, "https", "max-age=60"},
		{"trusted proxy, http", true, "http", ""},
		{"no proxy trusted", false, "https", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // a gateway of its own each
			h := start(t, func(c *app.Config) { c.TrustProxyHeader, c.HSTSMaxAge = tc.trustProxy, time.Minute })
			req, _ := http.NewRequest("GET", h.base+"/api/me", nil)
			req.Header.Set("X-Forwarded-Proto", tc.proto)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if got := res.Header.Get("Strict-Transport-Security"); got != tc.want {
				t.Fatalf("Strict-Transport-Security %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTLS_config_errors_stop_the_gateway(t *testing.T) {
	t.Parallel()
	env := stacktest.Get(t)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"certificate without key", "/nonexistent/tls.crt", "", "TLS_KEY_FILE"},
		{"unreadable certificate", "/nonexistent/tls.crt", "/nonexistent/tls.key", "TLS_CERT_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := app.New(t.Context(), app.Config{ID: "gw-tls-check", Brokers: env.Brokers, KafkaSecurity: env.Security, TLSCertFile: tc.cert, TLSKeyFile: tc.key}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
