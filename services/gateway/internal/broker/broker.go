// Package broker is the gateway's Kafka side: it publishes the gateway's events
// (submissions, typing, subscription announcements) and reads its own partition of
// chat.deliveries. It knows nothing about connections; decoded events go to a Sink.
// Presence is published and read with pkg/presence, which every presence user shares.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/metrics"
)

// Publisher is what the broker needs from a Kafka producer (pkg/producer satisfies it).
type Publisher interface {
	Publish(ctx context.Context, topic, key string, events ...event.Envelope) error
	PublishAsync(ctx context.Context, topic, key string, done func(error), events ...event.Envelope) error
	Write(ctx context.Context, msgs ...kafka.Message) error
}

var _ Publisher = (*producer.Producer)(nil)

// Sink receives decoded events read from Kafka, in partition order, from one goroutine.
type Sink interface {
	Deliver(ctx context.Context, e event.Envelope, p event.Payload)
}

// Config configures a Broker.
type Config struct {
	Brokers   []string
	Security  kafkasec.Security // zero: PLAINTEXT
	Names     topics.Names
	GatewayID string
}

// Broker publishes and consumes on behalf of one gateway instance.
type Broker struct {
	cfg     Config
	pub     Publisher
	client  *kafka.Client
	metrics *metrics.Metrics
	log     *slog.Logger
	ready   chan struct{}
	// storedReady is closed once the timeline reader's start offsets are fixed.
	storedReady chan struct{}
}

// New returns a Broker writing through pub. m and log may be nil.
func New(cfg Config, pub Publisher, m *metrics.Metrics, log *slog.Logger) (*Broker, error) {
	if len(cfg.Brokers) == 0 || cfg.GatewayID == "" || pub == nil {
		return nil, errors.New("broker: Brokers, GatewayID and a publisher are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{
		cfg: cfg, pub: pub, metrics: m, log: log, ready: make(chan struct{}), storedReady: make(chan struct{}),
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: cfg.Security.RoundTripper()},
	}, nil
}

// Topic returns the real name of a declared topic.
func (b *Broker) Topic(declared string) string { return b.cfg.Names.Of(declared) }

// Publish writes events to a declared topic under key and returns once Kafka acknowledged
// them with acks=all.
func (b *Broker) Publish(ctx context.Context, declared, key string, events ...event.Envelope) error {
	events = withTraces(ctx, events)
	start := time.Now()
	err := b.pub.Publish(ctx, b.Topic(declared), key, events...)
	b.metrics.Publish(declared, time.Since(start).Seconds())
	return err
}

// PublishAsync queues e for the declared topic and returns; done reports the
// acknowledgement (see producer.PublishAsync).
func (b *Broker) PublishAsync(ctx context.Context, declared, key string, e event.Envelope, done func(error)) error {
	e = withTrace(ctx, e)
	start := time.Now()
	return b.pub.PublishAsync(ctx, b.Topic(declared), key, func(err error) {
		b.metrics.Publish(declared, time.Since(start).Seconds())
		done(err)
	}, e)
}

// SubscriptionChange is one (room, subscribed) announcement.
type SubscriptionChange struct {
	Room       string
	Subscribed bool
}

// AnnounceSubscriptions publishes subscription.changed for several rooms in one write,
// keyed "<gateway>/<room>" on the compacted chat.subscriptions.
func (b *Broker) AnnounceSubscriptions(ctx context.Context, changes []SubscriptionChange) error {
	if len(changes) == 0 {
		return nil
	}
	now := time.Now().UTC()
	topic := b.Topic(topics.Subscriptions)
	msgs := make([]kafka.Message, 0, len(changes))
	for _, c := range changes {
		e, err := event.New("kchat/gateway/"+b.cfg.GatewayID, event.SubscriptionChanged{
			GatewayID: b.cfg.GatewayID, RoomID: c.Room, Subscribed: c.Subscribed, At: now,
		})
		if err != nil {
			return err
		}
		m, err := producer.Message(topic, route.SubscriptionKey(b.cfg.GatewayID, c.Room), e)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	start := time.Now()
	err := b.pub.Write(ctx, msgs...)
	b.metrics.Publish(topics.Subscriptions, time.Since(start).Seconds())
	return err
}

// Ready is closed once the delivery reader has fixed its start offset; a subscription
// announced after that cannot have its events read past.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

func (b *Broker) partitions(ctx context.Context, topic string) (int, error) {
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		if len(md.Topics) == 1 && md.Topics[0].Error != nil {
			return 0, md.Topics[0].Error
		}
		return 0, fmt.Errorf("topic %s has no partitions", topic)
	}
	return len(md.Topics[0].Partitions), nil
}

func (b *Broker) lastOffset(ctx context.Context, topic string, partition int) (int64, error) {
	res, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(partition)}},
	})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return 0, po.Error
			}
			return po.LastOffset, nil
		}
	}
	return 0, fmt.Errorf("no offset for %s/%d", topic, partition)
}

// retry runs f until it succeeds or ctx ends, backing off: at start-up Kafka may still be
// electing leaders (and KRaft answers "not controller" for a moment).
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	b := backoff.New(200*time.Millisecond, 5*time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		log.Warn("kafka call failed, retrying", "what", what, "error", err)
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

// RunDeliveries reads this gateway's partition of chat.deliveries (typing and
// notifications, which fanout addresses to gateways) from its current end until ctx ends. Without a consumer group nothing is committed: a restarted gateway's
// clients resume from PostgreSQL, so old deliveries are of no use.
func (b *Broker) RunDeliveries(ctx context.Context, sink Sink) error {
	topic := b.Topic(topics.Deliveries)
	var n int
	if err := retry(ctx, b.log, "deliveries metadata", func() (err error) { n, err = b.partitions(ctx, topic); return err }); err != nil {
		return err
	}
	part := route.PartitionFor(b.cfg.GatewayID, n)
	var start int64
	if err := retry(ctx, b.log, "deliveries offset", func() (err error) { start, err = b.lastOffset(ctx, topic, part); return err }); err != nil {
		return err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.cfg.Brokers, Dialer: b.cfg.Security.ReaderDialer(), Topic: topic, Partition: part,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: consumer.ReaderMaxWait(250 * time.Millisecond),
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return err
	}
	b.log.Info("reading deliveries", "topic", topic, "partition", part, "partitions", n, "offset", start)
	close(b.ready)
	return b.read(ctx, r, "deliveries", nil, sink)
}

// read hands r's records to sink, decoded, until ctx ends; keep, if set, is asked first and
// a record it refuses is skipped undecoded.
func (b *Broker) read(ctx context.Context, r *kafka.Reader, what string, keep func(kafka.Message) bool, sink Sink) error {
	var failures int
	var lastWarn time.Time
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// kafka-go retries internally and queues each failure in the reader's message
			// queue, ahead of the messages that follow once the broker is back. A pause per
			// error (it was 1 s) drains that backlog slowly and holds deliveries up long
			// after the fault (found by the chaos suite); the short pause only keeps a
			// reader that yields nothing but errors from spinning, and the log is
			// rate-limited instead.
			failures++
			if time.Since(lastWarn) >= 5*time.Second {
				b.log.Warn("kafka read failed", "what", what, "error", err, "failures", failures)
				lastWarn, failures = time.Now(), 0
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		b.handle(ctx, m, keep, sink)
	}
}

// handle hands m to sink, decoded, unless keep (if set) refuses it.
func (b *Broker) handle(ctx context.Context, m kafka.Message, keep func(kafka.Message) bool, sink Sink) {
	if keep != nil && !keep(m) {
		return
	}
	e, err := event.Decode(m.Value)
	var p event.Payload
	if err == nil {
		p, err = event.DecodePayload(e)
	}
	if err != nil {
		// Not retryable and not ours to dead-letter (we do not own the topic's offsets).
		b.log.Warn("undecodable event skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
		return
	}
	if b.metrics != nil {
		b.metrics.Deliveries.WithLabelValues(e.Type).Inc()
		if ms, ok := p.(event.MessageStored); ok {
			b.metrics.DeliveryLag.Observe(time.Since(ms.StoredAt).Seconds())
		}
	}
	dctx, sp := startDeliverSpan(ctx, m, e, p)
	sink.Deliver(dctx, e, p)
	if sp != nil {
		sp.End()
	}
}
