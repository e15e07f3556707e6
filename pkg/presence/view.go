package presence

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

// ErrNotCaughtUp is View.Check's answer until the view has read the whole topic as it
// was when Run started.
var ErrNotCaughtUp = errors.New("presence view not caught up with the presence topic")

// Fetcher is the part of *kafka.Client a View needs.
type Fetcher interface {
	Metadata(context.Context, *kafka.MetadataRequest) (*kafka.MetadataResponse, error)
	ListOffsets(context.Context, *kafka.ListOffsetsRequest) (*kafka.ListOffsetsResponse, error)
	Fetch(context.Context, *kafka.FetchRequest) (*kafka.FetchResponse, error)
}

var _ Fetcher = (*kafka.Client)(nil)

// ViewConfig configures a View. Zero values mean the defaults given on each field.
type ViewConfig struct {
	Brokers []string // required unless Client is set
	Topic   string   // the real name of chat.presence; required
	// Expiry is how long a gateway counts as live after its last heartbeat (default
	// DefaultExpiry). It must exceed the gateways' heartbeat interval with room to spare.
	Expiry time.Duration
	// MaxWait is how long one fetch waits for new records at the end of the log (default 500ms).
	MaxWait time.Duration
	Logger  *slog.Logger
	Now     func() time.Time // default time.Now
	Client  Fetcher          // default a *kafka.Client on Brokers
}

// View is the presence table of the whole cluster, read from chat.presence. Run follows
// every partition from its beginning without a consumer group (every reader needs the
// whole table, and there is nothing to commit) and keeps following it. Until Ready, the
// view may lack records written before Run started. Its methods are safe for concurrent use.
type View struct {
	cfg ViewConfig

	mu    sync.RWMutex
	state *State

	pending   atomic.Int64 // partitions not yet caught up; -1 until Run listed them
	caughtUp  chan struct{}
	closeOnce sync.Once
}

// NewView returns a view; nothing is read until Run.
func NewView(cfg ViewConfig) (*View, error) {
	if cfg.Topic == "" || (cfg.Client == nil && len(cfg.Brokers) == 0) {
		return nil, errors.New("presence: Topic and Brokers (or Client) are required")
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = DefaultExpiry
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		// The timeout must outlast a fetch that waits MaxWait at the end of the log.
		cfg.Client = &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10*time.Second + cfg.MaxWait}
	}
	v := &View{cfg: cfg, state: NewState(cfg.Expiry), caughtUp: make(chan struct{})}
	v.pending.Store(-1)
	return v, nil
}

// Online reports whether user has a connection on a live gateway now.
func (v *View) Online(user string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.state.Online(user, v.cfg.Now())
}

// Connections returns user's open connections on live gateways now.
func (v *View) Connections(user string) int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.state.Connections(user, v.cfg.Now())
}

// OnlineUsers returns the users online now, sorted.
func (v *View) OnlineUsers() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.state.OnlineUsers(v.cfg.Now())
}

// Ready reports whether the view has read every partition up to its end offset as of
// Run's start, i.e. whether it reflects everything published before this process started.
func (v *View) Ready() bool {
	select {
	case <-v.caughtUp:
		return true
	default:
		return false
	}
}

// CaughtUp is closed once Ready holds.
func (v *View) CaughtUp() <-chan struct{} { return v.caughtUp }

// Check is Ready as a readiness check (service.Check).
func (v *View) Check(context.Context) error {
	if v.Ready() {
		return nil
	}
	return ErrNotCaughtUp
}

// Run follows the topic until ctx ends, then returns nil. It returns an error only if the
// topic's partitions cannot be listed at start; later fetch errors are logged and retried
// with backoff, because a slightly stale view is better than none while Kafka recovers.
// Partitions added after Run started are not followed until the next start.
func (v *View) Run(ctx context.Context) error {
	starts, ends, err := v.bounds(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	v.pending.Store(int64(len(starts)))
	var wg sync.WaitGroup
	for p, start := range starts {
		end := ends[p]
		v.cfg.Logger.Debug("following presence partition", "topic", v.cfg.Topic, "partition", p,
			"from_offset", start, "catch_up_to", end)
		if start >= end {
			v.partitionCaughtUp()
		}
		wg.Go(func() { v.follow(ctx, p, start, end, start >= end) })
	}
	wg.Wait()
	return nil
}

func (v *View) partitionCaughtUp() {
	if v.pending.Add(-1) == 0 {
		v.closeOnce.Do(func() {
			v.cfg.Logger.Info("presence view caught up", "topic", v.cfg.Topic, "online_users", len(v.OnlineUsers()))
			close(v.caughtUp)
		})
	}
}

// bounds lists the partitions with their first and end offsets, retrying while the
// cluster is unreachable or the topic is not there yet.
func (v *View) bounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		starts, ends, err = v.listBounds(ctx)
		if err == nil {
			return starts, ends, nil
		}
		if attempt == 10 {
			return nil, nil, fmt.Errorf("cannot list offsets of %s: %w", v.cfg.Topic, err)
		}
		v.cfg.Logger.Warn("cannot list presence offsets; retrying", "topic", v.cfg.Topic, "error", err)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (v *View) listBounds(ctx context.Context) (starts, ends map[int]int64, err error) {
	md, err := v.cfg.Client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{v.cfg.Topic}})
	if err != nil {
		return nil, nil, err
	}
	if len(md.Topics) != 1 {
		return nil, nil, fmt.Errorf("metadata for %s lists %d topics", v.cfg.Topic, len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, nil, err
	}
	if len(md.Topics[0].Partitions) == 0 {
		return nil, nil, fmt.Errorf("topic %s has no partitions", v.cfg.Topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := v.cfg.Client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{v.cfg.Topic: reqs}})
	if err != nil {
		return nil, nil, err
	}
	starts, ends = map[int]int64{}, map[int]int64{}
	for _, po := range res.Topics[v.cfg.Topic] {
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

func (v *View) firstOffset(ctx context.Context, partition int) (int64, error) {
	res, err := v.cfg.Client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{v.cfg.Topic: {kafka.FirstOffsetOf(partition)}},
	})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[v.cfg.Topic] {
		if po.Partition == partition {
			return po.FirstOffset, po.Error
		}
	}
	return 0, fmt.Errorf("no offsets for partition %d", partition)
}

// follow reads one partition from offset next until ctx ends. end is the partition's end
// offset at start: reaching it means the view holds everything written before Run started.
func (v *View) follow(ctx context.Context, partition int, next, end int64, caughtUp bool) {
	log := v.cfg.Logger.With("topic", v.cfg.Topic, "partition", partition)
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		res, err := v.cfg.Client.Fetch(ctx, &kafka.FetchRequest{
			Topic: v.cfg.Topic, Partition: partition, Offset: next,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: v.cfg.MaxWait,
		})
		if err == nil {
			err = res.Error
		}
		if errors.Is(err, kafka.OffsetOutOfRange) {
			// Only DeleteRecords moves the start of a compacted log, and only a re-created
			// topic moves its end back; either way, start over at the log start.
			if first, lerr := v.firstOffset(ctx, partition); lerr == nil {
				log.Warn("presence offset out of range; restarting at log start", "offset", next, "log_start", first)
				next = first
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("presence fetch failed; retrying", "offset", next, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		n, seen, last, err := v.applyAll(log, res.Records, next)
		switch {
		case n > 0:
			next = last + 1
		case err == nil && seen == 0 && next < res.HighWatermark:
			// An empty answer below the high-water mark means the rest of the log up to it
			// was compacted away or held only control records.
			next = res.HighWatermark
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("reading presence records failed; refetching", "offset", next, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
		if !caughtUp && next >= end {
			caughtUp = true
			v.partitionCaughtUp()
		}
	}
}

// applyAll applies the records at or after offset from and returns how many it applied,
// how many it saw and the last offset applied. A fetch returns whole batches, so records
// before from are skipped. A record that does not parse is logged and skipped: one bad
// record must not stop presence for everyone.
func (v *View) applyAll(log *slog.Logger, rr kafka.RecordReader, from int64) (n, seen int, last int64, err error) {
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
		v.mu.Lock()
		e, aerr := v.state.ApplyRecord(key, value)
		v.mu.Unlock()
		if aerr != nil {
			log.Warn("skipping bad presence record", "offset", r.Offset, "event_id", e.ID, "key", string(key), "error", aerr)
			continue
		}
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("presence applied", "offset", r.Offset, "event_id", e.ID, "key", string(key), "tombstone", value == nil)
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
