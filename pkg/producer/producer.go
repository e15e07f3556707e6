// Package producer publishes events to Kafka with settings that are safe by default.
package producer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
)

// Config configures a Producer. Zero values mean the defaults documented on each field.
type Config struct {
	Brokers []string
	// BatchTimeout bounds how long a write waits for more messages to batch with
	// (default 2ms; kafka-go's own default of 1s would add a second to every chat message).
	BatchTimeout time.Duration
	// BatchSize caps messages per batch (default 500).
	BatchSize int
	// MaxAttempts bounds retries of a failed write, e.g. while a leader moves (default 10).
	MaxAttempts int
	// WriteTimeout bounds one attempt (default 10s).
	WriteTimeout time.Duration
	// Shards is the number of kafka-go Writers keys are spread over (default 8). A kafka-go
	// Writer sends one batch per partition at a time and never merges the batches queued
	// behind it, so under load a partition moves one small batch per produce round trip;
	// several writers, each owning a fixed share of the keys, keep that many batches in
	// flight per partition while every key still goes through exactly one writer in order.
	Shards int
	Logger *slog.Logger
}

// Producer writes keyed messages with acks=all. It is safe for concurrent use; concurrent
// Publish calls are batched together.
type Producer struct {
	shards []*kafka.Writer
}

// New returns a producer. Partitioning uses Murmur2 on the key, the Java client's default
// partitioner, so a room lands on the same partition whichever client (ours, Kafka's
// console tools, a Kafka Streams job) writes it, and one room keeps one total order.
func New(cfg Config) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("producer: no brokers configured")
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 8
	}
	p := &Producer{}
	for range cfg.Shards {
		p.shards = append(p.shards, newWriter(cfg))
	}
	return p, nil
}

func newWriter(cfg Config) *kafka.Writer {
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           cfg.BatchTimeout,
		BatchSize:              cfg.BatchSize,
		MaxAttempts:            cfg.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		WriteTimeout:           cfg.WriteTimeout,
		AllowAutoTopicCreation: false,
		Compression:            kafka.Lz4,
	}
	if cfg.Logger != nil {
		w.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			cfg.Logger.Warn(fmt.Sprintf(msg, args...), "component", "kafka-writer")
		})
	}
	return w
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
	msgs := make([]kafka.Message, len(events))
	for i, e := range events {
		m, err := Message(topic, key, e)
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	return p.Write(ctx, msgs...)
}

// Write writes prepared messages (each with its Topic set). Messages with the same key keep
// their order; the call returns when all are acknowledged or one failed.
func (p *Producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	groups := make(map[int][]kafka.Message, 1)
	for _, m := range msgs {
		i := p.shardOf(m.Key)
		groups[i] = append(groups[i], m)
	}
	if len(groups) == 1 {
		for i, g := range groups {
			return wrapWriteErr(p.shards[i].WriteMessages(ctx, g...))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 0, len(groups))
	var mu sync.Mutex
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.shards[i].WriteMessages(ctx, g...); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return wrapWriteErr(errors.Join(errs...))
}

func wrapWriteErr(err error) error {
	if err != nil {
		return fmt.Errorf("kafka write failed: %w", err)
	}
	return nil
}

// shardOf maps a key to its writer. Any stable hash keeps a key's messages in one writer;
// FNV-1a is cheap and independent of Murmur2, which places the key on a partition.
func (p *Producer) shardOf(key []byte) int {
	if len(p.shards) == 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(len(p.shards)))
}

// Close flushes pending writes and releases connections.
func (p *Producer) Close() error {
	var errs []error
	for _, w := range p.shards {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}
