// Command notification consumes chat.stored and notifies members who are offline about
// direct messages, @mentions and messages in rooms set to notify_all: it stores the
// notifications in PostgreSQL and publishes notification.created through the outbox.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/notification/internal/app"
)

func main() {
	brokers := flag.String("brokers", service.Env("KAFKA_BROKERS", service.DefaultBrokers), "Kafka bootstrap brokers, comma-separated")
	databaseURL := flag.String("database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "PostgreSQL URL")
	httpAddr := flag.String("http-addr", service.Env("HTTP_ADDR", ":8092"), "address of /healthz, /readyz and /metrics")
	prefix := flag.String("topic-prefix", service.Env("TOPIC_PREFIX", ""), "prefix of every topic name (tests)")
	group := flag.String("group", service.Env("CONSUMER_GROUP", "notification"), "Kafka consumer group")
	startOffset := flag.String("start-offset", service.Env("START_OFFSET", "last"), "where a group without committed offsets starts: first or last")
	expiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry), "a gateway without a heartbeat for this long is dead")
	batchSize := flag.Int("batch-size", service.EnvInt("BATCH_SIZE", 100), "most events handled in one transaction")
	migrate := flag.Bool("migrate", false, "apply database migrations before starting (persistence normally does)")
	logLevel := flag.String("log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	healthcheck := flag.Bool("healthcheck", false, "check /healthz of a running instance and exit")
	flag.Parse()

	if *healthcheck {
		service.Healthcheck(*httpAddr)
	}
	logger := service.NewLogger("notification", *logLevel)
	start, err := app.ParseStartOffset(*startOffset)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := service.SignalContext()
	defer stop()
	err = app.Run(ctx, app.Config{
		Brokers:        service.SplitList(*brokers),
		DatabaseURL:    *databaseURL,
		HTTPAddr:       *httpAddr,
		TopicPrefix:    *prefix,
		Group:          *group,
		StartOffset:    start,
		BatchSize:      *batchSize,
		PresenceExpiry: *expiry,
		Migrate:        *migrate,
		Logger:         logger,
	})
	if err != nil {
		logger.Error("notification failed", "error", err)
		stop()
		os.Exit(1)
	}
	logger.Info("notification stopped")
}
