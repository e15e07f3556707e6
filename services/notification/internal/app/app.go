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
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/notification/internal/email"
	"github.com/kchat/kchat/services/notification/internal/handler"
	"github.com/kchat/kchat/services/notification/internal/push"
	"github.com/kchat/kchat/services/notification/internal/sender"
)

const name = "notification"

// DefaultFetchWait is how long a fetch of stored messages collects them. Notifications go
// to users who are offline, whom a quarter of a second does not keep waiting, while each
// fetch answered with one or two messages costs the brokers as much as one with hundreds:
// at 500 msg/s over 50 rooms, notification made a quarter of all consumer fetches and one
// transaction per fetch. With the wait it makes about four fetches a second per broker.
const DefaultFetchWait = 250 * time.Millisecond

// Config is the service's configuration. Zero values mean the defaults given on each field.
type Config struct {
	Brokers     []string          // required
	Security    kafkasec.Security // Kafka TLS and SASL; zero: PLAINTEXT
	DatabaseURL string            // required
	HTTPAddr    string            // admin endpoints; empty: not served
	TopicPrefix string            // prepended to every topic name (tests use their own topics)
	Group       string            // consumer group (default "notification")
	// StartOffset is where a group with no committed offset starts: kafka.LastOffset
	// (default) or kafka.FirstOffset. A brand-new deployment replaying a week of chat.stored
	// would notify everyone about old messages.
	StartOffset    int64
	BatchSize      int           // most events per transaction (default 100)
	FetchWait      time.Duration // how long a fetch collects messages (default DefaultFetchWait; negative: none)
	PresenceExpiry time.Duration // default presence.DefaultExpiry
	Migrate        bool          // apply migrations before starting
	Logger         *slog.Logger
	Admin          *service.Admin // where checks and metrics go (default: a new one)
	Sender         sender.Sender  // outside channel (default: sender.Log)
	// Email turns e-mail digests on (nil: off). Its Logger and Metrics are filled in.
	Email *email.Config
	// Push turns Web Push on (nil: off). Its Logger and Metrics are filled in.
	Push *push.Config
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
	if c.FetchWait == 0 {
		c.FetchWait = DefaultFetchWait
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
	if err := service.KafkaPreflight(ctx, cfg.Brokers, cfg.Security, log); err != nil {
		return err
	}

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
	prod, err := producer.New(producer.Config{Brokers: cfg.Brokers, Logger: log, Security: cfg.Security})
	if err != nil {
		return err
	}
	defer func() {
		if err := prod.Close(); err != nil {
			log.Warn("closing producer", "error", err)
		}
	}()

	view, err := presence.NewView(presence.ViewConfig{Brokers: cfg.Brokers, Security: cfg.Security, Topic: names.Of(topics.Presence),
		Expiry: cfg.PresenceExpiry, Logger: log})
	if err != nil {
		return err
	}
	dispatcher := sender.NewDispatcher(cfg.Sender, sender.DispatcherConfig{Logger: log,
		Metrics: sender.NewMetrics(cfg.Admin.Registry)})
	parts := []service.Part{
		{Name: "dispatcher", Run: func(ctx context.Context) error { _ = dispatcher.Run(ctx); return nil }},
		{Name: "presence view", Run: view.Run},
	}
	var dispatch handler.Dispatcher = dispatcher
	if cfg.Email != nil {
		ec := *cfg.Email
		ec.Logger, ec.Metrics = log.With("component", "email"), email.NewMetrics(cfg.Admin.Registry)
		worker, err := email.New(pool, ec)
		if err != nil {
			return err
		}
		// The worker reads committed notifications from PostgreSQL; the handler only
		// wakes it, so a slow SMTP server never holds up the consumer.
		dispatch = append(dispatchers{dispatch}, worker)
		parts = append(parts, service.Part{Name: "email digests", Run: worker.Run})
	}
	if cfg.Push != nil {
		pc := *cfg.Push
		pc.Logger, pc.Metrics = log.With("component", "push"), push.NewMetrics(cfg.Admin.Registry)
		worker, err := push.New(pool, pc)
		if err != nil {
			return err
		}
		// Like the e-mail worker: reads committed rows, only woken by the handler.
		dispatch = append(dispatchers{dispatch}, worker)
		parts = append(parts, service.Part{Name: "web push", Run: worker.Run})
	}
	h, err := handler.New(pool, view, handler.Config{Topic: names.Of(topics.Notifications), Logger: log,
		Metrics: handler.NewMetrics(cfg.Admin.Registry), Dispatch: dispatch})
	if err != nil {
		return err
	}
	runner, err := consumer.NewBatchStandard(consumer.Config{
		Brokers:     cfg.Brokers,
		Security:    cfg.Security,
		GroupID:     cfg.Group,
		Topics:      []string{names.Of(topics.Stored)},
		Name:        name,
		BatchSize:   cfg.BatchSize,
		FetchWait:   max(cfg.FetchWait, 0),
		StartOffset: cfg.StartOffset,
		Logger:      log,
		Metrics:     consumer.NewMetrics(cfg.Admin.Registry),
	}, h.HandleBatch, prod, names.Of(topics.DLQ))
	if err != nil {
		return err
	}

	cfg.Admin.AddCheck("kafka", service.KafkaCheck(cfg.Brokers, cfg.Security))
	cfg.Admin.AddCheck("postgres", service.PostgresCheck(pool))
	cfg.Admin.AddCheck("presence", view.Check)

	// The view, the dispatcher and the e-mail worker outlive the consumer: they stop only
	// after it committed its last batch, so that batch still sees presence and its
	// notifications still reach the dispatcher (which then drains).
	return service.Runner{
		Name: name, HTTPAddr: cfg.HTTPAddr, Admin: cfg.Admin, Logger: log.With("group", cfg.Group, "topic_prefix", cfg.TopicPrefix),
		Parts: parts,
		Ready: view.CaughtUp(), ReadyWhat: "presence view",
		Main: runner.Run,
	}.Run(ctx)
}

// dispatchers hands each committed notification to every outside channel; none blocks.
type dispatchers []handler.Dispatcher

func (ds dispatchers) Enqueue(n notifications.Notification) bool {
	ok := true
	for _, d := range ds {
		ok = d.Enqueue(n) && ok
	}
	return ok
}
