package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/compacted"
	"github.com/kchat/kchat/pkg/kafkasec"
)

// ErrNotCaughtUp is View.Check's answer until the view has read the whole topic as it
// was when Run started.
var ErrNotCaughtUp = errors.New("presence view not caught up with the presence topic")

// Fetcher is the part of *kafka.Client a View needs.
type Fetcher = compacted.Fetcher

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
	Client  Fetcher          // default a *kafka.Client on Brokers, secured by Security
	// Security secures the default Client's connections; the zero value is PLAINTEXT.
	Security kafkasec.Security
}

// View is the presence table of the whole cluster, read from chat.presence. Run follows
// every partition from its beginning without a consumer group (every reader needs the
// whole table, and there is nothing to commit) and keeps following it. Until Ready, the
// view may lack records written before Run started. Its methods are safe for concurrent use.
type View struct {
	cfg ViewConfig

	mu    sync.RWMutex
	state *State

	f *compacted.Follower
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
		cfg.Client = &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10*time.Second + cfg.MaxWait,
			Transport: cfg.Security.RoundTripper()}
	}
	v := &View{cfg: cfg, state: NewState(cfg.Expiry)}
	f, err := compacted.New(compacted.Config{Topic: cfg.Topic, Name: "presence", MaxWait: cfg.MaxWait, Logger: cfg.Logger}, cfg.Client, v.apply)
	if err != nil {
		return nil, err
	}
	v.f = f
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
func (v *View) Ready() bool { return v.f.Ready() }

// CaughtUp is closed once Ready holds.
func (v *View) CaughtUp() <-chan struct{} { return v.f.CaughtUp() }

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
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-v.f.CaughtUp():
			v.cfg.Logger.Info("presence view caught up", "topic", v.cfg.Topic, "online_users", len(v.OnlineUsers()))
		case <-done:
		}
	}()
	return v.f.Run(ctx)
}

// apply applies one record. A record that does not parse is skipped (by the follower,
// which logs the error): one bad record must not stop presence for everyone.
func (v *View) apply(r compacted.Record) error {
	v.mu.Lock()
	e, err := v.state.ApplyRecord(r.Key, r.Value)
	v.mu.Unlock()
	if err != nil {
		return fmt.Errorf("event %q: %w", e.ID, err)
	}
	return nil
}
