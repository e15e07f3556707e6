// Package fetcher reads many partitions of a Kafka cluster with one fetch request per
// partition leader at a time, where kafka-go's Reader sends one per partition.
//
// A kafka-go Reader runs one fetch loop per partition: a consumer of 12 partitions keeps
// 12 fetches in flight, each answered as soon as its own partition has one record. Under
// load that is about one fetch request per record and reader, and idle it is a request
// per partition every MaxWait. Answering those fetches was the brokers' largest single
// cost in kchat's profile (docs/architecture.md, "What a message costs"). A fetch naming
// every partition a broker leads is answered as soon as any of them has data and carries
// all of them, the way the Java consumer and franz-go fetch.
package fetcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/metadata"
)

// Partition names one partition of a topic.
type Partition struct {
	Topic string
	ID    int
}

func (p Partition) String() string { return fmt.Sprintf("%s/%d", p.Topic, p.ID) }

// Config configures a Fetcher. Zero values mean the defaults given on each field.
type Config struct {
	Brokers  []string
	Security kafkasec.Security
	// MaxWait is how long a broker holds a fetch for which none of its partitions has
	// data (default 250ms): it bounds an idle consumer's requests, not latency, since a
	// fetch is answered as soon as one record arrives.
	MaxWait time.Duration
	// MinBytes is how much data a broker waits for before answering a fetch (default 1:
	// the first record). Above 1, MaxWait is also how late a record may be handed over, and
	// a consumer makes about one request per broker per MaxWait whatever the rate: for
	// consumers nobody waits for, since each request costs a broker more than the records
	// in it (docs/architecture.md, "What a message costs").
	MinBytes int
	// MaxBytes bounds one response (default 1 MiB) and PartitionMaxBytes each partition's
	// share of it (default 256 KiB); a record larger than either still comes, alone. They
	// are small because a response is decoded whole, decompression included, before the
	// fetch returns: a consumer catching up on a backlog of small lz4 batches (kafka-go's
	// lz4 reader takes a 4 MiB buffer per batch) took longer than the fetch deadline with
	// 10 MiB responses under the race detector, and fetched the same offsets again forever.
	MaxBytes          int
	PartitionMaxBytes int
	// MetadataTTL is how often partition leaders are looked up again when nothing failed
	// (default 6s, kafka-go's). A fetch that fails (the broker is gone, or refuses as no
	// longer the leader) drops the cached leaders at once instead.
	MetadataTTL time.Duration
	// ResetOffset is where a partition whose offset is out of range, or has none yet
	// (kafka.FirstOffset or kafka.LastOffset as a start), is read from: kafka.FirstOffset
	// (the default) or kafka.LastOffset.
	ResetOffset int64
	Logger      *slog.Logger
}

// Batch is what one fetch brought for one partition, in offset order: records at and
// after the offset asked for, and the partition's high watermark at the time.
type Batch struct {
	Partition     Partition
	Messages      []kafka.Message
	HighWatermark int64
}

// Fetcher reads partitions. It holds connections (through a kafka-go Transport) and may
// run many times, one Run at a time.
type Fetcher struct {
	cfg       Config
	transport *kafka.Transport
	client    *kafka.Client
	log       *slog.Logger
	layout    *metadata.Refresher
}

// New returns a Fetcher; Close releases its connections.
func New(cfg Config) (*Fetcher, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("fetcher: Brokers are required")
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 250 * time.Millisecond
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.MinBytes <= 0 {
		cfg.MinBytes = 1
	}
	if cfg.PartitionMaxBytes == 0 {
		cfg.PartitionMaxBytes = 256 << 10
	}
	if cfg.MetadataTTL == 0 {
		cfg.MetadataTTL = 6 * time.Second
	}
	if cfg.ResetOffset == 0 {
		cfg.ResetOffset = kafka.FirstOffset
	}
	if cfg.ResetOffset != kafka.FirstOffset && cfg.ResetOffset != kafka.LastOffset {
		return nil, fmt.Errorf("fetcher: ResetOffset %d is neither kafka.FirstOffset nor kafka.LastOffset", cfg.ResetOffset)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := cfg.Security.Secure(&kafka.Transport{MetadataTTL: cfg.MetadataTTL, IdleTimeout: time.Minute})
	return &Fetcher{
		cfg: cfg, transport: t, log: log, layout: metadata.NewRefresher(t, retryDelay),
		client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: t},
	}, nil
}

// retryDelay caps the pause before partitions whose fetch failed are fetched again:
// during a failover they move to the new leader within this long of Kafka electing it.
const retryDelay = 250 * time.Millisecond

// Close closes the Fetcher's idle connections.
func (f *Fetcher) Close() error {
	f.transport.CloseIdleConnections()
	return nil
}

// Run reads the partitions of start, each from its offset (or from ResetOffset where the
// offset is kafka.FirstOffset or kafka.LastOffset), and hands every batch to deliver
// until ctx ends. It returns the offset each partition is to be read from next.
//
// Batches of one partition are delivered one at a time and in offset order; batches of
// partitions led by different brokers may be delivered concurrently. The next fetch from
// a broker waits for deliver to return for everything the last one brought, so a slow
// deliver holds reading back instead of filling memory. A deliver error ends Run.
// Network errors, leader changes and brokers that are down are retried without end, and
// only the partitions of the broker that failed wait for that: the others go on.
func (f *Fetcher) Run(ctx context.Context, start map[Partition]int64, deliver func(context.Context, Batch) error) (map[Partition]int64, error) {
	r := &run{f: f, ctx: ctx, deliver: deliver, next: make(map[Partition]int64, len(start)), loops: map[int]*leaderLoop{},
		ended: make(chan ended), backoff: backoff.New(20*time.Millisecond, retryDelay)}
	for p, o := range start {
		r.next[p] = o
		r.pending = append(r.pending, p)
	}
	return r.loop(ctx)
}

// run is one Run: every partition is either pending (waiting for a leader, an offset or
// the end of a backoff) or owned by exactly one leaderLoop, which fetches it from a broker.
type run struct {
	f       *Fetcher
	ctx     context.Context // Run's
	deliver func(context.Context, Batch) error

	mu   sync.Mutex // guards next: each leaderLoop writes only the partitions it owns
	next map[Partition]int64

	pending []Partition
	loops   map[int]*leaderLoop // by broker id; at most one per broker
	ended   chan ended
	backoff *backoff.Backoff

	failures int
	lastWarn time.Time
}

type leaderLoop struct {
	parts  []Partition
	cancel context.CancelFunc
}

// ended is a leaderLoop that returned: its partitions are pending again.
type ended struct {
	leader  int
	parts   []Partition
	fetched bool
	err     error
}

func (r *run) loop(ctx context.Context) (map[Partition]int64, error) {
	var retry <-chan time.Time
	var failed error
	for {
		if retry == nil && failed == nil && ctx.Err() == nil && len(r.pending) > 0 {
			if err := r.assign(ctx); err != nil {
				retry = r.fail(err)
			}
		}
		if len(r.loops) == 0 && (ctx.Err() != nil || failed != nil) {
			return r.next, failed
		}
		select {
		case e := <-r.ended:
			delete(r.loops, e.leader)
			r.pending = append(r.pending, e.parts...)
			if e.fetched {
				r.backoff.Reset()
			}
			var de deliverError
			switch {
			case errors.As(e.err, &de):
				// The caller's error ends Run: stop every loop and return it.
				failed = de.err
				for _, l := range r.loops {
					l.cancel()
				}
			case e.err == nil || errors.Is(e.err, context.Canceled) || errors.Is(e.err, errReposition):
				// Stopped to be merged with other partitions of its broker, or to look
				// an offset up again: no reason to wait.
			default:
				if retry == nil {
					retry = r.fail(e.err)
				}
			}
		case <-retry:
			retry = nil
		case <-ctx.Done():
			// The loops end with ctx; wait for them.
			for len(r.loops) > 0 {
				e := <-r.ended
				delete(r.loops, e.leader)
			}
			return r.next, failed
		}
	}
}

// fail notes a failure, drops the cached leaders and returns when to try the pending
// partitions again.
func (r *run) fail(err error) <-chan time.Time {
	r.f.layout.Refresh()
	// A leader change ends a loop now and then; a broker that stays down ends many.
	r.failures++
	if time.Since(r.lastWarn) >= 5*time.Second {
		r.f.log.Warn("fetch failed; looking the leaders up again", "error", err, "failures", r.failures)
		r.lastWarn, r.failures = time.Now(), 0
	}
	return time.After(r.backoff.Next())
}

// assign starts a leaderLoop for the pending partitions of each broker that has none.
// Where a broker already has one, it is stopped instead, and its partitions and the new
// ones start together once it returned: one fetch per broker, however leaders moved.
func (r *run) assign(ctx context.Context) error {
	if err := r.resolvePending(ctx); err != nil {
		return err
	}
	byLeader, leaderless, err := r.f.leaders(ctx, r.pending)
	if err != nil {
		return err
	}
	r.pending = leaderless
	for leader, parts := range byLeader {
		if l, ok := r.loops[leader]; ok {
			l.cancel()
			r.pending = append(r.pending, parts...)
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		r.loops[leader] = &leaderLoop{parts: parts, cancel: cancel}
		go func() {
			fetched, err := r.fetchLoop(lctx, parts)
			cancel()
			r.ended <- ended{leader, parts, fetched, err}
		}()
	}
	if len(leaderless) > 0 {
		return fmt.Errorf("%d partitions have no leader, %s among them", len(leaderless), leaderless[0])
	}
	return nil
}

// resolvePending resolves the start offsets of pending partitions.
func (r *run) resolvePending(ctx context.Context) error {
	r.mu.Lock()
	sub := make(map[Partition]int64, len(r.pending))
	for _, p := range r.pending {
		if o := r.next[p]; o == kafka.FirstOffset || o == kafka.LastOffset {
			sub[p] = o
		}
	}
	r.mu.Unlock()
	if len(sub) == 0 {
		return nil
	}
	if err := r.f.resolveInPlace(ctx, sub); err != nil {
		return err
	}
	r.mu.Lock()
	maps.Copy(r.next, sub)
	r.mu.Unlock()
	return nil
}

// deliverError marks the caller's error, which ends Run, from Kafka's, which are retried.
type deliverError struct{ err error }

func (e deliverError) Error() string { return e.err.Error() }

var (
	errReposition = errors.New("fetcher: an offset is out of range")
	errMoved      = errors.New("fetcher: a partition has a new leader")
)

// leaders groups the partitions by their current leader; leaderless ones have none now.
func (f *Fetcher) leaders(ctx context.Context, parts []Partition) (byLeader map[int][]Partition, leaderless []Partition, err error) {
	topics := map[string]bool{}
	for _, p := range parts {
		topics[p.Topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	md, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: %w", err)
	}
	leader := map[Partition]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			if p.Error == nil && p.Leader.ID >= 0 {
				leader[Partition{t.Name, p.ID}] = p.Leader.ID
			}
		}
	}
	byLeader = map[int][]Partition{}
	for _, p := range parts {
		id, ok := leader[p]
		if !ok {
			leaderless = append(leaderless, p)
			continue
		}
		byLeader[id] = append(byLeader[id], p)
	}
	for _, ps := range byLeader {
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].Topic != ps[j].Topic {
				return ps[i].Topic < ps[j].Topic
			}
			return ps[i].ID < ps[j].ID
		})
	}
	return byLeader, leaderless, nil
}

// Resolve returns start with the offsets kafka.FirstOffset and kafka.LastOffset replaced
// by the partitions' current first and last offsets: a reader that must see everything
// written after a point (a gateway that announces itself ready) resolves first, then Runs.
func (f *Fetcher) Resolve(ctx context.Context, start map[Partition]int64) (map[Partition]int64, error) {
	next := make(map[Partition]int64, len(start))
	for p, o := range start {
		next[p] = o
	}
	return next, f.resolveInPlace(ctx, next)
}

func (f *Fetcher) resolveInPlace(ctx context.Context, next map[Partition]int64) error {
	req := map[string][]kafka.OffsetRequest{}
	for p, o := range next {
		if o == kafka.FirstOffset || o == kafka.LastOffset {
			req[p.Topic] = append(req[p.Topic], kafka.OffsetRequest{Partition: p.ID, Timestamp: o})
		}
	}
	if len(req) == 0 {
		return nil
	}
	res, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	for topic, ps := range res.Topics {
		for _, po := range ps {
			if po.Error != nil {
				return fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
			}
			p := Partition{topic, po.Partition}
			switch next[p] {
			case kafka.FirstOffset:
				next[p] = po.FirstOffset
			case kafka.LastOffset:
				next[p] = po.LastOffset
			}
		}
	}
	for p, o := range next {
		if o == kafka.FirstOffset || o == kafka.LastOffset {
			return fmt.Errorf("list offsets: no answer for %s/%d", p.Topic, p.ID)
		}
	}
	return nil
}
