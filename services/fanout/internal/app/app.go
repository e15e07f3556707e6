// Package app wires fanout together: the subscriptions follower that builds the routing
// table, the consumer group that forwards events, the producer and the admin endpoints.
// main parses flags into a Config; tests call Run directly.
package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/fanout/internal/forward"
	"github.com/kchat/kchat/services/fanout/internal/routing"
)

// Config is fanout's configuration. Zero values mean the defaults given on each field.
type Config struct {
	Brokers     []string          // required
	Security    kafkasec.Security // Kafka TLS and SASL; zero: PLAINTEXT
	HTTPAddr    string            // admin endpoints; empty: not served
	TopicPrefix string            // prepended to every topic name (tests use their own topics)
	Group       string            // consumer group (default "fanout")
	// StartOffset is where a group with no committed offset starts: kafka.LastOffset
	// (default) or kafka.FirstOffset. A brand-new fanout replaying a week of chat.stored
	// into the gateways would only flood them: gateways fill gaps from PostgreSQL anyway.
	StartOffset int64
	// BatchSize is the most events handled (and written) together (default 500).
	BatchSize int
	// PresenceExpiry is how long a gateway's routes live after its last heartbeat on
	// chat.presence (default presence.DefaultExpiry, as the gateways' -presence-expiry).
	PresenceExpiry time.Duration
	// StaleGrace is how long a gateway stays down (or a restarted one live) before fanout
	// tombstones its stale keys in chat.subscriptions (default PresenceExpiry).
	StaleGrace time.Duration
	Logger     *slog.Logger
	// Admin is where checks and metrics are registered (default: a new one).
	Admin *service.Admin
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("fanout: no brokers configured")
	}
	if c.Group == "" {
		c.Group = "fanout"
	}
	if c.StartOffset == 0 {
		c.StartOffset = kafka.LastOffset
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Admin == nil {
		c.Admin = service.NewAdmin()
	}
	return nil
}

// Run serves until ctx ends, then finishes the batch in hand, commits it and leaves the
// group. Forwarding starts only once the routing table has caught up with the
// subscriptions topic as of start; until then /readyz answers 503.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log := cfg.Logger
	names := topics.Names{Prefix: cfg.TopicPrefix}
	if err := service.KafkaPreflight(ctx, cfg.Brokers, cfg.Security, log); err != nil {
		return err
	}

	prod, err := producer.New(producer.Config{Brokers: cfg.Brokers, BatchSize: cfg.BatchSize * 4, Logger: log, Security: cfg.Security})
	if err != nil {
		return err
	}
	defer func() {
		if err := prod.Close(); err != nil {
			log.Warn("closing producer", "error", err)
		}
	}()

	table := routing.NewTableWith(routing.TableConfig{Expiry: cfg.PresenceExpiry})
	registerTableGauges(cfg.Admin.Registry, table)
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: cfg.Security.RoundTripper()}
	follower, err := routing.NewFollower(routing.FollowerConfig{Topic: names.Of(topics.Subscriptions),
		PresenceTopic: names.Of(topics.Presence), Logger: log}, client, table)
	if err != nil {
		return err
	}
	expiredTotal := prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_fanout_gateways_expired_total",
		Help: "Gateways whose heartbeat expired while fanout ran (their routes were dropped)."})
	tombstonesTotal := prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_fanout_subscription_tombstones_total",
		Help: "Stale chat.subscriptions keys tombstoned (dead gateways, previous runs)."})
	cfg.Admin.Registry.MustRegister(expiredTotal, tombstonesTotal)
	expirer, err := routing.NewExpirer(routing.ExpirerConfig{Topic: names.Of(topics.Subscriptions), Grace: cfg.StaleGrace, Logger: log,
		OnExpired:    func(string) { expiredTotal.Inc() },
		OnTombstones: func(n int) { tombstonesTotal.Add(float64(n)) }}, table, prod)
	if err != nil {
		return err
	}

	fwd, err := forward.New(forward.Config{Topic: names.Of(topics.Deliveries), Logger: log,
		Metrics: forward.NewMetrics(cfg.Admin.Registry)}, prod, table)
	if err != nil {
		return err
	}
	runner, err := consumer.NewBatchStandard(consumer.Config{
		Brokers:  cfg.Brokers,
		Security: cfg.Security,
		GroupID:  cfg.Group,
		// Not chat.stored: gateways read the timeline themselves (docs/architecture.md).
		Topics:      []string{names.Of(topics.Ephemeral), names.Of(topics.Notifications)},
		Name:        "fanout",
		BatchSize:   cfg.BatchSize,
		StartOffset: cfg.StartOffset,
		Logger:      log,
		Metrics:     consumer.NewMetrics(cfg.Admin.Registry),
	}, fwd.HandleBatch, prod, names.Of(topics.DLQ))
	if err != nil {
		return err
	}

	cfg.Admin.AddCheck("kafka", service.KafkaCheck(cfg.Brokers, cfg.Security))
	cfg.Admin.AddCheck("routing", follower.Ready)

	// The follower (and the expirer) outlive the consumer, so the table stays current
	// until it has committed its last batch.
	return service.Runner{
		Name: "fanout", HTTPAddr: cfg.HTTPAddr, Admin: cfg.Admin, Logger: log,
		Parts: []service.Part{
			{Name: "subscriptions follower", Run: follower.Run},
			{Name: "expirer", Run: func(ctx context.Context) error { expirer.Run(ctx, follower.CaughtUp()); return nil }},
		},
		Ready: follower.CaughtUp(), ReadyWhat: "routing table",
		Main: runner.Run,
	}.Run(ctx)
}

func registerTableGauges(reg prometheus.Registerer, table *routing.Table) {
	for _, g := range []struct {
		name, help string
		value      func(routing.Stats) int
	}{
		{"kchat_fanout_routing_rooms", "Rooms with at least one subscribed gateway.", func(s routing.Stats) int { return s.Rooms }},
		{"kchat_fanout_routing_gateways", "Gateways with at least one subscription.", func(s routing.Stats) int { return s.Gateways }},
		{"kchat_fanout_routing_subscriptions", "(gateway, room) pairs in the routing table.", func(s routing.Stats) int { return s.Subscriptions }},
		{"kchat_fanout_routing_keys", "chat.subscriptions keys held, routed or not.", func(s routing.Stats) int { return s.Keys }},
		{"kchat_fanout_routing_gateways_down", "Gateways whose heartbeat expired or was deleted.", func(s routing.Stats) int { return s.GatewaysDown }},
	} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help},
			func() float64 { return float64(g.value(table.Stats())) }))
	}
}
