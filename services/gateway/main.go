// Command gateway is kchat's client-facing service: REST and WebSocket for clients, Kafka
// for everything else. This file only reads flags and starts internal/app.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/gateway/internal/app"
)

func main() {
	host, _ := os.Hostname()
	addr := flag.String("addr", service.Env("HTTP_ADDR", ":8081"), "HTTP address for the API, WebSocket (/ws) and /healthz /readyz /metrics (HTTP_ADDR)")
	id := flag.String("id", service.Env("GATEWAY_ID", ""), `gateway instance id (GATEWAY_ID; default "gw-<hostname>-<port>")`)
	brokers := flag.String("brokers", service.Env("KAFKA_BROKERS", service.DefaultBrokers), "Kafka bootstrap brokers, comma-separated (KAFKA_BROKERS)")
	dbURL := flag.String("database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "PostgreSQL URL (DATABASE_URL)")
	prefix := flag.String("topic-prefix", service.Env("TOPIC_PREFIX", ""), "prefix of every topic name (TOPIC_PREFIX)")
	origins := flag.String("allowed-origins", service.Env("ALLOWED_ORIGINS", ""), "allowed WebSocket Origins, comma-separated patterns (ALLOWED_ORIGINS; default: same host and http://localhost:*)")
	maxText := flag.Int("max-text-bytes", service.EnvInt("MAX_TEXT_BYTES", 4096), "largest message text in bytes (MAX_TEXT_BYTES)")
	readLimit := flag.Int64("read-limit", int64(service.EnvInt("READ_LIMIT", 16<<10)), "largest WebSocket frame in bytes; larger closes with 1009 (READ_LIMIT)")
	sendQueue := flag.Int("send-queue", service.EnvInt("SEND_QUEUE", 256), "frames queued per connection before catch-up (SEND_QUEUE)")
	idle := flag.Duration("idle-timeout", service.EnvDuration("IDLE_TIMEOUT", 5*time.Minute), "close connections silent for this long with 4000 (IDLE_TIMEOUT)")
	ping := flag.Duration("ping-interval", service.EnvDuration("PING_INTERVAL", 25*time.Second), "WebSocket ping interval (PING_INTERVAL)")
	writeTimeout := flag.Duration("write-timeout", service.EnvDuration("WRITE_TIMEOUT", 10*time.Second), "deadline for writing one frame (WRITE_TIMEOUT)")
	sessionTTL := flag.Duration("session-ttl", service.EnvDuration("SESSION_TTL", 24*time.Hour), "session token lifetime (SESSION_TTL)")
	reconnectTTL := flag.Duration("reconnect-ttl", service.EnvDuration("RECONNECT_TTL", time.Hour), "reconnect token lifetime (RECONNECT_TTL)")
	catchUp := flag.Duration("catchup-timeout", service.EnvDuration("CATCHUP_TIMEOUT", 30*time.Second), "longest catch-up before a slow client is closed with 4008 (CATCHUP_TIMEOUT)")
	logLevel := flag.String("log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on -addr and exit 0 if healthy (for container healthchecks)")
	flag.Parse()

	if *healthcheck {
		service.Healthcheck(*addr)
	}
	if *id == "" {
		_, port, _ := net.SplitHostPort(*addr)
		*id = "gw-" + host + "-" + port
	}
	log := service.NewLogger("gateway", *logLevel).With("gateway_id", *id)
	ctx, stop := service.SignalContext()
	defer stop()

	cfg := app.Config{
		ID: *id, Addr: *addr, Brokers: service.SplitList(*brokers), DatabaseURL: *dbURL, TopicPrefix: *prefix,
		AllowedOrigins: service.SplitList(*origins), MaxTextBytes: *maxText, ReadLimit: *readLimit, SendQueue: *sendQueue,
		IdleTimeout: *idle, PingInterval: *ping, WriteTimeout: *writeTimeout, SessionTTL: *sessionTTL, ReconnectTTL: *reconnectTTL,
	}
	cfg.Hub.CatchUpTimeout = *catchUp
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
	if err := a.Serve(ctx, ln); err != nil {
		log.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
}
