package service

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
)

// KafkaCheck is ready when the cluster answers a metadata request.
func KafkaCheck(brokers []string) Check {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		_, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
		return err
	}
}

// PostgresCheck is ready when the pool can run a query.
func PostgresCheck(pool *pgxpool.Pool) Check {
	return func(ctx context.Context) error { return pool.Ping(ctx) }
}
