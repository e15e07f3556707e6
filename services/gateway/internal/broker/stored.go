package broker

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/fetcher"
	"github.com/kchat/kchat/pkg/topics"
)

// StoredSink receives the room timeline read from chat.stored. Wants is asked first, from
// the record's key (the room) and its event.HeaderUsers header, so that entries no
// connection of this gateway needs are skipped without being decoded. Both are called
// from one goroutine per partition leader: a room's entries arrive in order, different
// rooms' concurrently.
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
// Kafka write and a hop per message and gateway; see docs/architecture.md. One fetch per
// partition leader covers all of that leader's partitions (pkg/fetcher).
func (b *Broker) RunStored(ctx context.Context, sink StoredSink) error {
	topic := b.Topic(topics.Stored)
	var n int
	if err := retry(ctx, b.log, "stored metadata", func() (err error) { n, err = b.partitions(ctx, topic); return err }); err != nil {
		return err
	}
	f, err := fetcher.New(fetcher.Config{Brokers: b.cfg.Brokers, Security: b.cfg.Security, MaxWait: 250 * time.Millisecond, Logger: b.log})
	if err != nil {
		return err
	}
	defer f.Close()
	ends := make(map[fetcher.Partition]int64, n)
	for part := range n {
		ends[fetcher.Partition{Topic: topic, ID: part}] = kafka.LastOffset
	}
	var next map[fetcher.Partition]int64
	if err := retry(ctx, b.log, "stored offsets", func() (err error) { next, err = f.Resolve(ctx, ends); return err }); err != nil {
		return err
	}
	b.log.Info("reading the timeline", "topic", topic, "partitions", n)
	close(b.storedReady)
	sink.Positioned(ctx)

	keep := b.keepStored(sink)
	deliver := func(ctx context.Context, batch fetcher.Batch) error {
		for _, m := range batch.Messages {
			b.handle(ctx, m, keep, sink)
		}
		return nil
	}
	tick := time.NewTicker(partitionCheck)
	defer tick.Stop()
	for {
		// Run ends only when its context does: to read new partitions too, it is stopped
		// and started again from where it was.
		rctx, stop := context.WithCancel(ctx)
		ran := make(chan map[fetcher.Partition]int64, 1)
		go func() {
			at, _ := f.Run(rctx, next, deliver)
			ran <- at
		}()
		m := n
		for m <= n && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
				if got, err := b.partitions(ctx, topic); err == nil {
					m = got
				}
			}
		}
		stop()
		next = <-ran
		if ctx.Err() != nil {
			return nil
		}
		b.log.Info("chat.stored has new partitions; reading them from the start", "from", n, "to", m)
		for part := n; part < m; part++ {
			next[fetcher.Partition{Topic: topic, ID: part}] = kafka.FirstOffset
		}
		n = m
	}
}

// StoredReady is closed once RunStored has fixed its start offsets.
func (b *Broker) StoredReady() <-chan struct{} { return b.storedReady }

// keepStored skips, undecoded, the timeline entries no connection of this gateway needs.
func (b *Broker) keepStored(sink StoredSink) func(kafka.Message) bool {
	return func(m kafka.Message) bool {
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
	}
}
