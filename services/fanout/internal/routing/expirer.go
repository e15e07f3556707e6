package routing

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/route"
)

// Writer is the part of *producer.Producer the Expirer needs.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// ExpirerConfig configures an Expirer. Zero values mean the defaults given on each field.
type ExpirerConfig struct {
	Topic string // the real name of chat.subscriptions; required
	// Interval is how often heartbeats are checked for expiry (default a quarter of the
	// table's expiry): a dead gateway loses its routes at most this long after its expiry.
	Interval time.Duration
	// Grace is how long a gateway stays down (or a new run live) before its stale keys are
	// tombstoned (default the table's expiry); see Table.Stale.
	Grace  time.Duration
	Logger *slog.Logger
	// OnExpired and OnTombstones, if set, count what happened (metrics).
	OnExpired    func(gatewayID string)
	OnTombstones func(n int)
}

// Expirer expires routes of gateways whose heartbeat stopped, and deletes (tombstones) the
// chat.subscriptions keys no gateway will clear: those of gateways down for Grace and those
// of a gateway's previous runs. Every fanout instance runs one; they write the same
// tombstones, which is harmless, and none depends on another being alive. A written
// tombstone comes back through the Follower and removes the key from the table; until
// then it is not written again.
type Expirer struct {
	cfg   ExpirerConfig
	table *Table
	w     Writer
}

// NewExpirer returns an Expirer for table writing through w.
func NewExpirer(cfg ExpirerConfig, table *Table, w Writer) (*Expirer, error) {
	if cfg.Topic == "" || table == nil || w == nil {
		return nil, errors.New("routing: Topic, table and writer are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = max(table.cfg.Expiry/4, 10*time.Millisecond)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = table.cfg.Expiry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Expirer{cfg: cfg, table: table, w: w}, nil
}

// Run checks every Interval until ctx ends. Tombstones are written only once caughtUp is
// closed: before that the table may lack a gateway's latest heartbeat or announcement.
// Write failures are logged and retried on the next round.
func (x *Expirer) Run(ctx context.Context, caughtUp <-chan struct{}) {
	tick := time.NewTicker(x.cfg.Interval)
	defer tick.Stop()
	sent := map[Key]bool{} // tombstones written but not read back yet
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, gw := range x.table.Expire() {
			x.cfg.Logger.Warn("gateway heartbeat expired; its routes are dropped", "gateway_id", gw)
			if x.cfg.OnExpired != nil {
				x.cfg.OnExpired(gw)
			}
		}
		select {
		case <-caughtUp:
		default:
			continue
		}
		stale := x.table.Stale(x.cfg.Grace)
		keep := make(map[Key]bool, len(stale))
		var msgs []kafka.Message
		for _, k := range stale {
			keep[k] = true
			if !sent[k] {
				msgs = append(msgs, kafka.Message{Topic: x.cfg.Topic, Key: []byte(route.SubscriptionKey(k.GatewayID, k.RoomID))})
			}
		}
		for k := range sent {
			if !keep[k] {
				delete(sent, k) // read back (or revived by a newer record)
			}
		}
		if len(msgs) == 0 {
			continue
		}
		if err := x.w.Write(ctx, msgs...); err != nil {
			if ctx.Err() == nil {
				x.cfg.Logger.Warn("cannot tombstone stale subscriptions; retrying", "keys", len(msgs), "error", err)
			}
			continue
		}
		for _, m := range msgs {
			gw, room, _ := route.ParseSubscriptionKey(string(m.Key))
			sent[Key{gw, room}] = true
		}
		x.cfg.Logger.Info("tombstoned stale subscriptions", "keys", len(msgs))
		if x.cfg.OnTombstones != nil {
			x.cfg.OnTombstones(len(msgs))
		}
	}
}
