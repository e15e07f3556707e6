package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/producer"
)

// The raw baselines are the best each Kafka client does for the guarantees the platform
// asks for: acks from every in-sync replica, keyed records, Murmur2 partitioning (the Java
// client's, so a key lands on the same partition whichever client wrote it), lz4. Every
// client is used asynchronously, as it is meant to be under load: a send hands the record
// over and a callback reports its acknowledgement.

// kafkaClient is one Kafka client set up for a baseline on one topic.
type kafkaClient struct {
	name string
	// produce hands one record over; done is called once, from any goroutine, with the
	// outcome.
	produce func(ctx context.Context, key, value []byte, headers []kafka.Header, done func(error))
	// consume reads the topic from its first offset until ctx ends, calling fn for every
	// record as it is fetched; stop waits until the readers are gone.
	consume func(ctx context.Context, fn func(value []byte, at time.Time)) (stop func(), err error)
	close   func()
	// requests counts the produce requests and fetches this client made, where the client
	// says (kafka-go's Writer and Reader stats, franz-go's hooks); -1 when it does not.
	requests func() (produce, fetch int64)
}

// clientNames are the baseline clients, in the order they run.
var clientNames = []string{clientWriter, clientProducer, clientFranz}

const (
	clientWriter   = "kafka-go Writer (async)"
	clientProducer = "pkg/producer"
	clientFranz    = "franz-go"
)

// newClient builds the named client for topic.
func (b *Bench) newClient(name, topic string) (*kafkaClient, error) {
	switch name {
	case clientWriter:
		return b.writerClient(topic), nil
	case clientProducer:
		return b.producerClient(topic)
	case clientFranz:
		return b.franzClient(topic)
	}
	return nil, fmt.Errorf("unknown client %q", name)
}

// writerClient is kafka-go's Writer used asynchronously: WriteMessages queues and returns,
// batches leave after BatchTimeout (2 ms) or BatchSize (500) records, and Completion
// reports each batch's outcome to the records' own callbacks (carried in WriterData).
func (b *Bench) writerClient(topic string) *kafkaClient {
	w := &kafka.Writer{
		Addr: kafka.TCP(b.cfg.Brokers...), Transport: b.cfg.KafkaSecurity.RoundTripper(),
		Topic: topic, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		Async: true, BatchTimeout: 2 * time.Millisecond, BatchSize: 500, Compression: kafka.Lz4,
		MaxAttempts: 10, WriteBackoffMin: 50 * time.Millisecond, WriteBackoffMax: time.Second, WriteTimeout: 10 * time.Second,
		Completion: func(msgs []kafka.Message, err error) {
			for _, m := range msgs {
				if done, ok := m.WriterData.(func(error)); ok {
					done(err)
				}
			}
		},
	}
	var rs readerStats
	return &kafkaClient{
		name: clientWriter,
		produce: func(ctx context.Context, key, value []byte, headers []kafka.Header, done func(error)) {
			if err := w.WriteMessages(ctx, kafka.Message{Key: key, Value: value, Headers: headers, WriterData: done}); err != nil {
				done(err)
			}
		},
		consume: func(ctx context.Context, fn func([]byte, time.Time)) (func(), error) {
			return b.kafkaGoConsume(ctx, topic, fn, &rs)
		},
		close:    func() { _ = w.Close() },
		requests: func() (int64, int64) { return w.Stats().Writes, rs.fetches() },
	}
}

// producerClient is the platform's producer (pkg/producer), queueing with Enqueue as the
// gateway does (one produce request in flight per partition, batching meanwhile).
func (b *Bench) producerClient(topic string) (*kafkaClient, error) {
	p, err := producer.New(producer.Config{Brokers: b.cfg.Brokers, Security: b.cfg.KafkaSecurity})
	if err != nil {
		return nil, err
	}
	var rs readerStats
	return &kafkaClient{
		name: clientProducer,
		produce: func(ctx context.Context, key, value []byte, headers []kafka.Header, done func(error)) {
			if err := p.Enqueue(ctx, done, kafka.Message{Topic: topic, Key: key, Value: value, Headers: headers}); err != nil {
				done(err)
			}
		},
		consume: func(ctx context.Context, fn func([]byte, time.Time)) (func(), error) {
			return b.kafkaGoConsume(ctx, topic, fn, &rs)
		},
		close:    func() { _ = p.Close() },
		requests: func() (int64, int64) { return -1, rs.fetches() },
	}, nil
}

// franzClient is franz-go producing (acks=all, idempotent as by default, 2 ms linger,
// lz4, Murmur2 key partitioner) and, for the hop, consuming with a client of its own.
func (b *Bench) franzClient(topic string) (*kafkaClient, error) {
	var hooks franzCounter
	opts, err := b.franzSecured(append(franzOpts(b.cfg.Brokers, topic), kgo.WithHooks(&hooks))...)
	if err != nil {
		return nil, err
	}
	fc, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &kafkaClient{
		name: clientFranz,
		produce: func(ctx context.Context, key, value []byte, headers []kafka.Header, done func(error)) {
			r := &kgo.Record{Key: key, Value: value}
			for _, h := range headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			fc.Produce(ctx, r, func(_ *kgo.Record, err error) { done(err) })
		},
		consume: func(ctx context.Context, fn func([]byte, time.Time)) (func(), error) {
			opts, err := b.franzSecured(kgo.SeedBrokers(b.cfg.Brokers...), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond), kgo.WithHooks(&hooks))
			if err != nil {
				return nil, err
			}
			cc, err := kgo.NewClient(opts...)
			if err != nil {
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for ctx.Err() == nil {
					fs := cc.PollFetches(ctx)
					at := time.Now()
					fs.EachRecord(func(r *kgo.Record) { fn(r.Value, at) })
				}
			}()
			return func() { <-done; cc.Close() }, nil
		},
		close:    fc.Close,
		requests: hooks.counts,
	}, nil
}

// franzOpts is franz-go set up for the same guarantees as pkg/producer: acks from all
// in-sync replicas (and idempotence, franz-go's default), Murmur2 key partitioning, lz4,
// a 2 ms linger.
func franzOpts(brokers []string, topic string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2 * time.Millisecond), kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.MaxBufferedRecords(100_000),
	}
}

// franzCounter counts the produce and fetch requests a franz-go client writes.
type franzCounter struct {
	mu             sync.Mutex
	produce, fetch int64
}

var _ kgo.HookBrokerWrite = (*franzCounter)(nil)

func (c *franzCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch key {
	case 0: // Produce
		c.produce++
	case 1: // Fetch
		c.fetch++
	}
}

func (c *franzCounter) counts() (int64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.produce, c.fetch
}

// readerStats sums the fetches of kafka-go readers (Stats resets its counters on every
// call, so they are accumulated here).
type readerStats struct {
	mu      sync.Mutex
	readers []*kafka.Reader
	total   int64
}

func (s *readerStats) add(r *kafka.Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readers = append(s.readers, r)
}

func (s *readerStats) fetches() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.readers {
		s.total += r.Stats().Fetches
	}
	return s.total
}

// kafkaGoConsume reads every partition of topic from its first offset with a kafka-go
// Reader of its own (no consumer group: a group joining a topic created a moment ago can
// wait tens of seconds for its assignment, which is not part of a hop), MinBytes 1 and
// a broker-side wait of 50 ms (consumer.ReaderMaxWait).
func (b *Bench) kafkaGoConsume(ctx context.Context, topic string, fn func([]byte, time.Time), rs *readerStats) (func(), error) {
	conn, err := b.cfg.KafkaSecurity.Dialer(10*time.Second).DialContext(ctx, "tcp", b.cfg.Brokers[0])
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	if len(parts) == 0 {
		return nil, errors.New("no partitions for " + topic)
	}
	var wg sync.WaitGroup
	var readers []*kafka.Reader
	for _, part := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: b.cfg.Brokers, Dialer: b.cfg.KafkaSecurity.ReaderDialer(), Topic: topic, Partition: part.ID,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: consumer.ReaderMaxWait(50 * time.Millisecond), StartOffset: kafka.FirstOffset,
			QueueCapacity: 1000, ReadBackoffMin: 10 * time.Millisecond, ReadBackoffMax: 250 * time.Millisecond,
		})
		readers = append(readers, r)
		rs.add(r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				fn(m.Value, time.Now())
			}
		}()
	}
	return func() {
		wg.Wait()
		for _, r := range readers {
			_ = r.Close()
		}
	}, nil
}
