package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
)

// Config configures a Runner. Zero values mean the defaults given on each field.
type Config struct {
	Brokers []string
	GroupID string
	Topics  []string
	// Name labels logs, metrics and dead letters (default GroupID).
	Name string
	// BatchSize is the most messages handed over at once (default 100). A batch is
	// whatever has already arrived, up to BatchSize, waiting at most BatchLinger for more.
	BatchSize   int
	BatchLinger time.Duration // default 2ms
	// ShutdownTimeout bounds how long in-flight work may take after Run's context ends
	// (default 30s); then it is cancelled and, uncommitted, redelivered later.
	ShutdownTimeout time.Duration
	// SessionTimeout is the group session (default 10s): how long a dead consumer keeps its partitions.
	SessionTimeout time.Duration
	// StartOffset applies to a group with no committed offset (default kafka.FirstOffset).
	StartOffset int64
	Logger      *slog.Logger
	Metrics     *Metrics
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 || c.GroupID == "" || len(c.Topics) == 0 {
		return errors.New("consumer: Brokers, GroupID and Topics are required")
	}
	if c.Name == "" {
		c.Name = c.GroupID
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.BatchLinger == 0 {
		c.BatchLinger = 2 * time.Millisecond
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.StartOffset == 0 {
		c.StartOffset = kafka.FirstOffset
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Runner fetches from a consumer group, hands messages to a handler and commits their
// offsets after the handler succeeded. Messages of one partition are handled in order.
type Runner struct {
	cfg     Config
	reader  *kafka.Reader
	process func(ctx context.Context, ms []*Message) error
}

// New runs h on each message, through mws (first listed is outermost).
func New(cfg Config, h Handler, mws ...Middleware) (*Runner, error) {
	chain := Chain(h, mws...)
	return newRunner(cfg, func(ctx context.Context, ms []*Message) error {
		for _, m := range ms {
			if err := chain(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// NewBatch runs bh on whole batches, e.g. one database transaction per batch. Messages
// that do not decode are routed one by one through mws (which should end in DeadLetter).
// If a batch fails with a permanent error (see Permanent), its messages are retried one at
// a time through mws, so that one poison message is dead-lettered instead of blocking the
// partition; a transient error retries the whole batch until it succeeds.
func NewBatch(cfg Config, bh BatchHandler, retry Retry, mws ...Middleware) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	single := Chain(func(ctx context.Context, m *Message) error { return bh(ctx, []*Message{m}) }, mws...)
	return newRunner(cfg, func(ctx context.Context, ms []*Message) error {
		good := make([]*Message, 0, len(ms))
		for _, m := range ms {
			if err := decodeInto(m); err != nil {
				if err := single(ctx, m); err != nil {
					return err
				}
				continue
			}
			good = append(good, m)
		}
		if len(good) == 0 {
			return nil
		}
		whole := retry.Middleware(func(ctx context.Context, _ *Message) error { return bh(ctx, good) })
		err := whole(ctx, &Message{Topic: good[0].Topic})
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, ErrPermanent) {
			// A transient failure (the database or Kafka is down) is not the messages'
			// fault: dead-lettering them would drop accepted chat messages. The runner
			// retries the whole batch until the dependency is back.
			return err
		}
		cfg.Logger.Warn("batch failed, isolating messages", "consumer", cfg.Name, "size", len(good), "error", err)
		for _, m := range good {
			m.Attempt = 0
			if err := single(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

func decodeInto(m *Message) error {
	if m.Event.ID != "" {
		return nil
	}
	e, err := event.Decode(m.Value)
	if err == nil {
		_, err = event.DecodePayload(e)
	}
	if err != nil {
		return Permanent(fmt.Errorf("cannot decode event: %w", err))
	}
	m.Event = e
	return nil
}

func newRunner(cfg Config, process func(context.Context, []*Message) error) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:                cfg.Brokers,
		GroupID:                cfg.GroupID,
		GroupTopics:            cfg.Topics,
		MinBytes:               1,
		MaxBytes:               10 << 20,
		MaxWait:                250 * time.Millisecond,
		ReadBackoffMin:         10 * time.Millisecond,
		ReadBackoffMax:         250 * time.Millisecond,
		CommitInterval:         0, // synchronous commits: an offset is stored before we move on
		StartOffset:            cfg.StartOffset,
		HeartbeatInterval:      time.Second,
		SessionTimeout:         cfg.SessionTimeout,
		RebalanceTimeout:       cfg.SessionTimeout,
		JoinGroupBackoff:       500 * time.Millisecond,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		QueueCapacity:          cfg.BatchSize * 2,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			cfg.Logger.Debug(fmt.Sprintf(msg, args...), "consumer", cfg.Name, "component", "kafka-reader")
		}),
	})
	return &Runner{cfg: cfg, reader: reader, process: process}, nil
}

// Run consumes until ctx ends. On shutdown it finishes and commits the batch in hand,
// then leaves the group so that its partitions move at once instead of after a timeout.
func (r *Runner) Run(ctx context.Context) error {
	log := r.cfg.Logger.With("consumer", r.cfg.Name)
	// Work in hand survives the shutdown signal for ShutdownTimeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.ShutdownTimeout, cancelWork) })
	defer stop()
	defer func() {
		if err := r.reader.Close(); err != nil {
			log.Warn("closing reader", "error", err)
		}
	}()
	log.Info("consumer started", "group", r.cfg.GroupID, "topics", r.cfg.Topics)
	var failures int
	var lastWarn time.Time
	for {
		batch, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("consumer stopped")
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("consumer %s: fetch: reader closed: %w", r.cfg.Name, err)
			}
			// kafka-go's partition readers retry on their own and report each failure
			// here (e.g. "failed to dial" while one broker of three is down); the reader
			// stays usable. Returning stopped the whole service on a fault the cluster is
			// built to survive (found by the chaos suite), so fetch again. The errors
			// come through the reader's message queue, behind which messages wait: they
			// must be drained at once, not one per backoff (a 5 s pause per error held
			// consumption up for minutes after the broker was back). The short pause only
			// keeps a reader that yields nothing but errors from spinning.
			failures++
			if time.Since(lastWarn) >= 5*time.Second {
				log.Warn("fetch failed; retrying", "error", err, "failures", failures)
				lastWarn, failures = time.Now(), 0
			}
			select {
			case <-ctx.Done():
				log.Info("consumer stopped")
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if err := r.handle(ctx, work, batch); err != nil {
			if ctx.Err() != nil {
				log.Info("consumer stopped; uncommitted messages will be redelivered", "error", err)
				return nil
			}
			return err
		}
		if r.cfg.Metrics != nil {
			st := r.reader.Stats()
			r.cfg.Metrics.lag.WithLabelValues(r.cfg.Name, st.Topic).Set(float64(st.Lag))
		}
	}
}

// fetch blocks for one message, then takes whatever else arrives within BatchLinger.
func (r *Runner) fetch(ctx context.Context) ([]kafka.Message, error) {
	first, err := r.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafka.Message{first}
	linger, cancel := context.WithTimeout(ctx, r.cfg.BatchLinger)
	defer cancel()
	for len(batch) < r.cfg.BatchSize {
		// A fetch cut short by the linger timeout leaves its message queued for the next call.
		m, err := r.reader.FetchMessage(linger)
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// handle processes and commits a batch, retrying forever (with backoff) while the
// failure is not the shutdown: giving up would skip messages, and order must hold.
func (r *Runner) handle(ctx, work context.Context, batch []kafka.Message) error {
	ms := make([]*Message, len(batch))
	for i, km := range batch {
		ms[i] = fromKafka(km)
	}
	delay := 200 * time.Millisecond
	for {
		err := r.process(work, ms)
		if err == nil {
			break
		}
		if ctx.Err() != nil || work.Err() != nil {
			return err
		}
		r.cfg.Logger.Error("batch not handled; retrying", "consumer", r.cfg.Name, "error", err, "first_offset", batch[0].Offset)
		select {
		case <-work.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
	for attempt := 1; ; attempt++ {
		err := r.reader.CommitMessages(work, batch...)
		if err == nil {
			return nil
		}
		if work.Err() != nil {
			return err
		}
		if attempt == 5 {
			// The handler's effects are idempotent: an uncommitted batch is only redelivered
			// (typically after a rebalance took the partition away), never lost.
			r.cfg.Logger.Warn("commit failed; batch will be redelivered", "consumer", r.cfg.Name, "error", err)
			return nil
		}
		time.Sleep(delay)
	}
}
