// Command gateway is kchat's client-facing service: REST and WebSocket for clients, Kafka
// for everything else. This file only reads flags and starts internal/app.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/attach"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
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
	rateLimits := flag.Bool("rate-limits", service.EnvBool("RATE_LIMITS", true), "apply the message and frame limits below; -rate-limits=false (RATE_LIMITS=off) turns them off, e.g. for load tests")
	rateConn := flag.String("rate-conn", service.Env("RATE_CONN", "10/s:20"), "sends, edits, deletes and DMs per connection, as N/s[:burst] (RATE_CONN; off: none)")
	rateUser := flag.String("rate-user", service.Env("RATE_USER", "20/s:40"), "the same per user across this gateway's connections and REST (RATE_USER)")
	rateFrames := flag.String("rate-frames", service.Env("RATE_FRAMES", "50/s:100"), "frames of any type per connection (RATE_FRAMES)")
	abuseFactor := flag.Float64("abuse-factor", float64(service.EnvInt("ABUSE_FACTOR", 5)), "close with 1008 a connection whose attempts over -abuse-window exceed this many times what its limits allow (ABUSE_FACTOR; 0: never)")
	abuseWindow := flag.Duration("abuse-window", service.EnvDuration("ABUSE_WINDOW", 10*time.Second), "the window -abuse-factor is judged over (ABUSE_WINDOW)")
	loginAccount := flag.String("login-rate-account", service.Env("LOGIN_RATE_ACCOUNT", "5/m:5"), "failed logins per username (LOGIN_RATE_ACCOUNT)")
	loginAddr := flag.String("login-rate-addr", service.Env("LOGIN_RATE_ADDR", "30/m:30"), "login and registration attempts per remote address (LOGIN_RATE_ADDR)")
	trustProxy := flag.Bool("trust-proxy-header", service.EnvBool("TRUST_PROXY_HEADER", false), "take client addresses from X-Forwarded-For (only behind a proxy that sets it) (TRUST_PROXY_HEADER)")
	presenceInterval := flag.Duration("presence-interval", service.EnvDuration("PRESENCE_INTERVAL", 10*time.Second), "heartbeat interval on chat.presence (PRESENCE_INTERVAL)")
	presenceExpiry := flag.Duration("presence-expiry", service.EnvDuration("PRESENCE_EXPIRY", presence.DefaultExpiry), "a gateway without a heartbeat for this long is dead and its users offline (PRESENCE_EXPIRY)")
	pending := flag.Int("pending-notifications", service.EnvInt("PENDING_NOTIFICATIONS", 50), "most unread notifications sent at hello (PENDING_NOTIFICATIONS)")
	vapidKey := flag.String("vapid-public-key", service.Env("VAPID_PUBLIC_KEY", ""), "Web Push VAPID public key, base64url, the notification service's (VAPID_PUBLIC_KEY; empty: push off)")
	emailKey := flag.String("email-token-key", service.Env("EMAIL_TOKEN_KEY", ""), "key verifying e-mail unsubscribe links, at least 32 bytes, the notification service's too; prefer the environment (EMAIL_TOKEN_KEY; empty: links answer 503)")
	tlsCert := flag.String("tls-cert-file", service.Env("TLS_CERT_FILE", ""), "PEM certificate (chain) to serve HTTPS and WSS with; re-read when it changes (TLS_CERT_FILE; empty: plain HTTP)")
	tlsKey := flag.String("tls-key-file", service.Env("TLS_KEY_FILE", ""), "PEM private key of -tls-cert-file (TLS_KEY_FILE)")
	hsts := flag.Duration("hsts-max-age", service.EnvDuration("HSTS_MAX_AGE", 365*24*time.Hour), "Strict-Transport-Security max-age on answers that came over TLS, here or at a trusted proxy (HSTS_MAX_AGE; 0: no HSTS)")
	inviteTTL := flag.Duration("invite-ttl", service.EnvDuration("INVITE_TTL", 7*24*time.Hour), "how long an invitation to a private room can be accepted (INVITE_TTL)")
	logLevel := flag.String("log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on -addr and exit 0 if healthy (for container healthchecks)")
	kafkaSec := service.KafkaSecurityFlags()
	attachFlags := attach.RegisterFlags()
	flag.Parse()

	if *healthcheck {
		service.Healthcheck(*addr)
	}
	if *inviteTTL <= 0 {
		fmt.Fprintf(os.Stderr, "gateway: -invite-ttl must be positive, not %s\n", *inviteTTL)
		os.Exit(2)
	}
	if *id == "" {
		_, port, _ := net.SplitHostPort(*addr)
		*id = "gw-" + host + "-" + port
	}
	log := service.NewLogger("gateway", *logLevel).With("gateway_id", *id)
	flushTraces := service.StartTracing("gateway", *id, log)
	ctx, stop := service.SignalContext()
	defer stop()

	rates := map[string]ratelimit.Rate{}
	for name, v := range map[string]string{"rate-conn": *rateConn, "rate-user": *rateUser, "rate-frames": *rateFrames,
		"login-rate-account": *loginAccount, "login-rate-addr": *loginAddr} {
		r, err := ratelimit.ParseRate(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gateway: -%s: %v\n", name, err)
			os.Exit(2)
		}
		rates[name] = r
	}
	if !*rateLimits {
		rates["rate-conn"], rates["rate-user"], rates["rate-frames"] = ratelimit.Rate{}, ratelimit.Rate{}, ratelimit.Rate{}
	}

	cfg := app.Config{
		ID: *id, Addr: *addr, Brokers: service.SplitList(*brokers), KafkaSecurity: service.MustKafkaSecurity(kafkaSec), DatabaseURL: *dbURL, TopicPrefix: *prefix,
		AllowedOrigins: service.SplitList(*origins), MaxTextBytes: *maxText, ReadLimit: *readLimit, SendQueue: *sendQueue,
		IdleTimeout: *idle, PingInterval: *ping, WriteTimeout: *writeTimeout, SessionTTL: *sessionTTL, ReconnectTTL: *reconnectTTL,
		UserRate: rates["rate-user"], LoginAccountRate: rates["login-rate-account"], LoginAddrRate: rates["login-rate-addr"],
		TrustProxyHeader: *trustProxy, PresenceInterval: *presenceInterval, PresenceExpiry: *presenceExpiry,
		EmailTokenKey: []byte(*emailKey), VAPIDPublicKey: *vapidKey, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, HSTSMaxAge: *hsts,
		InviteTTL: *inviteTTL,
	}
	cfg.Hub.CatchUpTimeout = *catchUp
	cfg.Hub.ConnRate, cfg.Hub.FrameRate = rates["rate-conn"], rates["rate-frames"]
	cfg.Hub.AbuseFactor, cfg.Hub.AbuseWindow = *abuseFactor, *abuseWindow
	cfg.Hub.PendingNotifications = *pending
	blobs, attachCfg, err := attachFlags.Build(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway: attachments:", err)
		os.Exit(2)
	}
	cfg.Blobs, cfg.Attachments = blobs, attachCfg
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
	err = a.Serve(ctx, ln)
	flushTraces()
	if err != nil {
		log.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
}
