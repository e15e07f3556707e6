// Package producer publishes events to Kafka with settings that are safe by default.
//
// It is built on kafka-go's Produce request rather than its Writer. A Writer sends one
// batch per partition at a time and never merges the batches queued behind it: under load
// each partition moves one small batch (often one message) per produce round trip, the
// brokers drown in requests, round trips grow and the queue with them (measured: about
// 800 messages/s on the local cluster before latency ran away, where franz-go, which
// batches while a request is in flight, kept up with 5,000/s). Here each partition has a
// lane: while one request is in flight, everything published for that partition waits
// and goes out as the next request. Batches grow with load instead of queues, and a
// partition still has one request in flight, so one key keeps one order.
//
// Failure keeps that order: a request is retried in place until it succeeds, fails for
// good or reaches its records' DeliveryTimeout; when it fails, every record queued behind
// it on the partition at that moment fails with the same error, so a later message of a
// key is never written after an earlier one that the caller will retry. Errors that say
// the cluster moved (not leader, connection refused, a broker gone) make the producer
// drop its cached cluster metadata, so a new leader is used as soon as Kafka has one.
// The queue is bounded (MaxBufferedBytes, MaxBufferedRecords): when full, Enqueue answers
// ErrBufferFull at once instead of growing.
package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/metadata"
)

// Config configures a Producer. Zero values mean the defaults documented on each field.
type Config struct {
	Brokers []string
	// Linger is how long a request waits for company once its lane is idle (default 0:
	// it goes at once; messages published while it is in flight form the next one).
	Linger time.Duration
	// BatchSize caps messages per request (default 1000).
	BatchSize int
	// BatchBytes caps the uncompressed bytes of a request (default 900 KiB, below the
	// brokers' 1 MiB message.max.bytes), and so the size of a single message.
	BatchBytes int
	// MaxAttempts bounds tries of a request (default 0: no bound but DeliveryTimeout,
	// so that a request outlasts a leader election instead of counting tries through it).
	MaxAttempts int
	// WriteTimeout bounds one attempt (default 10s).
	WriteTimeout time.Duration
	// DeliveryTimeout bounds the time from Enqueue to the acknowledgement: a record not
	// acknowledged by then fails with ErrDeliveryTimeout, and so do the records queued
	// behind it on its partition (default 30s). An attempt in flight at the deadline is
	// abandoned, not undone: like any failed write, the record may still have been
	// written.
	DeliveryTimeout time.Duration
	// CloseTimeout bounds Close (default DeliveryTimeout); see CloseContext.
	CloseTimeout time.Duration
	// MaxBufferedBytes caps the bytes of records enqueued and not yet acknowledged or
	// failed (default 32 MiB, as the Java client's buffer.memory); MaxBufferedRecords
	// caps their number (default 100,000). Beyond either, Enqueue returns ErrBufferFull.
	MaxBufferedBytes   int
	MaxBufferedRecords int
	// MetadataTTL is how long a topic's partition count is trusted (default 30s).
	MetadataTTL time.Duration
	Logger      *slog.Logger
	// Security secures the connections (TLS, SASL); the zero value is PLAINTEXT.
	Security kafkasec.Security

	// roundTripper replaces the kafka-go Transport in tests (export_test.go).
	roundTripper kafka.RoundTripper
}

var (
	// ErrBufferFull is returned by Enqueue (and so Publish, PublishAsync, Write) when the
	// records would exceed MaxBufferedBytes or MaxBufferedRecords; nothing was queued. It
	// is temporary: the caller may answer "unavailable" and let its client retry.
	ErrBufferFull = errors.New("producer: buffer full")
	// ErrDeliveryTimeout is the error of a record not acknowledged within
	// DeliveryTimeout (wrapped with the last attempt's error, if any).
	ErrDeliveryTimeout = errors.New("producer: delivery timeout")
	// ErrClosed is returned for records enqueued after Close, and reported for records
	// still queued when CloseContext's context ends.
	ErrClosed = errors.New("producer: closed")
)

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 900 << 10
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = 30 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = c.DeliveryTimeout
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = 32 << 20
	}
	if c.MaxBufferedRecords <= 0 {
		c.MaxBufferedRecords = 100_000
	}
	if c.MetadataTTL <= 0 {
		c.MetadataTTL = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Producer writes keyed messages with acks=all, lz4-compressed. It is safe for concurrent
// use.
type Producer struct {
	cfg       Config
	transport kafka.RoundTripper
	client    *kafka.Client
	// abort ends every attempt and wait when CloseContext gives up.
	abort     context.Context
	cancelAll context.CancelFunc
	leaders   *metadata.Refresher // drops the transport's cached leaders when they moved

	mu         sync.Mutex
	closed     bool
	lanes      map[partitionKey]*lane
	topics     map[string]*topicInfo
	bufBytes   int            // bytes of records queued or in flight
	bufRecords int            // and their number
	rounds     sync.WaitGroup // lanes with a request in flight, for Close
}

type partitionKey struct {
	topic     string
	partition int
}

// lane is one partition's queue. inFlight is true while a goroutine owns the lane and
// sends its requests, one at a time.
type lane struct {
	pending  []queued
	inFlight bool
}

type queued struct {
	m        kafka.Message
	c        *completion
	size     int
	deadline time.Time
}

type topicInfo struct {
	partitions []int
	fetched    time.Time
	refreshing bool
}

// New returns a producer. Partitioning uses Murmur2 on the key, the Java client's default
// partitioner, so a room lands on the same partition whichever client (ours, Kafka's
// console tools, a Kafka Streams job) writes it, and one room keeps one total order.
func New(cfg Config) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("producer: no brokers configured")
	}
	cfg.setDefaults()
	var rt kafka.RoundTripper = cfg.Security.Secure(&kafka.Transport{})
	if cfg.roundTripper != nil {
		rt = cfg.roundTripper
	}
	abort, cancel := context.WithCancel(context.Background())
	return &Producer{
		cfg: cfg, transport: rt, abort: abort, cancelAll: cancel, leaders: metadata.NewRefresher(rt, maxRetryDelay),
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: cfg.WriteTimeout, Transport: rt},
		lanes:  map[partitionKey]*lane{}, topics: map[string]*topicInfo{},
	}, nil
}

// Message builds a Kafka message for an event: the envelope as JSON value, the key, and the
// CloudEvents attributes as headers so that tools (Kafka UI) can filter without decoding.
func Message(topic, key string, e event.Envelope) (kafka.Message, error) {
	value, err := event.Encode(e)
	if err != nil {
		return kafka.Message{}, err
	}
	hs := event.Headers(e)
	headers := make([]kafka.Header, len(hs))
	for i, h := range hs {
		headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return kafka.Message{Topic: topic, Key: []byte(key), Value: value, Headers: headers}, nil
}

// Publish encodes and writes events to topic under key, returning once every replica in
// the ISR has them (or an error: nothing is reported written that was not).
func (p *Producer) Publish(ctx context.Context, topic, key string, events ...event.Envelope) error {
	msgs, err := messages(topic, key, events)
	if err != nil {
		return err
	}
	return p.Write(ctx, msgs...)
}

// PublishAsync is Publish without the wait: the events are queued for their partition
// before it returns, so calls made one after another keep their order within a key, and
// done is called once, from another goroutine, when all are acknowledged or with the first
// error. An error returned here means nothing was queued and done is not called.
func (p *Producer) PublishAsync(ctx context.Context, topic, key string, done func(error), events ...event.Envelope) error {
	msgs, err := messages(topic, key, events)
	if err != nil {
		return err
	}
	return p.Enqueue(ctx, done, msgs...)
}

func messages(topic, key string, events []event.Envelope) ([]kafka.Message, error) {
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		m, err := Message(topic, key, e)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	return msgs, nil
}

// Write writes prepared messages (each with its Topic set). Messages with the same key keep
// their order; the call returns when all are acknowledged or one failed.
func (p *Producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	result := make(chan error, 1)
	if err := p.Enqueue(ctx, func(err error) { result <- err }, msgs...); err != nil {
		return err
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		// The messages may still be written: the caller must treat them as unknown.
		return ctx.Err()
	}
}

// Enqueue queues prepared messages and returns; see PublishAsync. ctx bounds only the
// partition lookup of a topic not seen before. It returns ErrBufferFull, without queueing
// anything, when the messages would exceed MaxBufferedBytes or MaxBufferedRecords, and
// ErrClosed after Close.
func (p *Producer) Enqueue(ctx context.Context, done func(error), msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		done(nil)
		return nil
	}
	keys := make([]partitionKey, len(msgs))
	sizes := make([]int, len(msgs))
	total := 0
	for i, m := range msgs {
		if m.Topic == "" {
			return errors.New("kafka write failed: message without a topic")
		}
		sizes[i] = messageSize(m)
		if sizes[i] > p.cfg.BatchBytes {
			return fmt.Errorf("kafka write failed: message of %d bytes is larger than the %d allowed", sizes[i], p.cfg.BatchBytes)
		}
		total += sizes[i]
		parts, err := p.partitions(ctx, m.Topic)
		if err != nil {
			return fmt.Errorf("kafka write failed: %w", err)
		}
		keys[i] = partitionKey{m.Topic, kafka.Murmur2Balancer{}.Balance(m, parts...)}
	}
	c := &completion{done: done}
	c.pending.Store(int32(len(msgs)))
	deadline := time.Now().Add(p.cfg.DeliveryTimeout)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("kafka write failed: %w", ErrClosed)
	}
	if p.bufRecords+len(msgs) > p.cfg.MaxBufferedRecords || p.bufBytes+total > p.cfg.MaxBufferedBytes {
		return fmt.Errorf("kafka write failed: %w (%d records, %d bytes queued)", ErrBufferFull, p.bufRecords, p.bufBytes)
	}
	p.bufRecords += len(msgs)
	p.bufBytes += total
	for i, m := range msgs {
		l := p.lanes[keys[i]]
		if l == nil {
			l = &lane{}
			p.lanes[keys[i]] = l
		}
		l.pending = append(l.pending, queued{m: m, c: c, size: sizes[i], deadline: deadline})
		if !l.inFlight {
			l.inFlight = true
			p.rounds.Add(1)
			go p.drain(keys[i], l)
		}
	}
	return nil
}

// drain sends a lane's requests one after another until the lane is empty. When a request
// fails for good, the records queued behind it fail with it (see the package comment).
func (p *Producer) drain(key partitionKey, l *lane) {
	defer p.rounds.Done()
	if p.cfg.Linger > 0 {
		select {
		case <-time.After(p.cfg.Linger):
		case <-p.abort.Done():
		}
	}
	for {
		p.mu.Lock()
		n, bytes := 0, 0
		for n < len(l.pending) && n < p.cfg.BatchSize {
			size := l.pending[n].size
			if n > 0 && bytes+size > p.cfg.BatchBytes {
				break
			}
			bytes += size
			n++
		}
		if n == 0 {
			l.inFlight = false
			l.pending = nil // let a burst's backing array go
			p.mu.Unlock()
			return
		}
		batch := l.pending[:n:n]
		l.pending = l.pending[n:]
		p.mu.Unlock()

		err := p.produce(key, batch)
		if err != nil {
			// Everything queued behind the failed request fails too, with the same error;
			// what is enqueued from now on starts afresh.
			p.mu.Lock()
			batch = append(batch, l.pending...)
			l.pending = nil
			p.mu.Unlock()
		}
		p.release(batch)
		for _, q := range batch {
			q.c.finish(err)
		}
	}
}

// release returns finished records' room in the buffer, before their callbacks run so that
// a callback may enqueue again.
func (p *Producer) release(batch []queued) {
	bytes := 0
	for _, q := range batch {
		bytes += q.size
	}
	p.mu.Lock()
	p.bufRecords -= len(batch)
	p.bufBytes -= bytes
	p.mu.Unlock()
}

// produce sends one request, retrying what may succeed on a later try (a leader moving, a
// broker restarting) before the lane moves on, so that order holds. It gives up at the
// first record's delivery deadline (the records are in enqueue order, so it is the
// earliest), after MaxAttempts if set, or when CloseContext aborts.
func (p *Producer) produce(key partitionKey, batch []queued) error {
	now := time.Now()
	deadline := batch[0].deadline
	b := backoff.New(50*time.Millisecond, maxRetryDelay)
	var last error
	for attempt := 1; ; attempt++ {
		if p.abort.Err() != nil {
			return fmt.Errorf("kafka write failed: %s[%d]: %w", key.topic, key.partition, ErrClosed)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return fmt.Errorf("kafka write failed: %s[%d]: %w after %d attempts (last error: %v)",
				key.topic, key.partition, ErrDeliveryTimeout, attempt-1, last)
		}
		// Fresh records per attempt: a record's key and value are readers, used up by the
		// attempt before.
		records := make([]kafka.Record, len(batch))
		for i, q := range batch {
			records[i] = kafka.Record{Time: q.m.Time, Key: bytesOrNil(q.m.Key), Value: bytesOrNil(q.m.Value), Headers: q.m.Headers}
			if records[i].Time.IsZero() {
				records[i].Time = now
			}
		}
		ctx, cancel := context.WithTimeout(p.abort, min(p.cfg.WriteTimeout, remaining))
		res, err := p.client.Produce(ctx, &kafka.ProduceRequest{
			Topic: key.topic, Partition: key.partition, RequiredAcks: kafka.RequireAll,
			Compression: kafka.Lz4, Records: kafka.NewRecordReader(records...),
		})
		cancel()
		if err == nil {
			err = res.Error
		}
		if err == nil {
			for _, rerr := range res.RecordErrors {
				err = rerr
				break
			}
		}
		if err == nil {
			return nil
		}
		last = err
		if p.abort.Err() != nil {
			continue // reported as ErrClosed above
		}
		if (p.cfg.MaxAttempts > 0 && attempt >= p.cfg.MaxAttempts) || !retriable(err) {
			return fmt.Errorf("kafka write failed: %s[%d]: %w", key.topic, key.partition, err)
		}
		if movedOn(err) {
			p.leaders.Refresh()
		}
		if attempt == 1 || attempt%10 == 0 { // a failover retries every maxRetryDelay
			p.cfg.Logger.Warn("produce failed, retrying", "topic", key.topic, "partition", key.partition,
				"messages", len(batch), "attempt", attempt, "error", err)
		}
		_ = backoff.Sleep(p.abort, min(b.Next(), time.Until(deadline))) // an abort is reported above
	}
}

// maxRetryDelay caps the pause between attempts: during a failover the new leader is
// used within this long of Kafka electing it.
const maxRetryDelay = 250 * time.Millisecond

// partitions returns the topic's partition ids, cached for MetadataTTL. A stale entry is
// used while a refresh runs in the background: partitions are only ever added.
func (p *Producer) partitions(ctx context.Context, topic string) ([]int, error) {
	p.mu.Lock()
	info := p.topics[topic]
	if info != nil {
		if time.Since(info.fetched) > p.cfg.MetadataTTL && !info.refreshing {
			info.refreshing = true
			go p.refresh(topic)
		}
		parts := info.partitions
		p.mu.Unlock()
		return parts, nil
	}
	p.mu.Unlock()
	parts, err := p.fetchPartitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.topics[topic] = &topicInfo{partitions: parts, fetched: time.Now()}
	p.mu.Unlock()
	return parts, nil
}

func (p *Producer) refresh(topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.WriteTimeout)
	defer cancel()
	parts, err := p.fetchPartitions(ctx, topic)
	p.mu.Lock()
	defer p.mu.Unlock()
	info := p.topics[topic]
	info.refreshing = false
	if err != nil {
		p.cfg.Logger.Warn("cannot refresh partitions", "topic", topic, "error", err)
		return
	}
	info.partitions, info.fetched = parts, time.Now()
}

// whyUnknown asks a broker directly about a topic the cached cluster metadata does not
// list, on a secured cluster only. Brokers leave topics a principal may not describe out
// of the all-topics metadata that kafka-go's transport caches, so a topic its ACLs deny
// looks merely unknown; asked by name, the broker says TOPIC_AUTHORIZATION_FAILED, which
// is what the caller needs to read. Any other outcome leaves err as it was.
func (p *Producer) whyUnknown(ctx context.Context, topic string, err error) error {
	if !errors.Is(err, kafka.UnknownTopicOrPartition) || !p.cfg.Security.Enabled() {
		return err
	}
	for _, addr := range p.cfg.Brokers {
		conn, derr := p.cfg.Security.Dialer(p.cfg.WriteTimeout).DialContext(ctx, "tcp", addr)
		if derr != nil {
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(p.cfg.WriteTimeout))
		_, rerr := conn.ReadPartitions(topic)
		conn.Close()
		if errors.Is(rerr, kafka.TopicAuthorizationFailed) {
			return fmt.Errorf("user %q may not use topic %s (check its ACLs): %w", p.cfg.Security.User(), topic, rerr)
		}
		return err
	}
	return err
}

func (p *Producer) fetchPartitions(ctx context.Context, topic string) ([]int, error) {
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s: no such topic", topic)
	}
	if md.Topics[0].Error != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, p.whyUnknown(ctx, topic, md.Topics[0].Error))
	}
	n := len(md.Topics[0].Partitions)
	if n == 0 {
		return nil, fmt.Errorf("metadata of %s: no partitions", topic)
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return parts, nil
}

// Close is CloseContext bounded by Config.CloseTimeout.
func (p *Producer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CloseTimeout)
	defer cancel()
	return p.CloseContext(ctx)
}

// CloseContext waits until everything queued is written or has failed (which
// DeliveryTimeout bounds), then releases the connections; later writes fail with
// ErrClosed. If ctx ends first, attempts in flight are abandoned and every record not yet
// acknowledged fails with ErrClosed (it may still have been written); CloseContext then
// returns ctx's error. It is safe to call more than once.
func (p *Producer) CloseContext(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		p.rounds.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		p.cancelAll()
		<-drained
		err = fmt.Errorf("producer: close: %w", ctx.Err())
	}
	p.cancelAll()
	if t, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return err
}

// completion counts a call's messages down as their requests finish and reports the first
// error, once, when the last one is done.
type completion struct {
	pending atomic.Int32
	mu      sync.Mutex
	err     error
	done    func(error)
}

func (c *completion) finish(err error) {
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	if c.pending.Add(-1) == 0 {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		c.done(err)
	}
}

// retriable reports whether a later attempt of the same request may succeed: Kafka errors
// marked temporary (not leader, not enough replicas, timeouts) and connections that failed.
func retriable(err error) bool {
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	return errors.Is(err, kafka.BrokerNotAvailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// movedOn reports whether a retriable error may mean the partition's leader moved or its
// broker went away, so that the cached cluster layout is worth dropping. Errors about the
// followers (not enough replicas) leave the leader where it is.
func movedOn(err error) bool {
	return !errors.Is(err, kafka.NotEnoughReplicas) && !errors.Is(err, kafka.NotEnoughReplicasAfterAppend) &&
		!errors.Is(err, kafka.ThrottlingQuotaExceeded)
}

func messageSize(m kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 32
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// bytesOrNil keeps a nil key nil (a compaction tombstone has a nil value; a nil key is
// "no key"), which NewBytes would turn into an empty one.
func bytesOrNil(b []byte) kafka.Bytes {
	if b == nil {
		return nil
	}
	return kafka.NewBytes(b)
}
