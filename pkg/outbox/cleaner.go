package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Retention rules, tied to the topics' retention in deploy/topics.yaml (a test checks the
// constants against it).
//
// Inbox (processed_events, shared by every consumer in this database: persistence reads
// chat.submitted, notification chat.stored). An entry exists to recognise an event that
// comes again, and an event can only come again while its topic still holds it: a group
// rewound to the earliest offset, a group whose offsets expired, a replay. Kafka deletes
// by whole segments, once the newest record of a segment is older than retention.ms, so
// a record stays readable for up to retention.ms + segment.ms (7 days + the broker's
// default log.roll of 7 days) after its timestamp. The entry's processed_at is later than
// the record's timestamp, so an entry older than that sum cannot meet its event again.
// Default: SourceTopicRetention + SourceSegmentSpan (14 days); shorter than the topic's
// retention alone is refused.
//
// Outbox. A published row's event is in Kafka; the row is kept only to inspect what was
// sent (default 1 hour). Past the destination topic's retention it would describe an event
// Kafka no longer has, so longer than that is refused. Unpublished rows are never deleted,
// however old: they are events still owed to Kafka.
const (
	// SourceTopicRetention is retention.ms of chat.submitted and chat.stored (and of
	// chat.notifications, where notification's outbox rows go).
	SourceTopicRetention = 7 * 24 * time.Hour
	// SourceSegmentSpan is how long past its retention a record can stay readable: the
	// time a segment stays open (the broker's log.roll, 7 days, as the topics set no
	// segment.ms).
	SourceSegmentSpan = 7 * 24 * time.Hour

	DefaultInboxRetention  = SourceTopicRetention + SourceSegmentSpan
	DefaultOutboxRetention = time.Hour
)

// CleanerConfig configures a Cleaner. Zero values mean the defaults noted.
type CleanerConfig struct {
	// OutboxRetention: published outbox rows older than this are deleted (default 1h, at
	// most SourceTopicRetention).
	OutboxRetention time.Duration
	// InboxRetention: processed_events entries older than this are deleted (default
	// DefaultInboxRetention, at least SourceTopicRetention).
	InboxRetention time.Duration
	// Interval between cleaning runs (default 1m).
	Interval time.Duration
	// BatchSize is the most rows one DELETE removes (default 1000, at most 10000): each
	// batch is its own short transaction, so it holds few locks briefly and writes little
	// WAL at once.
	BatchSize int
	// BatchPause is the shortest pause between two batches of a run (default 10ms), which
	// leaves the disk and CPU to the store and the relay during a large backlog.
	BatchPause time.Duration
	// BatchTarget is how long one DELETE should take (default 5ms). The relay publishes
	// only rows older than every running transaction, and a DELETE is one: each row
	// committed while a DELETE runs waits for it. So batches shrink (down to 50 rows) while
	// they take longer than this and grow back (up to BatchSize) while they take less than
	// half, and the pause after a batch is at least four times its duration: the Cleaner
	// holds the relay back at most a fifth of the time, a few milliseconds at once.
	BatchTarget time.Duration
	Logger      *slog.Logger
}

func (c *CleanerConfig) setDefaults() {
	if c.OutboxRetention == 0 {
		c.OutboxRetention = DefaultOutboxRetention
	}
	if c.InboxRetention == 0 {
		c.InboxRetention = DefaultInboxRetention
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.BatchPause == 0 {
		c.BatchPause = 10 * time.Millisecond
	}
	if c.BatchTarget == 0 {
		c.BatchTarget = 5 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks a configuration; zero values (the defaults) pass.
func (c CleanerConfig) Validate() error {
	c.setDefaults()
	var errs []error
	if c.OutboxRetention < 0 || c.OutboxRetention > SourceTopicRetention {
		errs = append(errs, fmt.Errorf("outbox retention %v: want more than 0 and at most the topics' retention, %v", c.OutboxRetention, SourceTopicRetention))
	}
	if c.InboxRetention < SourceTopicRetention {
		errs = append(errs, fmt.Errorf("inbox retention %v: want at least the source topics' retention, %v (an event can be redelivered while its topic holds it)", c.InboxRetention, SourceTopicRetention))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("cleanup interval %v: want more than 0", c.Interval))
	}
	if c.BatchSize < 0 || c.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("cleanup batch size %d: want 1 to 10000", c.BatchSize))
	}
	if c.BatchPause < 0 {
		errs = append(errs, fmt.Errorf("cleanup batch pause %v: want 0 or more", c.BatchPause))
	}
	if c.BatchTarget < 0 {
		errs = append(errs, fmt.Errorf("cleanup batch target %v: want more than 0", c.BatchTarget))
	}
	return errors.Join(errs...)
}

// Cleaner deletes published outbox rows and inbox entries past their retention, in
// batches of at most BatchSize rows, each one short DELETE on a connection of the pool:
// never on the relay's connection, so relaying does not wait for it. Every persistence
// instance may run one; two at once only share the work (a row deleted by one is
// skipped by the other). Notification does not run one: it shares this database, and
// its outbox rows are relayed (and so cleaned) by persistence too.
type Cleaner struct {
	db  Execer
	cfg CleanerConfig
	log *slog.Logger
}

// CleanResult is what one run deleted.
type CleanResult struct {
	Outbox, Inbox int64
	Batches       int   // DELETE statements run
	LargestBatch  int64 // most rows one of them deleted
}

// NewCleaner returns a Cleaner; db is usually the service's pool.
func NewCleaner(db Execer, cfg CleanerConfig) (*Cleaner, error) {
	if db == nil {
		return nil, errors.New("outbox: cleaner needs a database")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("outbox: invalid cleaner config: %w", err)
	}
	return &Cleaner{db: db, cfg: cfg, log: cfg.Logger.With("component", "retention-cleaner")}, nil
}

// Run cleans every Interval until ctx ends, returning nil then. A failed run is logged
// and tried again at the next interval: cleaning late costs only disk.
func (c *Cleaner) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		res, err := c.CleanOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.log.Warn("retention cleanup failed; trying again later", "error", err, "deleted_outbox", res.Outbox, "deleted_inbox", res.Inbox)
		case res.Outbox+res.Inbox > 0:
			c.log.Info("retention cleanup", "deleted_outbox", res.Outbox, "deleted_inbox", res.Inbox, "batches", res.Batches,
				"outbox_retention", c.cfg.OutboxRetention.String(), "inbox_retention", c.cfg.InboxRetention.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// The inner SELECT finds up to $2 rows through the retention indexes (migration 00005);
// the DELETE then visits exactly those (a TID scan), so a batch costs its own rows
// whatever the backlog. (Repeating the condition outside makes the planner scan every
// old row per batch.) A row updated meanwhile has moved to a new TID and is not deleted;
// published rows and inbox entries are not updated anyway.
const (
	deleteOutbox = `DELETE FROM outbox WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM outbox WHERE published_at < now() - $1::float8 * interval '1 second' LIMIT $2))`
	deleteInbox = `DELETE FROM processed_events WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM processed_events WHERE processed_at < now() - $1::float8 * interval '1 second' LIMIT $2))`
)

// minCleanBatch keeps a slow database from shrinking batches to nothing: below it the
// statement's own overhead dominates.
const minCleanBatch = 50

// pace returns the next batch size and the pause before it, from the size and duration of
// the batch just run (see BatchTarget).
func (c *Cleaner) pace(size int, took time.Duration) (int, time.Duration) {
	switch {
	case took > c.cfg.BatchTarget:
		// The floor never lifts a batch above BatchSize: a slow database must not make
		// a small configured batch ten times larger.
		size = max(min(minCleanBatch, c.cfg.BatchSize), size/2)
	case took < c.cfg.BatchTarget/2:
		size = min(c.cfg.BatchSize, size*2)
	}
	return size, max(c.cfg.BatchPause, 4*took)
}

// CleanOnce deletes, batch by batch, everything past retention now: the outbox first,
// then the inbox.
func (c *Cleaner) CleanOnce(ctx context.Context) (CleanResult, error) {
	var res CleanResult
	for _, t := range []struct {
		sql       string
		retention time.Duration
		n         *int64
		what      string
	}{
		{deleteOutbox, c.cfg.OutboxRetention, &res.Outbox, "published outbox rows"},
		{deleteInbox, c.cfg.InboxRetention, &res.Inbox, "inbox entries"},
	} {
		size := c.cfg.BatchSize
		for {
			start := time.Now()
			tag, err := c.db.Exec(ctx, t.sql, t.retention.Seconds(), size)
			if err != nil {
				return res, fmt.Errorf("cannot delete old %s: %w", t.what, err)
			}
			took := time.Since(start)
			n := tag.RowsAffected()
			res.Batches++
			*t.n += n
			res.LargestBatch = max(res.LargestBatch, n)
			if n < int64(size) {
				break
			}
			var pause time.Duration
			size, pause = c.pace(size, took)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(pause):
			}
		}
	}
	return res, nil
}
