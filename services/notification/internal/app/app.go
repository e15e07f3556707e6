// Package app wires the notification service together: the presence view, the consumer
// group on chat.stored with its batch handler, the outside-sender dispatcher, the
// dead-letter producer and the admin endpoints. main parses flags into a Config; tests
// call Run directly.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/notification/internal/handler"
	"github.com/kchat/kchat/services/notification/internal/sender"
)

const name = "notification"

// Config is the service's configuration. Zero values mean the defaults given on each field.
type Config struct {
	Brokers     []string // required
	DatabaseURL string   // required
	HTTPAddr    string   // admin endpoints; empty: not served
	TopicPrefix string   // prepended to every topic name (tests use their own topics)
	Group       string   // consumer group (default "notification")
	// StartOffset is where a group with no committed offset starts: kafka.LastOffset
	// (default) or kafka.FirstOffset. A brand-new deployment replaying a week of chat.stored
	// would notify everyone about old messages.
	StartOffset    int64
	BatchSize      int           // most events per transaction (default 100)
	PresenceExpiry time.Duration // default presence.DefaultExpiry
	Migrate        bool          // apply migrations before starting
	Logger         *slog.Logger
	Admin          *service.Admin // where checks and metrics go (default: a new one)
	Sender         sender.Sender  // outside channel (default: sender.Log)
}

// ParseStartOffset maps a flag value ("first", "last") to a kafka-go offset.
func ParseStartOffset(s string) (int64, error) {
	switch strings.ToLower(s) {
	case "first", "earliest":
		return kafka.FirstOffset, nil
	case "last", "latest", "":
		return kafka.LastOffset, nil
	default:
		return 0, fmt.Errorf("start offset must be first or last, not %q", s)
	}
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 || c.DatabaseURL == "" {
		return errors.New("notification: brokers and database URL are required")
	}
	if c.Group == "" {
		c.Group = name
	}
	if c.StartOffset == 0 {
		c.StartOffset = kafka.LastOffset
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Admin == nil {
		c.Admin = service.NewAdmin()
	}
	if c.Sender == nil {
		c.Sender = sender.Log{Logger: c.Logger.With("component", "sender")}
	}
	return nil
}

// Run serves until ctx ends, then finishes and commits the batch in hand, leaves the group
// and returns nil. Consuming starts only once the presence view has caught up with the
// presence topic as of start: before that everyone would look offline and be notified.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log := cfg.Logger
	names := topics.Names{Prefix: cfg.TopicPrefix}

	if cfg.Migrate {
		applied, err := migrations.Up(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		log.Info("migrations applied", "versions", applied)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("cannot open database: %w", err)
	}
	defer pool.Close()
	prod, err := producer.New(producer.Config{Brokers: cfg.Brokers, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := prod.Close(); err != nil {
			log.Warn("closing producer", "error", err)
		}
	}()

	view, err := presence.NewView(presence.ViewConfig{Brokers: cfg.Brokers, Topic: names.Of(topics.Presence),
		Expiry: cfg.PresenceExpiry, Logger: log})
	if err != nil {
		return err
	}
	dispatcher := sender.NewDispatcher(cfg.Sender, sender.DispatcherConfig{Logger: log,
		Metrics: sender.NewMetrics(cfg.Admin.Registry)})
	h, err := handler.New(pool, view, handler.Config{Topic: names.Of(topics.Notifications), Logger: log,
		Metrics: handler.NewMetrics(cfg.Admin.Registry), Dispatch: dispatcher})
	if err != nil {
		return err
	}
	retry := consumer.Retry{Logger: log}
	metrics := consumer.NewMetrics(cfg.Admin.Registry)
	runner, err := consumer.NewBatch(consumer.Config{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.Group,
		Topics:      []string{names.Of(topics.Stored)},
		Name:        name,
		BatchSize:   cfg.BatchSize,
		StartOffset: cfg.StartOffset,
		Logger:      log,
		Metrics:     metrics,
	}, h.HandleBatch, retry,
		// Outermost first. Recover sits inside DeadLetter so that a panic is dead-lettered
		// like any other failure; decode errors are permanent and skip Retry.
		consumer.Logging(log),
		metrics.Middleware(name),
		consumer.DeadLetter(prod, names.Of(topics.DLQ), name, log),
		retry.Middleware,
		consumer.Recover(),
		consumer.Decode(),
	)
	if err != nil {
		return err
	}

	cfg.Admin.AddCheck("kafka", service.KafkaCheck(cfg.Brokers))
	cfg.Admin.AddCheck("postgres", service.PostgresCheck(pool))
	cfg.Admin.AddCheck("presence", view.Check)

	// Bind before starting anything, so that a taken port fails the start.
	var srv *http.Server
	var ln net.Listener
	if cfg.HTTPAddr != "" {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("notification: admin endpoints: %w", err)
		}
		srv = &http.Server{Handler: cfg.Admin.Handler(), ReadHeaderTimeout: 5 * time.Second}
		log.Info("admin endpoints listening", "addr", ln.Addr().String())
	}

	// The view, the dispatcher and the admin server outlive the consumer: they stop only
	// after it committed its last batch, so that batch still sees presence, its
	// notifications still reach the dispatcher (which then drains) and /metrics answers.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}
		wg.Wait()
	}()
	if srv != nil {
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin endpoints failed", "error", err)
			}
		})
	}
	wg.Go(func() { _ = dispatcher.Run(bg) })
	viewFailed := make(chan error, 1)
	wg.Go(func() {
		if err := view.Run(bg); err != nil && bg.Err() == nil {
			viewFailed <- err
		}
	})

	start := time.Now()
	select {
	case <-view.CaughtUp():
		log.Info("presence view ready; consuming", "took", time.Since(start).String(), "group", cfg.Group,
			"topic_prefix", cfg.TopicPrefix)
	case err := <-viewFailed:
		return fmt.Errorf("notification: presence view: %w", err)
	case <-ctx.Done():
		log.Info("stopped before the presence view caught up")
		return nil
	}
	return runner.Run(ctx)
}
