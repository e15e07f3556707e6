package stacktest

import (
	"slices"
	"testing"
)

// Processes log in as the test does, unless the test gives one security of its own; the
// caller's environment never adds Kafka security of its own to either.
func TestProcessEnv_security(t *testing.T) {
	e := &Env{KafkaEnv: []string{"KAFKA_TLS_CA_FILE=/ca.pem", "KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME=admin", "KAFKA_SASL_PASSWORD_FILE=/admin"}}
	base := []string{"PATH=/bin", "KAFKA_SASL_PASSWORD=from-shell", "KAFKA_BROKERS=b:1"}
	tests := []struct {
		name  string
		extra []string
		want  []string
	}{
		{"the test's login", []string{"X=1"}, []string{"PATH=/bin", "KAFKA_BROKERS=b:1", "KAFKA_TLS_CA_FILE=/ca.pem",
			"KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "KAFKA_SASL_USERNAME=admin", "KAFKA_SASL_PASSWORD_FILE=/admin", "X=1"}},
		{"a login of its own", []string{"KAFKA_SASL_USERNAME=gateway", "KAFKA_SASL_PASSWORD=pw"},
			[]string{"PATH=/bin", "KAFKA_BROKERS=b:1", "KAFKA_SASL_USERNAME=gateway", "KAFKA_SASL_PASSWORD=pw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.processEnv(base, tt.extra); !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
	plain := &Env{}
	if got := plain.processEnv(base, nil); !slices.Equal(got, []string{"PATH=/bin", "KAFKA_BROKERS=b:1"}) {
		t.Errorf("PLAINTEXT: got %q", got)
	}
}
