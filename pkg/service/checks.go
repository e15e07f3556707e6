package service

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/kafkasec"
)

// KafkaCheck is ready when the cluster answers a metadata request over connections
// secured by sec (the zero value: PLAINTEXT). A failure says what it likely means
// ("authentication failed", "not a TLS listener"), so /readyz names the cause.
func KafkaCheck(brokers []string, sec kafkasec.Security) Check {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 2 * time.Second, Transport: sec.RoundTripper()}
	return func(ctx context.Context) error {
		_, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
		return sec.Explain(err)
	}
}

// PostgresCheck is ready when the pool can run a query.
func PostgresCheck(pool *pgxpool.Pool) Check {
	return func(ctx context.Context) error { return pool.Ping(ctx) }
}
