// Command notification consumes chat.stored and notifies members who are offline about
// direct messages, @mentions and messages in rooms set to notify_all: it stores the
// notifications in PostgreSQL and publishes notification.created through the outbox.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/notification/internal/app"
)

func main() {
	f := service.NewConsumerFlags("notification", ":8092", "CONSUMER_GROUP")
	databaseURL := flag.String("database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	expiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry), "a gateway without a heartbeat for this long is dead (PRESENCE_EXPIRY)")
	batchSize := flag.Int("batch-size", service.EnvInt("BATCH_SIZE", 100), "most events handled in one transaction (BATCH_SIZE)")
	migrate := flag.Bool("migrate", false, "apply database migrations before starting (persistence normally does)")
	service.Main(f, func(ctx context.Context, logger *slog.Logger) error {
		return app.Run(ctx, app.Config{
			Brokers:        f.Brokers,
			DatabaseURL:    *databaseURL,
			HTTPAddr:       f.HTTPAddr,
			TopicPrefix:    f.TopicPrefix,
			Group:          f.Group,
			StartOffset:    f.StartOffset,
			BatchSize:      *batchSize,
			PresenceExpiry: *expiry,
			Migrate:        *migrate,
			Logger:         logger,
		})
	})
}
