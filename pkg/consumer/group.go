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
	"github.com/kchat/kchat/pkg/fetcher"
)

// groupReader is a consumer group member that reads its partitions with pkg/fetcher: one
// fetch request per partition leader at a time, where a kafka-go Reader keeps one in
// flight per partition. kafka-go's ConsumerGroup does the membership (join, heartbeat,
// partition assignment, offset commits); the fetching is what changed.
type groupReader struct {
	group *kafka.ConsumerGroup
	fetch *fetcher.Fetcher
	log   *slog.Logger
	queue chan queued

	mu       sync.Mutex
	gen      *kafka.Generation // nil between generations
	assigned map[fetcher.Partition]bool
	lag      map[fetcher.Partition]int64

	stop context.CancelFunc
	done chan struct{}
}

// queued is a fetched message and the generation that fetched it: a message fetched in a
// generation that has ended is dropped, since the next one reads again from the
// committed offsets (anything else would hand a partition's messages over twice, out
// of order).
type queued struct {
	m   kafka.Message
	gen int32
}

// fetchWaitBytes is the data a fetch with Config.FetchWait waits for at most: half a
// response (fetcher's default MaxBytes is 1 MiB), so that a backlog still comes in full
// responses at once and only a trickle waits.
const fetchWaitBytes = 512 << 10

func newGroupReader(cfg Config) (*groupReader, error) {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     cfg.GroupID,
		Brokers:                cfg.Brokers,
		Dialer:                 cfg.Security.ReaderDialer(),
		Topics:                 cfg.Topics,
		HeartbeatInterval:      time.Second,
		SessionTimeout:         cfg.SessionTimeout,
		RebalanceTimeout:       cfg.SessionTimeout,
		JoinGroupBackoff:       500 * time.Millisecond,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		StartOffset:            cfg.StartOffset,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			cfg.Logger.Debug(fmt.Sprintf(msg, args...), "consumer", cfg.Name, "component", "kafka-group")
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Name, err)
	}
	fc := fetcher.Config{
		Brokers: cfg.Brokers, Security: cfg.Security, MaxWait: 250 * time.Millisecond,
		ResetOffset: cfg.StartOffset, Logger: cfg.Logger.With("consumer", cfg.Name),
	}
	if cfg.FetchWait > 0 {
		fc.MaxWait, fc.MinBytes = cfg.FetchWait, fetchWaitBytes
	}
	f, err := fetcher.New(fc)
	if err != nil {
		_ = group.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	g := &groupReader{group: group, fetch: f, log: cfg.Logger.With("consumer", cfg.Name),
		queue: make(chan queued, cfg.BatchSize*2), lag: map[fetcher.Partition]int64{}, stop: stop, done: make(chan struct{})}
	go g.run(ctx)
	return g, nil
}

// run follows the group's generations until ctx ends or the group is closed.
func (g *groupReader) run(ctx context.Context) {
	defer close(g.done)
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		gen, err := g.group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			g.log.Warn("joining the consumer group failed; retrying", "error", err)
			if b.Wait(ctx) != nil {
				return
			}
			continue
		}
		b.Reset()
		start := map[fetcher.Partition]int64{}
		for topic, parts := range gen.Assignments {
			for _, p := range parts {
				start[fetcher.Partition{Topic: topic, ID: p.ID}] = p.Offset
			}
		}
		g.mu.Lock()
		g.gen, g.assigned = gen, map[fetcher.Partition]bool{}
		for p := range start {
			g.assigned[p] = true
		}
		clear(g.lag)
		g.mu.Unlock()
		g.log.Info("partitions assigned", "generation", gen.ID, "partitions", len(start))
		if len(start) == 0 {
			continue // a member without partitions waits for the next generation in Next
		}
		gen.Start(func(ctx context.Context) {
			_, err := g.fetch.Run(ctx, start, func(ctx context.Context, b fetcher.Batch) error {
				g.mu.Lock()
				g.lag[b.Partition] = b.HighWatermark - (b.Messages[len(b.Messages)-1].Offset + 1)
				g.mu.Unlock()
				for _, m := range b.Messages {
					select {
					case g.queue <- queued{m, gen.ID}:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				g.log.Error("fetching stopped", "error", err)
			}
		})
	}
}

// FetchMessage returns the next message of the current generation.
func (g *groupReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-g.done:
			return kafka.Message{}, io.EOF
		case q := <-g.queue:
			g.mu.Lock()
			current := g.gen != nil && g.gen.ID == q.gen
			g.mu.Unlock()
			if current {
				return q.m, nil
			}
		}
	}
}

// CommitMessages commits the offsets after ms, in the current generation, of the
// partitions this member still holds: the effects of a message handled after its
// partition moved are already done, and its new holder commits its own progress.
func (g *groupReader) CommitMessages(_ context.Context, ms ...kafka.Message) error {
	g.mu.Lock()
	gen := g.gen
	offsets := map[string]map[int]int64{}
	for _, m := range ms {
		if !g.assigned[fetcher.Partition{Topic: m.Topic, ID: m.Partition}] {
			continue
		}
		if offsets[m.Topic] == nil {
			offsets[m.Topic] = map[int]int64{}
		}
		if m.Offset+1 > offsets[m.Topic][m.Partition] {
			offsets[m.Topic][m.Partition] = m.Offset + 1
		}
	}
	g.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	if gen == nil {
		return errors.New("no consumer group generation")
	}
	return gen.CommitOffsets(offsets)
}

// Lag is, per topic, how many messages the partitions this member holds had beyond what
// it fetched, as of the last fetch that brought any.
func (g *groupReader) Lag() map[string]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]int64{}
	for p, n := range g.lag {
		out[p.Topic] += n
	}
	return out
}

// Close leaves the group, so that the partitions move at once, and closes connections.
func (g *groupReader) Close() error {
	err := g.group.Close()
	g.stop()
	<-g.done
	return errors.Join(err, g.fetch.Close())
}
