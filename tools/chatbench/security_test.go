package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/devcert"
	"github.com/kchat/kchat/pkg/kafkasec"
)

// The franz-go clients get the same security as the kafka-go ones: TLS from the CA file,
// the SASL mechanism by name, nothing for PLAINTEXT, an error for what kafkasec refuses.
func TestFranzSecurity(t *testing.T) {
	ca, err := devcert.NewCA("chatbench test CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     kafkasec.Config
		options int
		err     string
	}{
		{name: "plaintext"},
		{name: "tls", cfg: kafkasec.Config{TLSCAFile: caFile}, options: 1},
		{name: "scram-sha-512 over tls", cfg: kafkasec.Config{TLSCAFile: caFile, SASLMechanism: "SCRAM-SHA-512", SASLUsername: "admin", SASLPassword: "pw"}, options: 2},
		{name: "scram-sha-256", cfg: kafkasec.Config{SASLMechanism: "scram-sha-256", SASLUsername: "admin", SASLPassword: "pw"}, options: 1},
		{name: "plain over tls", cfg: kafkasec.Config{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "admin", SASLPassword: "pw"}, options: 2},
		{name: "unreadable CA", cfg: kafkasec.Config{TLSCAFile: caFile + ".missing"}, err: "KAFKA_TLS_CA_FILE"},
		{name: "unknown mechanism", cfg: kafkasec.Config{SASLMechanism: "GSSAPI", SASLUsername: "admin", SASLPassword: "pw"}, err: "KAFKA_SASL_MECHANISM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := franzSecurity(tc.cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || len(opts) != tc.options {
				t.Fatalf("%d options (%v), want %d", len(opts), err, tc.options)
			}
		})
	}
}
