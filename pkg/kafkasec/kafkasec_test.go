package kafkasec_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/kafkasec"
)

func TestFromEnv_and_Security(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantVar  string // the variable the error names; "" for no error
		wantTLS  bool
		wantSASL bool
	}{
		{"nothing is plaintext", nil, "", false, false},
		{"scram over tls", map[string]string{"KAFKA_TLS_CA_FILE": ca, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
			"KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "", true, true},
		{"scram-sha-256 lower case", map[string]string{"KAFKA_SASL_MECHANISM": "scram-sha-256",
			"KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "", false, true},
		{"password from file", map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
			"KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD_FILE": pwFile}, "", false, true},
		{"tls with system roots", map[string]string{"KAFKA_TLS": "true"}, "", true, false},
		{"tls malformed", map[string]string{"KAFKA_TLS": "yes please"}, "KAFKA_TLS", false, false},
		{"username without password", map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "gw"}, "KAFKA_SASL_PASSWORD", false, false},
		{"mechanism without username", map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_PASSWORD": "pw"}, "KAFKA_SASL_USERNAME", false, false},
		{"username without mechanism", map[string]string{"KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "KAFKA_SASL_MECHANISM", false, false},
		{"unknown mechanism", map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "KAFKA_SASL_MECHANISM", false, false},
		{"plain without tls", map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "KAFKA_SASL_MECHANISM", false, false},
		{"plain over tls", map[string]string{"KAFKA_TLS_CA_FILE": ca, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw"}, "", true, true},
		{"unreadable ca file", map[string]string{"KAFKA_TLS_CA_FILE": filepath.Join(dir, "missing.pem")}, "KAFKA_TLS_CA_FILE", false, false},
		{"ca file without certificate", map[string]string{"KAFKA_TLS_CA_FILE": garbage}, "KAFKA_TLS_CA_FILE", false, false},
		{"cert without key", map[string]string{"KAFKA_TLS_CERT_FILE": ca}, "KAFKA_TLS_KEY_FILE", false, false},
		{"key without cert", map[string]string{"KAFKA_TLS_KEY_FILE": ca}, "KAFKA_TLS_CERT_FILE", false, false},
		{"unreadable password file", map[string]string{"KAFKA_SASL_PASSWORD_FILE": filepath.Join(dir, "nope")}, "KAFKA_SASL_PASSWORD_FILE", false, false},
		{"password twice", map[string]string{"KAFKA_SASL_PASSWORD": "a", "KAFKA_SASL_PASSWORD_FILE": pwFile}, "KAFKA_SASL_PASSWORD_FILE", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := kafkasec.FromEnv(func(k string) string { return tc.env[k] })
			var sec kafkasec.Security
			if err == nil {
				sec, err = cfg.Security()
			}
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				if (sec.TLS != nil) != tc.wantTLS || (sec.SASL != nil) != tc.wantSASL {
					t.Errorf("TLS %v SASL %v, want TLS %v SASL %v", sec.TLS != nil, sec.SASL != nil, tc.wantTLS, tc.wantSASL)
				}
				if sec.Enabled() != (tc.wantTLS || tc.wantSASL) {
					t.Errorf("Enabled() = %v", sec.Enabled())
				}
				return
			}
			var ce *kafkasec.Error
			if !errors.As(err, &ce) || ce.Var != tc.wantVar || !strings.HasPrefix(err.Error(), tc.wantVar) {
				t.Fatalf("error %v, want a *kafkasec.Error naming %s", err, tc.wantVar)
			}
		})
	}
}

// clearEnv empties every variable of the package for the test: make test may run with
// the stack's own (KAFKA_SASL_PASSWORD_FILE next to KAFKA_SASL_PASSWORD is refused).
func clearEnv(t *testing.T) {
	for _, k := range []string{kafkasec.EnvTLS, kafkasec.EnvTLSCAFile, kafkasec.EnvTLSCertFile, kafkasec.EnvTLSKeyFile,
		kafkasec.EnvTLSServerName, kafkasec.EnvSASLMechanism, kafkasec.EnvSASLUsername, kafkasec.EnvSASLPassword,
		kafkasec.EnvSASLPasswordFile} {
		t.Setenv(k, "")
	}
}

func TestRegisterFlags_flag_overrides_env(t *testing.T) {
	clearEnv(t)
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USERNAME", "from-env")
	t.Setenv("KAFKA_SASL_PASSWORD", "pw")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f := kafkasec.RegisterFlags(fs)
	if err := fs.Parse([]string{"-kafka-sasl-username", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	sec, err := f.Security()
	if err != nil {
		t.Fatal(err)
	}
	if sec.User() != "from-flag" || sec.SASL == nil || sec.SASL.Name() != "SCRAM-SHA-512" {
		t.Errorf("user %q mechanism %v, want from-flag over SCRAM-SHA-512", sec.User(), sec.SASL)
	}
}

func TestZeroSecurity_keeps_kafka_go_defaults(t *testing.T) {
	var sec kafkasec.Security
	if sec.RoundTripper() != nil || sec.ReaderDialer() != nil {
		t.Error("the zero Security must leave kafka-go's default transport and reader dialer in place")
	}
	if d := sec.Dialer(10 * time.Second); d.TLS != nil || d.SASLMechanism != nil || !d.DualStack {
		t.Errorf("dialer %+v, want kafka.DefaultDialer's settings", d)
	}
}

// writeCA writes a self-signed CA certificate as PEM and returns its path.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Environ hands a Config to a child process: FromEnv reads the same Config back, and
// IsVar recognises every variable it sets.
func TestConfig_Environ_round_trips(t *testing.T) {
	want := kafkasec.Config{TLS: true, TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem",
		TLSServerName: "kafka", SASLMechanism: kafkasec.ScramSHA512, SASLUsername: "u", SASLPassword: "p w"}
	env := want.Environ()
	vars := map[string]string{}
	for _, kv := range env {
		if !kafkasec.IsVar(kv) {
			t.Errorf("IsVar(%q) = false", kv)
		}
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	got, err := kafkasec.FromEnv(func(k string) string { return vars[k] })
	if err != nil || got != want {
		t.Fatalf("read back %+v, %v; want %+v", got, err, want)
	}
	if len((kafkasec.Config{}).Environ()) != 0 {
		t.Error("the zero Config must set no variable")
	}
	for _, kv := range []string{"KAFKA_BROKERS=x", "KAFKA_TLSX=1", "PATH=/bin"} {
		if kafkasec.IsVar(kv) {
			t.Errorf("IsVar(%q) = true", kv)
		}
	}
}
