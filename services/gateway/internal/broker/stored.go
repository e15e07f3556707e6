package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/topics"
)

// StoredSink receives the room timeline read from chat.stored. Wants is asked first, from
// the record's key (the room) and its event.HeaderUsers header, so that entries no
// connection of this gateway needs are skipped without being decoded. Both are called
// from one goroutine per partition: a room's entries arrive in order, different rooms'
// concurrently.
type StoredSink interface {
	Sink
	Wants(room, users string) bool
	// Positioned is called once every partition's start offset is fixed: entries
	// committed to PostgreSQL before then may never be read live, so rooms followed
	// since before then are re-read from PostgreSQL.
	Positioned(ctx context.Context)
}

// partitionCheck is how often the partition count of chat.stored is looked up again. It
// only matters when an operator adds partitions, which starts empty ones: they are read
// from their first offset, so nothing written to them is missed meanwhile, only delayed.
const partitionCheck = 30 * time.Second

// RunStored reads every partition of chat.stored from its current end until ctx ends,
// without a consumer group (every gateway needs every room its clients follow, and a
// restarted gateway's clients resume from PostgreSQL). Reading the room-keyed timeline
// directly, instead of copies that fanout addresses to each gateway, saves a replicated
// Kafka write and a hop per message and gateway; see docs/architecture.md.
func (b *Broker) RunStored(ctx context.Context, sink StoredSink) error {
	topic := b.Topic(topics.Stored)
	var n int
	if err := retry(ctx, b.log, "stored metadata", func() (err error) { n, err = b.partitions(ctx, topic); return err }); err != nil {
		return err
	}
	var starts map[int]int64
	if err := retry(ctx, b.log, "stored offsets", func() (err error) { starts, err = b.lastOffsets(ctx, topic, 0, n); return err }); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(part int, offset int64) {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: b.cfg.Brokers, Dialer: b.cfg.Security.ReaderDialer(), Topic: topic, Partition: part,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: consumer.ReaderMaxWait(250 * time.Millisecond),
		})
		if err := r.SetOffset(offset); err != nil {
			b.log.Error("cannot position stored reader", "partition", part, "error", err)
			_ = r.Close()
			return
		}
		wg.Go(func() {
			defer r.Close()
			_ = b.consumeStored(ctx, r, sink)
		})
	}
	for part := range n {
		start(part, starts[part])
	}
	b.log.Info("reading the timeline", "topic", topic, "partitions", n)
	close(b.storedReady)
	sink.Positioned(ctx)

	tick := time.NewTicker(partitionCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m, err := b.partitions(ctx, topic)
			if err != nil || m <= n {
				continue
			}
			b.log.Info("chat.stored has new partitions; reading them from the start", "from", n, "to", m)
			for part := n; part < m; part++ {
				start(part, kafka.FirstOffset)
			}
			n = m
		}
	}
}

// StoredReady is closed once RunStored has fixed its start offsets.
func (b *Broker) StoredReady() <-chan struct{} { return b.storedReady }

func (b *Broker) lastOffsets(ctx context.Context, topic string, from, to int) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, 0, to-from)
	for p := from; p < to; p++ {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	res, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(reqs))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	for p := from; p < to; p++ {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("no offset for %s/%d", topic, p)
		}
	}
	return out, nil
}

func (b *Broker) consumeStored(ctx context.Context, r *kafka.Reader, sink StoredSink) error {
	return b.read(ctx, r, "stored", func(m kafka.Message) bool {
		var users string
		for i := len(m.Headers) - 1; i >= 0; i-- {
			if m.Headers[i].Key == event.HeaderUsers {
				users = string(m.Headers[i].Value)
				break
			}
		}
		if !sink.Wants(string(m.Key), users) {
			if b.metrics != nil {
				b.metrics.Skipped.Inc()
			}
			return false
		}
		return true
	}, sink)
}
