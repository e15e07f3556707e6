// Command fanout copies stored, ephemeral and notification events to chat.deliveries, once
// per gateway that has subscribers for the event's room (see docs/architecture.md).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/fanout/internal/app"
)

func main() {
	brokers := flag.String("brokers", service.Env("KAFKA_BROKERS", service.DefaultBrokers), "Kafka bootstrap brokers, comma-separated")
	httpAddr := flag.String("http-addr", service.Env("HTTP_ADDR", ":8091"), "address of /healthz, /readyz and /metrics")
	prefix := flag.String("topic-prefix", service.Env("TOPIC_PREFIX", ""), "prefix of every topic name")
	group := flag.String("group", service.Env("FANOUT_GROUP", "fanout"), "consumer group")
	startOffset := flag.String("start-offset", service.Env("START_OFFSET", "last"), "where a group without committed offsets starts: first or last")
	presenceExpiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry),
		"a gateway without a heartbeat for this long is dead: its routes are dropped, and its subscription keys deleted after as long again (PRESENCE_EXPIRY)")
	logLevel := flag.String("log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	healthcheck := flag.Bool("healthcheck", false, "probe -http-addr's /healthz and exit 0 if healthy (for container healthchecks)")
	flag.Parse()

	if *healthcheck {
		service.Healthcheck(*httpAddr)
	}
	logger := service.NewLogger("fanout", *logLevel)
	start, err := app.ParseStartOffset(*startOffset)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := service.SignalContext()
	defer stop()
	err = app.Run(ctx, app.Config{
		Brokers:        service.SplitList(*brokers),
		HTTPAddr:       *httpAddr,
		TopicPrefix:    *prefix,
		Group:          *group,
		StartOffset:    start,
		PresenceExpiry: *presenceExpiry,
		Logger:         logger,
	})
	if err != nil {
		logger.Error("fanout failed", "error", err)
		stop()
		os.Exit(1)
	}
	logger.Info("fanout stopped")
}
