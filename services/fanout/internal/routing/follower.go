package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// ErrNotCaughtUp is the readiness error until the table reflects the whole topic as of start.
var ErrNotCaughtUp = errors.New("routing table not caught up with the subscriptions topic")

// Fetcher is the part of *kafka.Client the follower needs.
type Fetcher interface {
	Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	ListOffsets(context.Context, *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
	Fetch(context.Context, *kafka.FetchRequest) (*kafka.FetchResponse, error)
}

var _ Fetcher = (*kafka.Client)(nil)

// FollowerConfig configures a Follower. Zero values mean the defaults given on each field.
type FollowerConfig struct {
	Topic string // the real name of chat.subscriptions; required
	// MaxWait is how long one fetch waits for new records at the end of the log (default 500ms).
	MaxWait time.Duration
	// MaxBytes bounds one fetch response (default 4 MiB).
	MaxBytes int64
	// ListAttempts bounds the tries to list the topic's partitions at start, with backoff up
	// to 5s between them (default 10, about half a minute: topics may still be in creation).
	ListAttempts int
	Logger       *slog.Logger
	// OnApply, if set, is called after each record changed the table (for metrics).
	OnApply func(Change)
}

// Follower reads chat.subscriptions from the beginning of every partition, without a
// consumer group (every fanout instance needs the whole table, and nothing is committed),
// applies each record to a Table, and keeps following the topic.
//
// Records of one key live on one partition and are applied in offset order by that
// partition's goroutine, so the table ends at each key's latest state.
type Follower struct {
	cfg    FollowerConfig
	client Fetcher
	table  *Table

	pending   atomic.Int64 // partitions not yet caught up; -1 until Run has listed them
	caughtUp  chan struct{}
	closeOnce sync.Once
}

// NewFollower returns a follower that feeds table.
func NewFollower(cfg FollowerConfig, client Fetcher, table *Table) (*Follower, error) {
	if cfg.Topic == "" || client == nil || table == nil {
		return nil, errors.New("routing: Topic, client and table are required")
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.ListAttempts == 0 {
		cfg.ListAttempts = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Follower{cfg: cfg, client: client, table: table, caughtUp: make(chan struct{})}
	f.pending.Store(-1)
	return f, nil
}

// CaughtUp is closed once every partition was read up to its end offset as of Run's start.
func (f *Follower) CaughtUp() <-chan struct{} { return f.caughtUp }

// Ready is a readiness check: nil once caught up.
func (f *Follower) Ready(context.Context) error {
	select {
	case <-f.caughtUp:
		return nil
	default:
		return ErrNotCaughtUp
	}
}

// Run follows the topic until ctx ends. It returns an error only if the topic's partitions
// cannot be listed at start; fetch errors later are retried with backoff, because a
// fanout with a stale table is better than none while Kafka recovers.
func (f *Follower) Run(ctx context.Context) error {
	starts, ends, err := f.bounds(ctx)
	if err != nil {
		return err
	}
	log := f.cfg.Logger.With("topic", f.cfg.Topic)
	f.pending.Store(int64(len(starts)))
	var wg sync.WaitGroup
	for p, start := range starts {
		end := ends[p]
		log.Info("following subscriptions partition", "partition", p, "from_offset", start, "catch_up_to", end)
		if start >= end {
			f.partitionCaughtUp()
		}
		wg.Go(func() { f.follow(ctx, p, start, end, start >= end) })
	}
	wg.Wait()
	return nil
}

func (f *Follower) partitionCaughtUp() {
	if f.pending.Add(-1) == 0 {
		f.closeOnce.Do(func() {
			st := f.table.Stats()
			f.cfg.Logger.Info("routing table caught up", "topic", f.cfg.Topic,
				"rooms", st.Rooms, "gateways", st.Gateways, "subscriptions", st.Subscriptions)
			close(f.caughtUp)
		})
	}
}

// bounds lists the partitions with their first and end (high-water) offsets, retrying
// while the cluster is unreachable or the topic is not there yet.
func (f *Follower) bounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		starts, ends, err = f.listBounds(ctx)
		if err == nil {
			return starts, ends, nil
		}
		if attempt >= f.cfg.ListAttempts {
			return nil, nil, fmt.Errorf("cannot list offsets of %s: %w", f.cfg.Topic, err)
		}
		f.cfg.Logger.Warn("cannot list subscriptions offsets; retrying", "topic", f.cfg.Topic, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (f *Follower) listBounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	md, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{f.cfg.Topic}})
	if err != nil {
		return nil, nil, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		if len(md.Topics) == 1 && md.Topics[0].Error != nil {
			return nil, nil, md.Topics[0].Error
		}
		return nil, nil, fmt.Errorf("topic %s has no partitions", f.cfg.Topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{f.cfg.Topic: reqs}})
	if err != nil {
		return nil, nil, err
	}
	starts, ends = map[int]int64{}, map[int]int64{}
	for _, po := range res.Topics[f.cfg.Topic] {
		if po.Error != nil {
			return nil, nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		starts[po.Partition], ends[po.Partition] = po.FirstOffset, po.LastOffset
	}
	if len(starts) != len(md.Topics[0].Partitions) {
		return nil, nil, fmt.Errorf("offsets listed for %d of %d partitions", len(starts), len(md.Topics[0].Partitions))
	}
	return starts, ends, nil
}

func (f *Follower) firstOffset(ctx context.Context, partition int) (int64, error) {
	res, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{f.cfg.Topic: {kafka.FirstOffsetOf(partition)}},
	})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[f.cfg.Topic] {
		if po.Partition == partition {
			return po.FirstOffset, po.Error
		}
	}
	return 0, fmt.Errorf("no offsets for partition %d", partition)
}

// follow reads one partition forever from offset next. end is the partition's high-water
// mark at start: reaching it means the table holds everything written before fanout started.
func (f *Follower) follow(ctx context.Context, partition int, next, end int64, caughtUp bool) {
	log := f.cfg.Logger.With("topic", f.cfg.Topic, "partition", partition)
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		res, err := f.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: f.cfg.Topic, Partition: partition, Offset: next,
			MinBytes: 1, MaxBytes: f.cfg.MaxBytes, MaxWait: f.cfg.MaxWait,
		})
		if err == nil {
			err = res.Error
		}
		if errors.Is(err, kafka.OffsetOutOfRange) {
			// Only DeleteRecords moves the start of a compacted log (what it deleted is gone),
			// and only a re-created topic moves the end back; either way restart at the start.
			if first, lerr := f.firstOffset(ctx, partition); lerr == nil {
				log.Warn("subscriptions offset out of range; restarting at log start", "offset", next, "log_start", first)
				next = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("subscriptions fetch failed; retrying", "offset", next, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		n, seen, last, err := f.applyAll(log, res.Records, next)
		switch {
		case n > 0:
			next = last + 1
		case err == nil && seen == 0 && next < res.HighWatermark:
			// An empty answer below the high-water mark (which the broker captures before
			// reading) means the rest of the log up to it was compacted away or held only
			// control records: there is nothing to apply before the mark.
			next = res.HighWatermark
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("reading subscriptions records failed; refetching", "offset", next, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
		if !caughtUp && next >= end {
			caughtUp = true
			f.partitionCaughtUp()
		}
	}
}

// applyAll applies the records at or after offset from, returning how many it applied, how
// many it saw in all and the last offset applied. A fetch returns whole batches, so records
// before from are skipped.
func (f *Follower) applyAll(log *slog.Logger, rr kafka.RecordReader, from int64) (n, seen int, last int64, err error) {
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, seen, last, nil
		}
		if err != nil {
			return n, seen, last, err
		}
		seen++
		if r.Offset < from {
			continue
		}
		key, kerr := readBytes(r.Key)
		value, verr := readBytes(r.Value)
		if err := errors.Join(kerr, verr); err != nil {
			return n, seen, last, err
		}
		n, last = n+1, r.Offset
		c, changed, err := f.table.Apply(key, value)
		if err != nil {
			log.Warn("skipping bad subscription record", "offset", r.Offset, "event_id", c.EventID, "key", string(key), "error", err)
			continue
		}
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("subscription applied", "offset", r.Offset, "event_id", c.EventID, "gateway_id", c.GatewayID,
				"room_id", c.RoomID, "subscribed", c.Subscribed, "changed", changed)
		}
		if changed && f.cfg.OnApply != nil {
			f.cfg.OnApply(c)
		}
	}
}

// readBytes keeps nil distinct from empty: a nil value is a tombstone.
func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return protocol.ReadAll(b)
}
