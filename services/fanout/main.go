// Command fanout copies stored, ephemeral and notification events to chat.deliveries, once
// per gateway that has subscribers for the event's room (see docs/architecture.md).
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/fanout/internal/app"
)

func main() {
	f := service.NewConsumerFlags("fanout", ":8091", "FANOUT_GROUP")
	presenceExpiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry),
		"a gateway without a heartbeat for this long is dead: its routes are dropped, and its subscription keys deleted after as long again (PRESENCE_EXPIRY)")
	service.Main(f, func(ctx context.Context, logger *slog.Logger) error {
		return app.Run(ctx, app.Config{
			Brokers:        f.Brokers,
			Security:       f.Security,
			HTTPAddr:       f.HTTPAddr,
			TopicPrefix:    f.TopicPrefix,
			Group:          f.Group,
			StartOffset:    f.StartOffset,
			PresenceExpiry: *presenceExpiry,
			Logger:         logger,
		})
	})
}
