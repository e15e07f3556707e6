package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Enqueuer queues messages for Kafka and reports their acknowledgement later, keeping
// the call order per partition; *producer.Producer satisfies it.
type Enqueuer interface {
	Enqueue(ctx context.Context, done func(error), msgs ...kafka.Message) error
}

// DirectConfig configures a Direct publisher. Zero values mean the defaults noted.
type DirectConfig struct {
	// ShutdownTimeout bounds how long Run waits, once its context ends, for publishes
	// still in flight before it marks what was acknowledged (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	Metrics         *Metrics // optional
}

// Direct publishes a committed transaction's outbox rows right after the commit, instead
// of waiting for the relay to be woken, read them back and publish them: the commit →
// Kafka step then costs one produce and, per few batches, one UPDATE. The rows are written
// with relay_after set, so the relay leaves them alone while this runs; they are marked
// published once Kafka acknowledged them. If a publish fails, the rows are handed to the
// relay at once (relay_after cleared, relay notified); if this process dies, the relay
// takes them over when relay_after passes. Either way at least once, as with the relay
// alone, and consumers deduplicate.
//
// Order: Publish is called in commit order by one goroutine (the batch handler) and the
// producer keeps call order per partition, so a room's events reach Kafka in seq order.
type Direct struct {
	db  Execer
	pub Enqueuer
	cfg DirectConfig
	log *slog.Logger

	inflight sync.WaitGroup
	mu       sync.Mutex
	acked    []string // txids whose rows Kafka acknowledged, not yet marked
	failed   []string // txids whose publish failed, not yet handed to the relay
	wake     chan struct{}
}

// NewDirect returns a Direct publisher; run its Run loop to mark rows.
func NewDirect(db Execer, pub Enqueuer, cfg DirectConfig) (*Direct, error) {
	if db == nil || pub == nil {
		return nil, errors.New("outbox: database and producer are required")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Direct{db: db, pub: pub, cfg: cfg, log: cfg.Logger.With("component", "outbox-direct"), wake: make(chan struct{}, 1)}, nil
}

// Publish queues the rows of committed transaction txid (as pg_current_xact_id() text)
// and returns without waiting for Kafka.
func (d *Direct) Publish(ctx context.Context, txid string, msgs []kafka.Message) {
	if len(msgs) == 0 {
		return
	}
	start := time.Now()
	spans := startPublishSpans(ctx, "direct", msgs)
	d.inflight.Add(1)
	err := d.pub.Enqueue(ctx, func(err error) {
		defer d.inflight.Done()
		spans.end(err)
		if err != nil {
			d.log.Warn("direct publish failed; handing the rows to the relay", "txid", txid, "rows", len(msgs), "error", err)
			d.push(&d.failed, txid)
			return
		}
		d.cfg.Metrics.publishedDirect(len(msgs), time.Since(start))
		d.push(&d.acked, txid)
	}, msgs...)
	if err != nil {
		d.inflight.Done()
		spans.end(err)
		d.log.Warn("direct publish refused; handing the rows to the relay", "txid", txid, "rows", len(msgs), "error", err)
		d.push(&d.failed, txid)
	}
}

func (d *Direct) push(list *[]string, txid string) {
	d.mu.Lock()
	*list = append(*list, txid)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run marks acknowledged rows published and hands failed ones to the relay until ctx
// ends; then it waits (up to ShutdownTimeout) for publishes in flight and marks once more.
// Everything waiting when a mark comes round goes in one statement, so under load one
// UPDATE covers many batches.
func (d *Direct) Run(ctx context.Context) error {
	for {
		select {
		case <-d.wake:
			d.mark(ctx)
		case <-ctx.Done():
			done := make(chan struct{})
			go func() { d.inflight.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(d.cfg.ShutdownTimeout):
				d.log.Warn("publishes still in flight at shutdown; the relay will take their rows over")
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			d.mark(fctx)
			cancel()
			return nil
		}
	}
}

func (d *Direct) mark(ctx context.Context) {
	d.mu.Lock()
	acked, failed := d.acked, d.failed
	d.acked, d.failed = nil, nil
	d.mu.Unlock()
	// A failed mark is not retried: the rows keep relay_after, and the relay publishes
	// them again once it passes. That costs duplicates, never a loss.
	if len(acked) > 0 {
		if _, err := d.db.Exec(ctx, `UPDATE outbox SET published_at = now()
			WHERE txid = ANY($1::text[]::xid8[]) AND published_at IS NULL`, acked); err != nil {
			d.log.Warn("cannot mark directly published rows; the relay will republish them", "transactions", len(acked), "error", err)
		}
	}
	if len(failed) > 0 {
		if _, err := d.db.Exec(ctx, `WITH handed AS (
				UPDATE outbox SET relay_after = NULL
				WHERE txid = ANY($1::text[]::xid8[]) AND published_at IS NULL RETURNING 1)
			SELECT pg_notify('`+Channel+`', '') FROM (SELECT 1 FROM handed LIMIT 1) AS any_row`, failed); err != nil {
			d.log.Warn("cannot hand failed rows to the relay; it takes them when relay_after passes", "transactions", len(failed), "error", err)
		}
	}
}
