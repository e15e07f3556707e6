package presence

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
)

// Publisher writes messages and returns once Kafka acknowledged them;
// *producer.Producer satisfies it.
type Publisher interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

var _ Publisher = (*producer.Producer)(nil)

// AnnouncerConfig configures an Announcer. Zero values mean the defaults given on each field.
type AnnouncerConfig struct {
	GatewayID string // required; must not contain "@"
	Addr      string // the gateway's address, carried in heartbeats; required
	Topic     string // the real name of chat.presence; required
	// Interval between heartbeats (default 10s: a third of DefaultExpiry, so two may be
	// lost before readers consider the gateway dead).
	Interval time.Duration
	// RetryDelay is the pause after a failed write before trying again (default 500ms).
	RetryDelay time.Duration
	// ShutdownTimeout bounds the final writes once Run's context ends (default 5s).
	ShutdownTimeout time.Duration
	Source          string // CloudEvents source (default "kchat/gateway/<GatewayID>")
	Logger          *slog.Logger
	Now             func() time.Time // default time.Now; tests move the clock
}

// Announcer publishes one gateway's presence: each user's connection count on it, keyed
// UserKey(user, gateway), and a heartbeat keyed GatewayKey(gateway) every Interval.
//
// Set never blocks: it records the latest count and wakes Run's single writer, which
// publishes whatever changed since its last write. Counts that change faster than Kafka
// takes them are coalesced (only the latest is written), and because one goroutine writes,
// each key's records reach the topic in the order of the Set calls. A failed write is
// retried with the then-latest counts. Set and Flush are safe for concurrent use.
type Announcer struct {
	pub       Publisher
	cfg       AnnouncerConfig
	startedAt time.Time

	mu        sync.Mutex
	current   map[string]entry    // user -> latest count; zero counts only until written
	dirty     map[string]struct{} // users whose latest count is not written yet
	gen       uint64              // incremented by every Set
	written   uint64              // every Set up to this generation is written
	writtenCh chan struct{}       // closed and replaced whenever written advances
	closed    bool

	wake chan struct{}
}

type entry struct {
	name        string
	connections int
}

// NewAnnouncer returns an announcer writing through pub. Nothing is written until Run.
func NewAnnouncer(pub Publisher, cfg AnnouncerConfig) (*Announcer, error) {
	if pub == nil || cfg.GatewayID == "" || cfg.Addr == "" || cfg.Topic == "" {
		return nil, errors.New("presence: publisher, GatewayID, Addr and Topic are required")
	}
	if strings.Contains(cfg.GatewayID, "@") {
		return nil, errors.New("presence: GatewayID must not contain @ (it separates user and gateway in keys)")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 500 * time.Millisecond
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Source == "" {
		cfg.Source = "kchat/gateway/" + cfg.GatewayID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Announcer{
		pub: pub, cfg: cfg, startedAt: cfg.Now().UTC(),
		current: map[string]entry{}, dirty: map[string]struct{}{},
		writtenCh: make(chan struct{}), wake: make(chan struct{}, 1),
	}, nil
}

// Set records that user has connections open on this gateway (0 when the last one closed).
// userName defaults to user. It never blocks; Run publishes the change. Calls after Run
// returned are ignored.
func (a *Announcer) Set(user, userName string, connections int) {
	if user == "" {
		return
	}
	if userName == "" {
		userName = user
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.current[user] = entry{name: userName, connections: max(connections, 0)}
	a.dirty[user] = struct{}{}
	a.gen++
	a.mu.Unlock()
	a.poke()
}

func (a *Announcer) poke() {
	select {
	case a.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this change too
	}
}

// Flush waits until every Set made before the call is written (Run must be running), or
// ctx ends.
func (a *Announcer) Flush(ctx context.Context) error {
	a.mu.Lock()
	target := a.gen
	a.mu.Unlock()
	a.poke()
	for {
		a.mu.Lock()
		done, ch := a.written >= target, a.writtenCh
		a.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Run heartbeats and publishes changes until ctx ends. Then it announces every user of
// this gateway offline and deletes the heartbeat (a tombstone), so readers drop the
// gateway's users at once instead of after the expiry, and returns nil. Write failures are
// logged and retried; they never end Run.
func (a *Announcer) Run(ctx context.Context) error {
	log := a.cfg.Logger.With("gateway_id", a.cfg.GatewayID, "topic", a.cfg.Topic)
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	var retry <-chan time.Time
	// The heartbeat goes first: readers ignore reports of a gateway they have no live
	// heartbeat from.
	heartbeatDue := true
	for {
		if heartbeatDue {
			if err := a.heartbeat(ctx); err != nil {
				log.Warn("cannot publish heartbeat; retrying", "error", err)
				retry = time.After(a.cfg.RetryDelay)
			} else {
				heartbeatDue = false
			}
		}
		if !heartbeatDue {
			if err := a.publishChanges(ctx); err != nil && ctx.Err() == nil {
				log.Warn("cannot publish presence; retrying", "error", err)
				retry = time.After(a.cfg.RetryDelay)
			}
		}
		select {
		case <-ctx.Done():
			return a.shutdown(context.WithoutCancel(ctx), log)
		case <-a.wake:
		case <-retry:
			retry = nil
		case <-tick.C:
			heartbeatDue = true
		}
	}
}

// shutdown writes every connected user offline and the heartbeat tombstone, within
// ShutdownTimeout. A failure only delays what readers learn until the heartbeat expires.
func (a *Announcer) shutdown(ctx context.Context, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	defer cancel()
	a.mu.Lock()
	a.closed = true
	for user, e := range a.current {
		if e.connections > 0 {
			a.current[user] = entry{name: e.name, connections: 0}
			a.dirty[user] = struct{}{}
		}
	}
	a.gen++
	a.mu.Unlock()
	err := a.publishChanges(ctx)
	if err == nil {
		err = a.pub.Write(ctx, kafka.Message{Topic: a.cfg.Topic, Key: []byte(GatewayKey(a.cfg.GatewayID))})
	}
	if err != nil {
		log.Warn("cannot announce shutdown; readers will expire this gateway", "error", err)
	} else {
		log.Info("presence withdrawn")
	}
	return nil
}

// heartbeat writes one gateway.heartbeat.
func (a *Announcer) heartbeat(ctx context.Context) error {
	a.mu.Lock()
	total := 0
	for _, e := range a.current {
		total += e.connections
	}
	a.mu.Unlock()
	now := a.cfg.Now().UTC()
	e, err := event.New(a.cfg.Source, event.GatewayHeartbeat{GatewayID: a.cfg.GatewayID, Addr: a.cfg.Addr,
		StartedAt: a.startedAt, At: now, Connections: total}, event.WithTime(now))
	if err != nil {
		return err
	}
	m, err := producer.Message(a.cfg.Topic, GatewayKey(a.cfg.GatewayID), e)
	if err != nil {
		return err
	}
	return a.pub.Write(ctx, m)
}

// publishChanges writes the latest count of every user changed since the last write, in
// one request. On failure the users stay dirty and the next call writes their (then
// latest) counts.
func (a *Announcer) publishChanges(ctx context.Context) error {
	a.mu.Lock()
	gen := a.gen
	batch := make(map[string]entry, len(a.dirty))
	for user := range a.dirty {
		batch[user] = a.current[user]
	}
	clear(a.dirty)
	a.mu.Unlock()

	err := a.write(ctx, batch)

	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		for user := range batch {
			a.dirty[user] = struct{}{}
		}
		return err
	}
	for user, e := range batch {
		// Forget users who left, unless a Set since the snapshot brought them back.
		if _, again := a.dirty[user]; !again && e.connections == 0 {
			delete(a.current, user)
		}
	}
	if gen > a.written {
		a.written = gen
		close(a.writtenCh)
		a.writtenCh = make(chan struct{})
	}
	return nil
}

func (a *Announcer) write(ctx context.Context, batch map[string]entry) error {
	if len(batch) == 0 {
		return nil
	}
	now := a.cfg.Now().UTC()
	msgs := make([]kafka.Message, 0, len(batch))
	// Sorted so that a batch's records are written in a deterministic order.
	for _, user := range slices.Sorted(maps.Keys(batch)) {
		e := batch[user]
		status := event.StatusOnline
		if e.connections == 0 {
			status = event.StatusOffline
		}
		env, err := event.New(a.cfg.Source, event.PresenceChanged{User: user, UserName: e.name, Status: status,
			GatewayID: a.cfg.GatewayID, Connections: e.connections, At: now}, event.WithTime(now))
		if err != nil {
			// Only a malformed user id gets here; retrying cannot fix it.
			a.cfg.Logger.Error("dropping unpublishable presence", "user", user, "error", err)
			continue
		}
		m, err := producer.Message(a.cfg.Topic, UserKey(user, a.cfg.GatewayID), env)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	return a.pub.Write(ctx, msgs...)
}
