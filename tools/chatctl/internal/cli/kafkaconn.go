package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
)

// kafkaConn is a Kafka client with a transport of its own. kafka-go's
// default transport is process-wide and serves metadata from a cache that
// refreshes every few seconds; an operator command (and a test that runs
// several in one process) must see the cluster as it is now.
type kafkaConn struct {
	*kafka.Client
	brokers   string
	transport *kafka.Transport
	sec       kafkasec.Security
}

// kafkaSecurity reads the Kafka security settings (KAFKA_TLS_CA_FILE,
// KAFKA_SASL_MECHANISM, ... as the services read them) from the environment; none
// set is PLAINTEXT. A malformed one is a usage error naming the variable.
func (a *app) kafkaSecurity() (kafkasec.Security, error) {
	cfg, err := kafkasec.FromEnv(a.env.Getenv)
	if err != nil {
		return kafkasec.Security{}, usagef("%v", err)
	}
	sec, err := cfg.Security()
	if err != nil {
		return kafkasec.Security{}, usagef("%v", err)
	}
	return sec, nil
}

// dialKafka prepares a client for the comma-separated bootstrap list, secured as
// the environment says. It does not connect yet; the first request does.
func (a *app) dialKafka(brokers string, timeout time.Duration) (*kafkaConn, error) {
	addrs := splitList(brokers)
	if len(addrs) == 0 {
		return nil, usagef("no Kafka brokers given (-brokers or KAFKA_BROKERS)")
	}
	sec, err := a.kafkaSecurity()
	if err != nil {
		return nil, err
	}
	tr := sec.Secure(&kafka.Transport{DialTimeout: timeout, IdleTimeout: 30 * time.Second, MetadataTTL: time.Second})
	return &kafkaConn{
		Client:    &kafka.Client{Addr: kafka.TCP(addrs...), Timeout: timeout, Transport: tr},
		brokers:   strings.Join(addrs, ","),
		transport: tr,
		sec:       sec,
	}, nil
}

// ping asks for the broker list. Some kafka-go calls (ListGroups) answer an
// unreachable cluster with an empty result instead of an error; a command
// pings first so "no consumer groups" cannot mean "no cluster".
func (k *kafkaConn) ping(ctx context.Context) error {
	_, err := k.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	return k.wrap(err)
}

// Close releases the connections.
func (k *kafkaConn) Close() { k.transport.CloseIdleConnections() }

// wrap names the bootstrap addresses when the cluster could not be reached
// at all, so an operator sees at once which address to fix.
func (k *kafkaConn) wrap(err error) error {
	if err == nil || !unreachable(err) {
		return k.sec.Explain(err)
	}
	return fmt.Errorf("cannot reach Kafka at %s (set -brokers or KAFKA_BROKERS): %w", k.brokers, err)
}

// unreachable reports errors that mean no broker answered: refused or timed
// out connections and failed name lookups.
func unreachable(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	case errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "dial"):
		return true
	}
	return false
}
