package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/kafkasec"
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
	// FetchWait, if set, lets each fetch collect records for this long (up to a response's
	// worth) instead of answering with the first: a consumer nobody waits for then makes a
	// few requests a second per broker whatever the rate, and handles larger batches, at
	// the cost of that much delay. Zero: a fetch is answered as soon as a record arrives.
	FetchWait time.Duration
	// ShutdownTimeout bounds how long in-flight work may take after Run's context ends
	// (default 30s); then it is cancelled and, uncommitted, redelivered later.
	ShutdownTimeout time.Duration
	// SessionTimeout is the group session (default 6s, the least Kafka's default
	// group.min.session.timeout.ms allows): how long a dead consumer keeps its partitions,
	// and how long a rebalance waits for members that will not come back. The second
	// matters after a coordinator failover too: kafka-go forgets its member id when a join
	// fails (segmentio/kafka-go#1215), so the new coordinator waits this long for the
	// members it loaded, then rebalances without them. Heartbeats go every second.
	SessionTimeout time.Duration
	// StartOffset applies to a group with no committed offset (default kafka.FirstOffset).
	StartOffset int64
	Logger      *slog.Logger
	Metrics     *Metrics
	// Security secures the connections (TLS, SASL); the zero value is PLAINTEXT.
	Security kafkasec.Security
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
		c.SessionTimeout = 6 * time.Second
	}
	if c.StartOffset == 0 {
		c.StartOffset = kafka.FirstOffset
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// source is where a Runner's messages come from: a consumer group member.
type source interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	committer
	Lag() map[string]int64
	Close() error
}

type committer interface {
	CommitMessages(ctx context.Context, ms ...kafka.Message) error
}

// Runner fetches from a consumer group, hands messages to a handler and commits their
// offsets after the handler succeeded. Messages of one partition are handled in order.
type Runner struct {
	cfg     Config
	reader  source
	process func(ctx context.Context, ms []*Message) error
	// prepare, if set, runs on each message as it is fetched, ahead of process.
	prepare func(m *Message)
}

// New runs h on each message, through mws (first listed is outermost).
func New(cfg Config, h Handler, mws ...Middleware) (*Runner, error) {
	chain := Chain(h, mws...)
	return newRunner(cfg, func(ctx context.Context, ms []*Message) (err error) {
		defer startSpans(ctx, cfg.Name, ms)(&err)
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
// A batch that fails transiently is retried whole, by retry, until it succeeds. If it
// fails with a permanent error (see IsPermanent), its messages are isolated: handled one
// at a time through mws, so that one poison message is dead-lettered instead of blocking
// the partition, while a transient failure during the isolation (the database restarting)
// is retried like any other and never dead-letters a valid message.
func NewBatch(cfg Config, bh BatchHandler, retry Retry, mws ...Middleware) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	single := Chain(func(ctx context.Context, m *Message) error { return bh(ctx, []*Message{m}) }, mws...)
	r, err := newRunner(cfg, func(ctx context.Context, ms []*Message) (err error) {
		defer startSpans(ctx, cfg.Name, ms)(&err)
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
		err = whole(ctx, &Message{Topic: good[0].Topic})
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !IsPermanent(err) {
			// Retry gave up on a transient failure only because the runner is stopping
			// (or its ShouldRetry said so): the batch stays uncommitted.
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
	if err != nil {
		return nil, err
	}
	// Decoding while the previous batch is being handled takes it off the handler's path;
	// a message that does not decode is decoded again (and dead-lettered) in process.
	r.prepare = func(m *Message) { _ = decodeInto(m) }
	return r, nil
}

func decodeInto(m *Message) error {
	if m.Event.ID != "" {
		return nil
	}
	e, err := event.Decode(m.Value)
	var p event.Payload
	if err == nil {
		p, err = event.DecodePayload(e)
	}
	if err != nil {
		return Permanent(fmt.Errorf("cannot decode event: %w", err))
	}
	m.Event, m.Payload = e, p
	return nil
}

func newRunner(cfg Config, process func(context.Context, []*Message) error) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	reader, err := newGroupReader(cfg)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, reader: reader, process: process}, nil
}

// Run consumes until ctx ends. On shutdown it finishes and commits the batch in hand,
// then leaves the group so that its partitions move at once instead of after a timeout.
//
// Three things overlap so that the handler is never idle waiting for Kafka: the next batch
// is fetched (and, for batch runners, decoded) while the current one is handled, and the
// offsets of a handled batch are committed in the background while the next one is
// handled. An offset is still only committed after its batch's handler returned nil.
func (r *Runner) Run(ctx context.Context) error {
	log := r.cfg.Logger.With("consumer", r.cfg.Name)
	// Work in hand survives the shutdown signal for ShutdownTimeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// Retries of transient failures stop at the shutdown signal, not after the timeout.
	work = withStopping(work, ctx.Done())
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.ShutdownTimeout, cancelWork) })
	defer stop()
	defer func() {
		if err := r.reader.Close(); err != nil {
			log.Warn("closing reader", "error", err)
		}
	}()
	// Deferred after the reader's Close, so it runs first: the offsets of every handled
	// batch are committed before the reader leaves the group.
	commits := newCommitter(r.reader, log)
	go commits.run(work)
	defer commits.close()

	fetchCtx, stopFetch := context.WithCancel(ctx)
	batches := make(chan fetched) // unbuffered: at most one batch waits, fetched ahead
	fetcherDone := make(chan struct{})
	go func() { defer close(fetcherDone); r.prefetch(fetchCtx, log, batches) }()
	// Runs before commits.close: the fetcher may be blocked in FetchMessage, which needs
	// the reader open until it notices its cancelled context.
	defer func() { stopFetch(); <-fetcherDone }()

	log.Info("consumer started", "group", r.cfg.GroupID, "topics", r.cfg.Topics)
	for {
		var f fetched
		select {
		case <-ctx.Done():
			log.Info("consumer stopped")
			return nil
		case f = <-batches:
		}
		if f.err != nil {
			return fmt.Errorf("consumer %s: fetch: reader closed: %w", r.cfg.Name, f.err)
		}
		if err := r.handle(ctx, work, f.batch, f.ms); err != nil {
			if ctx.Err() != nil {
				log.Info("consumer stopped; uncommitted messages will be redelivered", "error", err)
				return nil
			}
			return err
		}
		commits.add(f.batch)
		if r.cfg.Metrics != nil {
			for topic, lag := range r.reader.Lag() {
				r.cfg.Metrics.lag.WithLabelValues(r.cfg.Name, topic).Set(float64(lag))
			}
		}
	}
}

// fetched is a batch ready for the handler, or the error that ends consumption.
type fetched struct {
	batch []kafka.Message
	ms    []*Message
	err   error
}

// prefetch fetches batches and hands them to Run one at a time until ctx ends or the
// reader is closed.
func (r *Runner) prefetch(ctx context.Context, log *slog.Logger, out chan<- fetched) {
	var failures int
	var lastWarn time.Time
	for {
		batch, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, io.EOF) {
				select {
				case out <- fetched{err: err}:
				case <-ctx.Done():
				}
				return
			}
			// The group reader retries Kafka's failures itself (a broker down, leaders
			// moving) and hands over only messages; an error other than the reader's
			// end is unexpected, so it is logged (rate-limited) and fetching goes on
			// rather than stopping a service on a fault the cluster is built to survive.
			// The short pause only keeps a reader that yields nothing but errors from
			// spinning.
			failures++
			if time.Since(lastWarn) >= 5*time.Second {
				log.Warn("fetch failed; retrying", "error", err, "failures", failures)
				lastWarn, failures = time.Now(), 0
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		ms := make([]*Message, len(batch))
		for i, km := range batch {
			ms[i] = fromKafka(km)
			if r.prepare != nil {
				r.prepare(ms[i])
			}
		}
		select {
		case out <- fetched{batch: batch, ms: ms}:
		case <-ctx.Done():
			return // never handled, so never committed: redelivered
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

// handle processes a batch, retrying forever (with backoff and jitter) while the failure
// is not the shutdown: giving up would skip messages, and order must hold. Nothing new is
// handed over meanwhile: the fetcher holds at most one batch, fetched ahead.
func (r *Runner) handle(ctx, work context.Context, batch []kafka.Message, ms []*Message) error {
	b := backoff.New(200*time.Millisecond, 10*time.Second)
	for {
		err := r.process(work, ms)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || work.Err() != nil {
			return err
		}
		d := b.Next()
		r.cfg.Logger.Error("batch not handled; retrying", "consumer", r.cfg.Name, "error", err, "first_offset", batch[0].Offset, "retry_in", d)
		if werr := wait(work, d); werr != nil {
			return err
		}
	}
}

// offsetCommitter commits the offsets of handled batches in the background. Batches handled
// while a commit is in flight are merged into the next one: only the highest handled
// offset of each partition matters, and everything below it was handled too, in order.
type offsetCommitter struct {
	reader committer
	log    *slog.Logger

	mu      sync.Mutex
	pending map[topicPartition]kafka.Message
	closed  bool
	wake    chan struct{} // capacity 1: something is pending or closed was set
	done    chan struct{} // closed when run returned
}

type topicPartition struct {
	topic     string
	partition int
}

func newCommitter(reader committer, log *slog.Logger) *offsetCommitter {
	return &offsetCommitter{reader: reader, log: log, pending: map[topicPartition]kafka.Message{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// add records a handled batch for commit.
func (c *offsetCommitter) add(batch []kafka.Message) {
	c.mu.Lock()
	c.mergeLocked(batch)
	c.mu.Unlock()
	c.signal()
}

func (c *offsetCommitter) mergeLocked(ms []kafka.Message) {
	for _, m := range ms {
		k := topicPartition{m.Topic, m.Partition}
		if old, ok := c.pending[k]; !ok || m.Offset > old.Offset {
			c.pending[k] = m
		}
	}
}

func (c *offsetCommitter) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close commits what is pending (within run's context) and waits for run to return.
func (c *offsetCommitter) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.signal()
	<-c.done
}

// run commits whatever is pending until close was called and nothing is left, or ctx
// ends (the shutdown timeout: what is left is redelivered).
func (c *offsetCommitter) run(ctx context.Context) {
	defer close(c.done)
	b := backoff.New(200*time.Millisecond, 10*time.Second)
	attempt := 0
	for {
		c.mu.Lock()
		ms := make([]kafka.Message, 0, len(c.pending))
		for _, m := range c.pending {
			ms = append(ms, m)
		}
		clear(c.pending)
		closed := c.closed
		c.mu.Unlock()
		if len(ms) == 0 {
			if closed {
				return
			}
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		err := c.reader.CommitMessages(ctx, ms...)
		if err == nil {
			attempt = 0
			b.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		attempt++
		if attempt == 5 {
			// The handlers' effects are idempotent: uncommitted messages are only
			// redelivered (typically after a rebalance took the partition away), never lost.
			c.log.Warn("commit failed; messages will be redelivered", "error", err)
			attempt = 0
			b.Reset()
			continue
		}
		c.mu.Lock()
		c.mergeLocked(ms)
		c.mu.Unlock()
		if b.Wait(ctx) != nil {
			return
		}
	}
}

// NewBatchStandard is NewBatch with the middleware chain of kchat's consumer services,
// outermost first: Logging, cfg.Metrics (if set), DeadLetter to dlqTopic through dlq,
// Retry, Recover, Decode. Recover sits inside DeadLetter so that a panic is dead-lettered
// like any other permanent failure; decode errors are permanent and skip Retry.
func NewBatchStandard(cfg Config, bh BatchHandler, dlq Writer, dlqTopic string) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	retry := Retry{Logger: cfg.Logger}
	mws := []Middleware{Logging(cfg.Logger)}
	if cfg.Metrics != nil {
		cfg.Metrics.Expect(cfg.Name, cfg.Topics...)
		mws = append(mws, cfg.Metrics.Middleware(cfg.Name))
	}
	mws = append(mws, DeadLetter(dlq, dlqTopic, cfg.Name, cfg.Logger), retry.Middleware, Recover(), Decode())
	return NewBatch(cfg, bh, retry, mws...)
}
