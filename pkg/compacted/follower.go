// Package compacted follows a compacted topic as a table: every partition from its start,
// without a consumer group (every reader needs the whole table, and nothing is committed),
// applying each record to the caller's state and then following the topic for good. It is
// the one reader behind pkg/presence's View and fanout's routing table.
package compacted

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

	"github.com/kchat/kchat/pkg/backoff"
)

// Fetcher is the part of *kafka.Client a Follower needs.
type Fetcher interface {
	Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	ListOffsets(context.Context, *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
	Fetch(context.Context, *kafka.FetchRequest) (*kafka.FetchResponse, error)
}

var _ Fetcher = (*kafka.Client)(nil)

// Record is one record as the follower hands it over. Value is nil for a tombstone (an
// empty value stays empty).
type Record struct {
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
}

// ApplyFunc applies one record to the caller's state. An error marks a record that cannot
// be interpreted: it is logged and skipped (a table read without a group has no
// dead-letter path, and one bad record must not stop the table for everyone). ApplyFunc
// is called from one goroutine per partition: records of one key, which share a
// partition, arrive in offset order; records of different partitions concurrently.
type ApplyFunc func(Record) error

// Config configures a Follower. Zero values mean the defaults given on each field.
type Config struct {
	Topic string // the real topic name; required
	// Name says what is followed in log lines (default "compacted topic").
	Name string
	// MaxWait is how long one fetch waits for new records at the end of the log (default 500ms).
	MaxWait time.Duration
	// MaxBytes bounds one fetch response (default 4 MiB).
	MaxBytes int64
	// ListAttempts bounds the tries to list the topic's partitions at start, with backoff
	// up to 5s between them (default 10, about half a minute: topics may still be in creation).
	ListAttempts int
	Logger       *slog.Logger
}

// Follower reads one compacted topic into the caller's state; see the package comment.
type Follower struct {
	cfg    Config
	client Fetcher
	apply  ApplyFunc

	pending   atomic.Int64 // partitions not yet caught up; -1 until Run has listed them
	caughtUp  chan struct{}
	closeOnce sync.Once
}

// New returns a follower; nothing is read until Run.
func New(cfg Config, client Fetcher, apply ApplyFunc) (*Follower, error) {
	if cfg.Topic == "" || client == nil || apply == nil {
		return nil, errors.New("compacted: Topic, client and apply are required")
	}
	if cfg.Name == "" {
		cfg.Name = "compacted topic"
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.ListAttempts <= 0 {
		cfg.ListAttempts = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Follower{cfg: cfg, client: client, apply: apply, caughtUp: make(chan struct{})}
	f.pending.Store(-1)
	return f, nil
}

// CaughtUp is closed once every partition was read up to its end offset as of Run's
// start: the state then holds everything written before Run started.
func (f *Follower) CaughtUp() <-chan struct{} { return f.caughtUp }

// Ready reports whether CaughtUp is closed.
func (f *Follower) Ready() bool {
	select {
	case <-f.caughtUp:
		return true
	default:
		return false
	}
}

// Run follows the topic until ctx ends, then returns nil. It returns an error only if the
// topic's partitions cannot be listed at start; later fetch errors are logged and retried
// with backoff, because a slightly stale table is better than none while Kafka recovers.
// Partitions added after Run started are not followed until the next start.
func (f *Follower) Run(ctx context.Context) error {
	starts, ends, err := f.bounds(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	f.pending.Store(int64(len(starts)))
	var wg sync.WaitGroup
	for p, start := range starts {
		end := ends[p]
		f.cfg.Logger.Debug("following partition", "what", f.cfg.Name, "topic", f.cfg.Topic, "partition", p,
			"from_offset", start, "catch_up_to", end)
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
		f.closeOnce.Do(func() { close(f.caughtUp) })
	}
}

// bounds lists the partitions with their first and end (high-water) offsets, retrying
// while the cluster is unreachable or the topic is not there yet.
func (f *Follower) bounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	b := backoff.New(200*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		starts, ends, err = f.listBounds(ctx)
		if err == nil {
			return starts, ends, nil
		}
		if attempt >= f.cfg.ListAttempts {
			return nil, nil, fmt.Errorf("cannot list offsets of %s: %w", f.cfg.Topic, err)
		}
		f.cfg.Logger.Warn("cannot list offsets; retrying", "what", f.cfg.Name, "topic", f.cfg.Topic, "error", err)
		if err := b.Wait(ctx); err != nil {
			return nil, nil, err
		}
	}
}

func (f *Follower) listBounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	md, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{f.cfg.Topic}})
	if err != nil {
		return nil, nil, err
	}
	if len(md.Topics) != 1 {
		return nil, nil, fmt.Errorf("metadata for %s lists %d topics", f.cfg.Topic, len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, nil, err
	}
	if len(md.Topics[0].Partitions) == 0 {
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

// follow reads one partition from offset next until ctx ends. end is the partition's end
// offset at start: reaching it means the state holds everything written before Run started.
func (f *Follower) follow(ctx context.Context, partition int, next, end int64, caughtUp bool) {
	log := f.cfg.Logger.With("what", f.cfg.Name, "topic", f.cfg.Topic, "partition", partition)
	b := backoff.New(100*time.Millisecond, 5*time.Second)
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
				log.Warn("offset out of range; restarting at log start", "offset", next, "log_start", first)
				next = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("fetch failed; retrying", "offset", next, "error", err)
			if b.Wait(ctx) != nil {
				return
			}
			continue
		}
		b.Reset()
		n, seen, last, err := f.applyAll(log, partition, res.Records, next)
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
			log.Warn("reading records failed; refetching", "offset", next, "error", err)
			_ = b.Wait(ctx) // an error is ctx's, which ends the loop

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
func (f *Follower) applyAll(log *slog.Logger, partition int, rr kafka.RecordReader, from int64) (n, seen int, last int64, err error) {
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
		if err := f.apply(Record{Partition: partition, Offset: r.Offset, Key: key, Value: value}); err != nil {
			log.Warn("skipping bad record", "offset", r.Offset, "key", string(key), "error", err)
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
