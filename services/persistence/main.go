// Command persistence consumes chat.submitted, stores each room's timeline in PostgreSQL
// (one transaction per batch, with the message.stored events in the outbox) and relays
// the outbox to chat.stored.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

const name = "persistence"

// defaultBatchSize bounds a transaction, not a wait: a batch is whatever has already
// arrived, so a large bound changes nothing while the service keeps up, and under a
// backlog it spreads each transaction's and offset commit's fixed cost over more rows
// (100 cost Kafka and PostgreSQL several times the CPU per row of 1,000 in chatbench).
// The price is that a poison event makes the runner retry up to this many events one by
// one before dead-lettering it.
const defaultBatchSize = 1000

type config struct {
	brokers, databaseURL, httpAddr  string
	topicPrefix, group, logLevel    string
	batchSize                       int
	relayGrace                      time.Duration
	cleaner                         outbox.CleanerConfig
	migrate, healthcheck, direct    bool
	crashAfterPublish, crashInBatch int64
	kafkaSec                        *kafkasec.Flags
}

func main() {
	var c config
	flag.StringVar(&c.brokers, "brokers", service.Env("KAFKA_BROKERS", service.DefaultBrokers), "Kafka bootstrap brokers, comma-separated")
	flag.StringVar(&c.databaseURL, "database-url", service.Env("DATABASE_URL", service.DefaultDatabaseURL), "PostgreSQL URL")
	flag.StringVar(&c.httpAddr, "http-addr", service.Env("HTTP_ADDR", ":8090"), "address of /healthz, /readyz and /metrics")
	flag.StringVar(&c.topicPrefix, "topic-prefix", service.Env("TOPIC_PREFIX", ""), "prefix of every topic name (tests)")
	flag.StringVar(&c.group, "group", service.Env("CONSUMER_GROUP", name), "Kafka consumer group")
	flag.IntVar(&c.batchSize, "batch-size", service.EnvInt("BATCH_SIZE", defaultBatchSize), "most events stored in one transaction")
	flag.StringVar(&c.logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	flag.BoolVar(&c.direct, "direct-publish", true,
		"publish each committed batch's stored events at once; false leaves everything to the outbox relay")
	flag.DurationVar(&c.relayGrace, "relay-grace", service.EnvDuration("RELAY_GRACE", 5*time.Second),
		"how long the relay leaves directly published rows to their publisher before taking them over")
	flag.DurationVar(&c.cleaner.OutboxRetention, "outbox-retention", service.EnvDuration("OUTBOX_RETENTION", outbox.DefaultOutboxRetention),
		"published outbox rows older than this are deleted (at most the topics' retention, 168h)")
	flag.DurationVar(&c.cleaner.InboxRetention, "inbox-retention", service.EnvDuration("INBOX_RETENTION", outbox.DefaultInboxRetention),
		"processed_events entries (every consumer's inbox) older than this are deleted (at least the topics' retention, 168h)")
	flag.DurationVar(&c.cleaner.Interval, "cleanup-interval", service.EnvDuration("CLEANUP_INTERVAL", time.Minute), "how often the retention cleanup runs")
	flag.IntVar(&c.cleaner.BatchSize, "cleanup-batch", service.EnvInt("CLEANUP_BATCH", 1000), "most rows one cleanup DELETE removes (1 to 10000)")
	flag.BoolVar(&c.migrate, "migrate", true, "apply database migrations before starting")
	flag.BoolVar(&c.healthcheck, "healthcheck", false, "check /healthz of a running instance and exit")
	registerFaultFlags(&c) // only in test builds (-tags faults): see faults.go
	c.kafkaSec = service.KafkaSecurityFlags()
	flag.Parse()

	if c.healthcheck {
		service.Healthcheck(c.httpAddr)
	}
	ctx, stop := service.SignalContext()
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "persistence:", err)
		os.Exit(1)
	}
}

// run wires the service and blocks until ctx ends (a clean shutdown, nil) or a part fails.
func run(ctx context.Context, c config) error {
	logger := service.NewLogger(name, c.logLevel)
	defer service.StartTracing(name, "", logger)() // flushes spans once everything stopped
	if err := c.cleaner.Validate(); err != nil {
		return fmt.Errorf("-outbox-retention, -inbox-retention, -cleanup-interval or -cleanup-batch (or their environment variables): %w", err)
	}
	brokers := service.SplitList(c.brokers)
	names := topics.Names{Prefix: c.topicPrefix}
	var sec kafkasec.Security
	if c.kafkaSec != nil {
		sec = service.MustKafkaSecurity(c.kafkaSec)
	}
	if err := service.KafkaPreflight(ctx, brokers, sec, logger); err != nil {
		return err
	}

	if c.migrate {
		applied, err := migrations.Up(ctx, c.databaseURL)
		if err != nil {
			return err
		}
		logger.Info("migrations applied", "versions", applied)
	}
	pool, err := pgxpool.New(ctx, c.databaseURL)
	if err != nil {
		return fmt.Errorf("cannot open database: %w", err)
	}
	defer pool.Close()
	prod, err := producer.New(producer.Config{Brokers: brokers, Logger: logger, Security: sec})
	if err != nil {
		return err
	}
	defer prod.Close()

	admin := service.NewAdmin()
	admin.AddCheck("kafka", service.KafkaCheck(brokers, sec))
	admin.AddCheck("postgres", service.PostgresCheck(pool))
	consumerMetrics := consumer.NewMetrics(admin.Registry)

	outboxMetrics := outbox.NewMetrics(admin.Registry)
	var direct *outbox.Direct
	storeCfg := store.Config{
		Topic:        names.Of(topics.Stored),
		Logger:       logger,
		Metrics:      store.NewMetrics(admin.Registry),
		RelayGrace:   c.relayGrace,
		BeforeCommit: faultHook(c.crashInBatch, "crash-in-batch", logger),
	}
	if c.direct {
		if direct, err = outbox.NewDirect(pool, prod, outbox.DirectConfig{Logger: logger, Metrics: outboxMetrics}); err != nil {
			return err
		}
		storeCfg.Direct = direct
	}
	st, err := store.New(pool, storeCfg)
	if err != nil {
		return err
	}
	runner, err := consumer.NewBatchStandard(consumer.Config{
		Brokers:   brokers,
		Security:  sec,
		GroupID:   c.group,
		Topics:    []string{names.Of(topics.Submitted)},
		Name:      name,
		BatchSize: c.batchSize,
		Logger:    logger,
		Metrics:   consumerMetrics,
	}, st.HandleBatch, prod, names.Of(topics.DLQ))
	if err != nil {
		return err
	}
	relay, err := outbox.New(pool, prod, outbox.Config{
		Logger:       logger,
		Metrics:      outboxMetrics,
		AfterPublish: faultHook(c.crashAfterPublish, "crash-after-publish", logger),
	})
	if err != nil {
		return err
	}

	c.cleaner.Logger = logger
	cleaner, err := outbox.NewCleaner(pool, c.cleaner)
	if err != nil {
		return err
	}

	// Each part returns nil once ctx ends, after finishing (and committing) the work in
	// hand; an error from one stops the others. The deferred closes run after all of
	// them returned, so the producer outlives the dead-letter writes and the relay.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Serve(gctx, c.httpAddr, logger) })
	// The direct publisher stops only after the runner returned: the runner's last batch
	// is published after gctx ended, and its rows should be marked, not republished.
	dctx, stopDirect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDirect()
	g.Go(func() error { defer stopDirect(); return runner.Run(gctx) })
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return cleaner.Run(gctx) })
	if direct != nil {
		g.Go(func() error { return direct.Run(dctx) })
	}
	logger.Info("persistence started", "group", c.group, "topic_prefix", c.topicPrefix, "http_addr", c.httpAddr)
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("persistence stopped")
	return nil
}
