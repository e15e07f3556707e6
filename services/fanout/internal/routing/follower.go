package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kchat/kchat/pkg/compacted"
)

// ErrNotCaughtUp is the readiness error until the table reflects the whole topic as of start.
var ErrNotCaughtUp = errors.New("routing table not caught up with the subscriptions topic")

// Fetcher is the part of *kafka.Client the follower needs.
type Fetcher = compacted.Fetcher

// FollowerConfig configures a Follower. Zero values mean the defaults given on each field.
type FollowerConfig struct {
	Topic string // the real name of chat.subscriptions; required
	// PresenceTopic is the real name of chat.presence, whose gateway heartbeats expire
	// routes (see Table); empty: not followed, every gateway's routes are kept.
	PresenceTopic string
	// MaxWait is how long one fetch waits for new records at the end of the log (default 500ms).
	MaxWait time.Duration
	// MaxBytes bounds one fetch response (default 4 MiB).
	MaxBytes int64
	// ListAttempts bounds the tries to list the topic's partitions at start, with backoff up
	// to 5s between them (default 10, about half a minute: topics may still be in creation).
	ListAttempts int
	Logger       *slog.Logger
	// OnApply, if set, is called after each subscription record changed the table (for metrics).
	OnApply func(Change)
}

// Follower reads chat.subscriptions (and chat.presence's heartbeats, if configured) from
// the beginning of every partition, without a consumer group (every fanout instance needs
// the whole table, and nothing is committed), applies each record to a Table, and keeps
// following the topics.
//
// Records of one key live on one partition and are applied in offset order by that
// partition's goroutine, so the table ends at each key's latest state.
type Follower struct {
	cfg      FollowerConfig
	table    *Table
	subs     *compacted.Follower
	presence *compacted.Follower // nil: not followed
	caughtUp chan struct{}
}

// NewFollower returns a follower that feeds table.
func NewFollower(cfg FollowerConfig, client Fetcher, table *Table) (*Follower, error) {
	if cfg.Topic == "" || client == nil || table == nil {
		return nil, errors.New("routing: Topic, client and table are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Follower{cfg: cfg, table: table, caughtUp: make(chan struct{})}
	var err error
	f.subs, err = compacted.New(compacted.Config{Topic: cfg.Topic, Name: "subscriptions", MaxWait: cfg.MaxWait,
		MaxBytes: cfg.MaxBytes, ListAttempts: cfg.ListAttempts, Logger: cfg.Logger}, client, f.applySubscription)
	if err != nil {
		return nil, err
	}
	if cfg.PresenceTopic != "" {
		f.presence, err = compacted.New(compacted.Config{Topic: cfg.PresenceTopic, Name: "gateway heartbeats", MaxWait: cfg.MaxWait,
			MaxBytes: cfg.MaxBytes, ListAttempts: cfg.ListAttempts, Logger: cfg.Logger}, client, f.applyPresence)
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// CaughtUp is closed once every partition of the followed topics was read up to its end
// offset as of Run's start.
func (f *Follower) CaughtUp() <-chan struct{} { return f.caughtUp }

// Ready is a readiness check: nil once caught up.
func (f *Follower) Ready(context.Context) error {
	select {
	case <-f.caughtUp:
		return nil
	default:
		return ErrNotCaughtUp
	}
}

// Run follows the topics until ctx ends. It returns an error only if a topic's partitions
// cannot be listed at start; fetch errors later are retried with backoff, because a
// fanout with a stale table is better than none while Kafka recovers.
func (f *Follower) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	followers := []*compacted.Follower{f.subs}
	if f.presence != nil {
		followers = append(followers, f.presence)
	}
	errs := make(chan error, len(followers))
	var wg sync.WaitGroup
	for _, c := range followers {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Go(func() {
		for _, c := range followers {
			select {
			case <-c.CaughtUp():
			case <-ctx.Done():
				return
			}
		}
		st := f.table.Stats()
		f.cfg.Logger.Info("routing table caught up", "topic", f.cfg.Topic, "rooms", st.Rooms, "gateways", st.Gateways,
			"subscriptions", st.Subscriptions, "gateways_down", st.GatewaysDown)
		close(f.caughtUp)
	})
	wg.Wait()
	close(errs)
	return <-errs // nil if none failed
}

func (f *Follower) applySubscription(r compacted.Record) error {
	c, changed, err := f.table.Apply(r.Key, r.Value)
	if err != nil {
		return fmt.Errorf("subscription record (event %q): %w", c.EventID, err)
	}
	if f.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		f.cfg.Logger.Debug("subscription applied", "partition", r.Partition, "offset", r.Offset, "event_id", c.EventID,
			"gateway_id", c.GatewayID, "room_id", c.RoomID, "subscribed", c.Subscribed, "changed", changed)
	}
	if changed && f.cfg.OnApply != nil {
		f.cfg.OnApply(c)
	}
	return nil
}

func (f *Follower) applyPresence(r compacted.Record) error {
	n, err := f.table.ApplyPresence(r.Key, r.Value)
	if err != nil {
		return err
	}
	if n > 0 {
		f.cfg.Logger.Info("gateway liveness changed its routes", "key", string(r.Key), "tombstone", r.Value == nil, "routes_changed", n)
	}
	return nil
}
