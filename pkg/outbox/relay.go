package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
)

// DefaultLockKey is the session advisory lock (one-key bigint form) that elects the
// active relay: "kchatobx".
const DefaultLockKey int64 = 0x6b63686174_6f6278

// Channel is the LISTEN channel the outbox insert trigger notifies.
const Channel = "outbox"

// Publisher writes messages to Kafka and returns once they are acknowledged;
// *producer.Producer satisfies it.
type Publisher interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Config configures a Relay. Zero values mean the defaults given on each field.
type Config struct {
	LockKey int64 // default DefaultLockKey
	// BatchSize is the most rows read and published at once (default 500). Keep it at or
	// below the producer's batch size so one partition's rows go out in one request.
	BatchSize int
	// PollInterval is how long the active relay waits for a notification before looking
	// anyway (default 500ms): notifications are a latency optimisation, not a guarantee.
	PollInterval time.Duration
	// LockRetry is how often a standby tries to take the lock (default 1s).
	LockRetry time.Duration
	// ReconnectDelay is the pause after the relay's connection failed, and the first pause
	// after publishing failed (those grow, with jitter, up to 30s) (default 1s).
	ReconnectDelay time.Duration
	// ShutdownTimeout bounds the round in progress once Run's context ends (default 30s):
	// it is finished and marked rather than cut off, which would only cause republishing.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	Metrics         *Metrics // optional
	// AfterPublish, if set, runs after every acknowledged Kafka write and before the rows
	// are marked published, with the 1-based count of writes. Fault injection uses it to
	// crash in that window.
	AfterPublish func(writes int64)
}

func (c *Config) setDefaults() {
	if c.LockKey == 0 {
		c.LockKey = DefaultLockKey
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.PollInterval == 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.LockRetry == 0 {
		c.LockRetry = time.Second
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Relay publishes committed outbox rows to Kafka. Every persistence instance runs one,
// but only the one holding a PostgreSQL session advisory lock publishes: a single
// active relay keeps each room's events in order, and when its session ends (crash,
// network loss) PostgreSQL releases the lock and a standby takes over within a second.
//
// Delivery is at-least-once: rows are marked published only after Kafka acknowledged
// them, so a crash in between republishes them, byte for byte. Consumers deduplicate by
// (room_id, seq) or event id.
// Run it once per process.
type Relay struct {
	pool   *pgxpool.Pool
	pub    Publisher
	cfg    Config
	log    *slog.Logger
	active atomic.Bool
	writes atomic.Int64
}

// New returns a relay that takes its dedicated connection from pool and publishes
// through pub.
func New(pool *pgxpool.Pool, pub Publisher, cfg Config) (*Relay, error) {
	if pool == nil || pub == nil {
		return nil, errors.New("outbox: pool and publisher are required")
	}
	cfg.setDefaults()
	return &Relay{pool: pool, pub: pub, cfg: cfg, log: cfg.Logger.With("component", "outbox-relay")}, nil
}

// Active reports whether this relay currently holds the lock.
func (r *Relay) Active() bool { return r.active.Load() }

// Run relays until ctx ends, returning nil then. Connection failures are logged and
// retried: losing the database only pauses relaying.
func (r *Relay) Run(ctx context.Context) error {
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("relay session ended; reconnecting", "error", err, "delay", r.cfg.ReconnectDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.ReconnectDelay):
		}
	}
}

// session holds one dedicated connection: it waits for the lock, then relays until the
// connection fails or ctx ends. Closing the connection releases the lock.
func (r *Relay) session(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	// The connection leaves the pool: it holds session state (lock, LISTEN) that must
	// never be handed to anyone else, and it dies with the session.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "SET application_name = 'kchat-persistence-relay'"); err != nil {
		return fmt.Errorf("cannot configure connection: %w", err)
	}
	if err := r.acquire(ctx, conn); err != nil {
		return err
	}
	r.setActive(true)
	defer r.setActive(false)
	r.log.Info("relay lock acquired; relaying", "lock_key", r.cfg.LockKey, "backend_pid", conn.PgConn().PID())
	defer r.log.Info("relay lock released")

	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	// Published rows are deleted by the Cleaner, on connections of its own: a large
	// DELETE here would hold up relaying while it ran.
	b := backoff.New(r.cfg.ReconnectDelay, 30*time.Second)
	// Rows held back behind a running transaction get no notification when it ends (it
	// may be anyone's, in any database: transaction ids are cluster-wide), so they are
	// looked at again soon, sooner than PollInterval, until they are through.
	held := backoff.New(5*time.Millisecond, r.cfg.PollInterval)
	for {
		err := r.drain(ctx, conn)
		var perr *publishError
		switch {
		case errors.As(err, &perr):
			// Kafka is unavailable: keep the lock (another instance could do no better)
			// and try again with backoff; the rows stay pending meanwhile.
			delay := b.Next()
			r.log.Warn("publishing failed; retrying", "error", err, "delay", delay)
			if backoff.Sleep(ctx, delay) != nil {
				return nil
			}
			continue
		case err != nil:
			return err
		}
		b.Reset()
		if ctx.Err() != nil {
			return nil
		}
		if err := r.updateLag(ctx, conn); err != nil {
			return err
		}
		wait := r.cfg.PollInterval
		switch waiting, err := r.heldBack(ctx, conn); {
		case err != nil:
			return err
		case waiting:
			wait = min(wait, held.Next())
		default:
			held.Reset()
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, err = conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && !pgconn.Timeout(err) {
			return fmt.Errorf("waiting for notifications: %w", err)
		}
	}
}

// acquire returns once conn holds the lock, trying every LockRetry.
func (r *Relay) acquire(ctx context.Context, conn *pgx.Conn) error {
	logged := false
	for {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", r.cfg.LockKey).Scan(&ok); err != nil {
			return fmt.Errorf("cannot try the relay lock: %w", err)
		}
		if ok {
			return nil
		}
		if !logged {
			r.log.Info("relay lock held by another instance; standing by")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.LockRetry):
		}
	}
}

func (r *Relay) setActive(on bool) {
	r.active.Store(on)
	r.cfg.Metrics.setActive(on)
}

// drain relays rounds until a round comes back short of a full batch. A round in
// progress finishes even if ctx ends meanwhile.
func (r *Relay) drain(ctx context.Context, conn *pgx.Conn) error {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
		n, err := r.round(rctx, conn)
		cancel()
		if err != nil {
			return err
		}
		if n < r.cfg.BatchSize {
			return nil
		}
	}
	return nil
}

// publishError is a failed Kafka write, as opposed to a database failure.
type publishError struct {
	rows int
	err  error
}

func (e *publishError) Error() string {
	return fmt.Sprintf("cannot publish %d outbox rows: %v", e.rows, e.err)
}
func (e *publishError) Unwrap() error { return e.err }

type row struct {
	id        int64
	topic     string
	key       string
	payload   []byte
	headers   map[string]string
	createdAt time.Time
}

// round publishes up to one batch of pending rows and marks them published, returning
// how many it relayed.
func (r *Relay) round(ctx context.Context, conn *pgx.Conn) (int, error) {
	// Only rows of transactions older than every running one: a running transaction may
	// still commit rows that belong before these (a smaller txid), so reading past it
	// could publish a room's events out of order. Ordering by txid follows each room's
	// seq because the store takes its room locks before it has a txid.
	rows, err := conn.Query(ctx, `
		SELECT id, topic, key, payload, headers, created_at
		FROM outbox
		WHERE published_at IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot())
		  AND (relay_after IS NULL OR relay_after <= now())
		ORDER BY txid, id
		LIMIT $1`, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("cannot read outbox: %w", err)
	}
	var rs []row
	var rw row
	_, err = pgx.ForEachRow(rows, []any{&rw.id, &rw.topic, &rw.key, &rw.payload, &rw.headers, &rw.createdAt}, func() error {
		rs = append(rs, row{id: rw.id, topic: rw.topic, key: rw.key, payload: slices.Clone(rw.payload),
			headers: rw.headers, createdAt: rw.createdAt})
		rw.headers = nil // scanning JSON into a non-nil map would merge into it
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot read outbox: %w", err)
	}
	if len(rs) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(rs))
	msgs := make([]kafka.Message, len(rs))
	for i, x := range rs {
		ids[i] = x.id
		msgs[i] = kafka.Message{Topic: x.topic, Key: []byte(x.key), Value: x.payload, Headers: sortedHeaders(x.headers)}
	}

	// One write for the whole batch: the producer splits it per partition and writes
	// each partition's messages in order, so each room keeps its order.
	start := time.Now()
	spans := startPublishSpans(ctx, "relay", msgs)
	err = r.pub.Write(ctx, msgs...)
	spans.end(err)
	if err != nil {
		return 0, &publishError{rows: len(msgs), err: err}
	}
	r.cfg.Metrics.published(len(msgs), time.Since(start))
	if r.cfg.AfterPublish != nil {
		r.cfg.AfterPublish(r.writes.Add(1))
	}
	if _, err := conn.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE id = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("cannot mark %d outbox rows published (they will be republished): %w", len(ids), err)
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		for _, x := range rs {
			r.log.Debug("relayed", "event_id", x.headers["ce_id"], "topic", x.topic, "key", x.key, "outbox_id", x.id)
		}
	}
	return len(rs), nil
}

// heldBack reports whether rows the relay may publish are still pending after a drain:
// they belong to transactions newer than one that was running when it read.
func (r *Relay) heldBack(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var pending bool
	err := conn.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL AND (relay_after IS NULL OR relay_after <= now()))`).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("cannot read the outbox: %w", err)
	}
	return pending, nil
}

// updateLag reports the age of the oldest pending row, including rows that are held back
// because an older transaction is still running: that is the delay consumers see.
func (r *Relay) updateLag(ctx context.Context, conn *pgx.Conn) error {
	var oldest *time.Time
	err := conn.QueryRow(ctx, `
		SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY txid, id LIMIT 1`).Scan(&oldest)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.cfg.Metrics.setLag(0)
	case err != nil:
		return fmt.Errorf("cannot read relay lag: %w", err)
	default:
		r.cfg.Metrics.setLag(time.Since(*oldest))
	}
	return nil
}
