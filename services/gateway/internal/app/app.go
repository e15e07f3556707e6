// Package app assembles the gateway from its parts and runs it: one Echo server for the
// REST API, the WebSocket endpoint and the operational endpoints, the Kafka readers, and
// the hub. main.go only turns flags into a Config.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/search"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/api"
	"github.com/kchat/kchat/services/gateway/internal/attach"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/broker"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/edgetls"
	"github.com/kchat/kchat/services/gateway/internal/hub"
	"github.com/kchat/kchat/services/gateway/internal/metrics"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/store"
	"github.com/kchat/kchat/services/gateway/internal/transport"
	"github.com/kchat/kchat/services/gateway/web"
)

// Config is everything the gateway is configured with.
type Config struct {
	ID             string
	Addr           string
	Brokers        []string
	KafkaSecurity  kafkasec.Security // zero: PLAINTEXT
	DatabaseURL    string
	TopicPrefix    string
	AllowedOrigins []string
	MaxTextBytes   int
	ReadLimit      int64
	SendQueue      int
	IdleTimeout    time.Duration
	PingInterval   time.Duration
	WriteTimeout   time.Duration
	SessionTTL     time.Duration
	ReconnectTTL   time.Duration
	// Hub tunes timers and the WebSocket limits (ConnRate, FrameRate, AbuseFactor,
	// AbuseWindow, PendingNotifications); zero fields take the hub's defaults, and zero
	// rates are no limit.
	Hub hub.Config
	// UserRate bounds sends, edits and deletes per user on this gateway, WebSocket and
	// REST together; LoginAccountRate failed logins per username, LoginAddrRate login and
	// registration attempts per remote address. Zero: no limit.
	UserRate         ratelimit.Rate
	LoginAccountRate ratelimit.Rate
	LoginAddrRate    ratelimit.Rate
	// TrustProxyHeader takes the client address from X-Forwarded-For (set by a proxy on a
	// private or loopback address) instead of the TCP peer. Only behind such a proxy:
	// anyone else can write the header.
	TrustProxyHeader bool
	// PresenceInterval is the heartbeat interval (default 10s), PresenceExpiry how long
	// this gateway counts another as live after its last heartbeat (default 30s).
	PresenceInterval time.Duration
	PresenceExpiry   time.Duration
	// Password overrides the argon2id cost (tests use a cheap one).
	Password auth.Params
	// EmailTokenKey verifies the unsubscribe links of e-mail digests; the notification
	// service signs them with the same key. Empty: the links answer 503.
	EmailTokenKey []byte
	// VAPIDPublicKey is the Web Push application server key (base64url) browsers
	// subscribe with; the notification service signs with its private half. Empty: push
	// is off and its endpoints answer 503. A malformed key fails New.
	VAPIDPublicKey string
	// TLSCertFile and TLSKeyFile, both set, make the gateway serve HTTPS and WSS itself;
	// the files are re-read when they change. Empty: plain HTTP (behind a proxy that
	// terminates TLS).
	TLSCertFile, TLSKeyFile string
	// HSTSMaxAge is the Strict-Transport-Security max-age sent on answers that came over
	// TLS (here, or at a proxy trusted through TrustProxyHeader). Zero: no HSTS.
	HSTSMaxAge time.Duration
	// InviteTTL is how long an invitation to a private room can be accepted (default 7
	// days).
	InviteTTL time.Duration
	// Now is the request logic's clock (default time.Now); tests move it to expire
	// invitations.
	Now func() time.Time
	// Blobs keeps attachments' files (pkg/blobstore: a directory or an S3 bucket); nil
	// turns attachments off (their endpoints answer 503). Attachments tunes them (size
	// limit, allowed types, grace periods); its zero Now takes Now.
	Blobs       blobstore.Store
	Attachments attach.Config
}

// App is a running gateway.
type App struct {
	cfg      Config
	limiters []*ratelimit.Keyed
	log      *slog.Logger
	pool     *pgxpool.Pool
	prod     *producer.Producer
	broker   *broker.Broker
	hub      *hub.Hub
	attach   *attach.Service // nil: attachments off
	store    *store.Store
	presence *presence.Announcer
	online   *presence.View
	ws       *transport.Handler
	echo     *echo.Echo
	tls      *tls.Config // nil: plain HTTP
	admin    *service.Admin
	shutdown time.Duration
}

// New connects to PostgreSQL and builds every part; nothing runs until Serve.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if cfg.ID == "" || strings.ContainsAny(cfg.ID, "@/") {
		return nil, errors.New("gateway id is required and must not contain @ or / (they separate parts of Kafka keys)")
	}
	var serverTLS *tls.Config
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		cert, err := edgetls.Load(cfg.TLSCertFile, cfg.TLSKeyFile, 30*time.Second, log)
		if err != nil {
			return nil, err
		}
		serverTLS = cert.ServerConfig()
	}
	if err := service.KafkaPreflight(ctx, cfg.Brokers, cfg.KafkaSecurity, log); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("cannot open database: %w", err)
	}
	prod, err := producer.New(producer.Config{Brokers: cfg.Brokers, Logger: log, Security: cfg.KafkaSecurity})
	if err != nil {
		pool.Close()
		return nil, err
	}
	admin := service.NewAdmin()
	m := metrics.New(admin.Registry)
	br, err := broker.New(broker.Config{Brokers: cfg.Brokers, Security: cfg.KafkaSecurity, Names: topics.Names{Prefix: cfg.TopicPrefix}, GatewayID: cfg.ID}, prod, m, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	names := topics.Names{Prefix: cfg.TopicPrefix}
	announcer, err := presence.NewAnnouncer(prod, presence.AnnouncerConfig{GatewayID: cfg.ID, Addr: cfg.Addr, Topic: names.Of(topics.Presence),
		Interval: cfg.PresenceInterval, Logger: log})
	if err != nil {
		pool.Close()
		return nil, err
	}
	view, err := presence.NewView(presence.ViewConfig{Brokers: cfg.Brokers, Security: cfg.KafkaSecurity, Topic: names.Of(topics.Presence), Expiry: cfg.PresenceExpiry, Logger: log})
	if err != nil {
		pool.Close()
		return nil, err
	}
	st := store.New(pool)
	limits := protocol.Limits{MaxTextBytes: cfg.MaxTextBytes}.WithDefaults()
	svc, err := chat.New(chat.Config{GatewayID: cfg.ID, Limits: limits, SessionTTL: cfg.SessionTTL, ReconnectTTL: cfg.ReconnectTTL,
		Password: cfg.Password, Notifications: notifications.NewStore(pool), InviteTTL: cfg.InviteTTL, Now: cfg.Now}, st, br, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	emailSettings, err := chat.NewEmail(pool, cfg.EmailTokenKey, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	notifPrefs, err := chat.NewPrefs(pool, svc, emailSettings, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	pushSubs, err := chat.NewPush(pool, cfg.VAPIDPublicKey, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	var files *attach.Service
	if cfg.Blobs != nil {
		acfg := cfg.Attachments
		if acfg.Now == nil {
			acfg.Now = cfg.Now
		}
		if files, err = attach.New(acfg, pool, cfg.Blobs, svc, log); err != nil {
			pool.Close()
			return nil, err
		}
		svc.UseAttachments(files)
	}
	userLimiter := ratelimit.NewKeyed(cfg.UserRate)
	loginAccount, loginAddr := ratelimit.NewKeyed(cfg.LoginAccountRate), ratelimit.NewKeyed(cfg.LoginAddrRate)
	hcfg := cfg.Hub
	hcfg.GatewayID, hcfg.Limits, hcfg.UserLimiter = cfg.ID, limits, userLimiter
	h, err := hub.New(hcfg, svc, st, br, announcer, view, m, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	h.UsePrefs(notifPrefs)
	ws := transport.NewHandler(transport.Config{
		ReadLimit: cfg.ReadLimit, SendQueue: cfg.SendQueue, IdleTimeout: cfg.IdleTimeout,
		PingInterval: cfg.PingInterval, WriteTimeout: cfg.WriteTimeout, AllowedOrigins: cfg.AllowedOrigins,
	}, h, m, log)

	admin.AddCheck("postgres", service.PostgresCheck(pool))
	admin.AddCheck("kafka", service.KafkaCheck(cfg.Brokers, cfg.KafkaSecurity))
	admin.AddCheck("presence", view.Check)
	admin.AddCheck("deliveries", func(context.Context) error {
		for what, ready := range map[string]<-chan struct{}{"timeline": br.StoredReady(), "delivery": br.Ready()} {
			select {
			case <-ready:
			default:
				return errors.New(what + " reader not positioned yet")
			}
		}
		return nil
	})

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = api.ErrorHandler
	// Echo's default RealIP believes X-Forwarded-For from anyone, which would let a client
	// pick its own login-limit bucket.
	e.IPExtractor = echo.ExtractIPDirect()
	if cfg.TrustProxyHeader {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	}
	e.Use(api.SecurityHeaders, api.HSTS(cfg.HSTSMaxAge, cfg.TrustProxyHeader))
	rest := api.New(svc, h, api.Config{UserLimiter: userLimiter, LoginAccount: loginAccount, LoginAddr: loginAddr, Metrics: m,
		Search: search.New(pool), Logger: log})
	rest.Register(e)
	rest.RegisterEmail(e, emailSettings)
	rest.RegisterPrefs(e, notifPrefs)
	rest.RegisterPush(e, pushSubs)
	if files != nil {
		rest.RegisterAttachments(e, files)
	} else {
		rest.RegisterAttachments(e, nil)
	}
	e.GET("/ws", echo.WrapHandler(ws))
	adminH := echo.WrapHandler(admin.Handler())
	e.GET("/healthz", adminH)
	e.GET("/readyz", adminH)
	e.GET("/metrics", adminH)
	e.Any("/debug/pprof/*", adminH) // loopback clients only (pkg/service)
	// The browser client. Its paths are listed one by one rather than as "/*" so that an
	// unknown /api path still gets the API's JSON 404.
	page := echo.WrapHandler(web.Handler())
	for _, p := range web.Paths() {
		e.GET(p, page)
		e.HEAD(p, page)
	}

	return &App{cfg: cfg, limiters: []*ratelimit.Keyed{userLimiter, loginAccount, loginAddr}, log: log, pool: pool, prod: prod, broker: br, hub: h, attach: files, store: st, presence: announcer, online: view,
		ws: ws, echo: e, tls: serverTLS, admin: admin, shutdown: 10 * time.Second}, nil
}

// Handler is the whole HTTP surface (for tests).
func (a *App) Handler() http.Handler { return a.echo }

// Serve runs until ctx ends, then shuts down gracefully: stop accepting, send every
// client a reconnect frame and close 1012, unannounce subscriptions and presence, flush
// the producer, close the pool.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	readers, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { defer close(hubDone); a.hub.Run(hubCtx) }()
	go func() {
		if err := a.broker.RunStored(readers, a.hub); err != nil && readers.Err() == nil {
			a.log.Error("timeline reader stopped", "error", err)
		}
	}()
	go func() {
		if err := a.broker.RunDeliveries(readers, a.hub); err != nil && readers.Err() == nil {
			a.log.Error("delivery reader stopped", "error", err)
		}
	}()
	go func() {
		if err := a.online.Run(readers); err != nil && readers.Err() == nil {
			a.log.Error("presence view stopped", "error", err)
		}
	}()
	presenceCtx, stopPresence := context.WithCancel(context.Background())
	presenceDone := make(chan struct{})
	go func() {
		defer close(presenceDone)
		if err := a.presence.Run(presenceCtx); err != nil && presenceCtx.Err() == nil {
			a.log.Error("presence announcer stopped", "error", err)
		}
	}()

	go a.sweepSessions(readers)
	if a.attach != nil {
		go a.attach.Run(readers)
	}

	if a.tls != nil {
		ln = tls.NewListener(ln, a.tls)
	}
	srv := &http.Server{Handler: a.echo, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("gateway listening", "addr", ln.Addr().String(), "gateway_id", a.cfg.ID, "tls", a.tls != nil)

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdown)
	defer cancel()
	// Hijacked WebSockets are not tracked by Shutdown: it only stops the listener and
	// waits for REST requests in flight.
	go func() { _ = srv.Shutdown(sctx) }()
	a.ws.Stop() // before the hub closes sessions, so none opens after it has
	a.hub.Shutdown(sctx)
	wsDone := make(chan struct{})
	go func() { a.ws.Wait(); close(wsDone) }()
	select {
	case <-wsDone:
	case <-sctx.Done():
	}
	stopHub()      // its last flush unannounces every room
	stopPresence() // and this reports everyone offline
	<-hubDone
	<-presenceDone
	stopReaders()
	if cerr := a.prod.Close(); cerr != nil {
		a.log.Warn("producer close failed", "error", cerr)
	}
	a.store.Close()
	a.pool.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// sweepSessions deletes expired tokens every 10 minutes, and every minute forgets the
// rate-limit buckets of users and addresses that have been idle long enough to be full
// again. It is housekeeping only: an expired token is rejected whether or not its row
// still exists, and a forgotten bucket is a full one.
func (a *App) sweepSessions(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	limits := time.NewTicker(time.Minute)
	defer limits.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-limits.C:
			for _, k := range a.limiters {
				k.Sweep(now)
			}
		case <-t.C:
			if n, err := a.store.DeleteExpiredSessions(ctx, time.Now()); err != nil {
				a.log.Warn("session sweep failed", "error", err)
			} else if n > 0 {
				a.log.Info("expired sessions deleted", "count", n)
			}
		}
	}
}
