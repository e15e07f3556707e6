// Package hub is the gateway's chat core: it tracks connections (sessions), which rooms
// each follows and how far, routes events read from Kafka to them, and announces the
// gateway's subscriptions and presence. It sits between the transport (bytes on
// WebSockets) and the broker (Kafka); neither knows about the other.
//
// Delivery rule, per connection and room: entries go out in seq order, each once. A live
// entry at cursor+1 is queued; at or below the cursor it is a duplicate and dropped; above
// cursor+1 it reveals a gap and the room is filled from PostgreSQL first. A queue that
// overflows is not waited for: its timeline frames are dropped and the connection is fed
// from PostgreSQL until current (catch-up), so a slow client never delays anyone else.
package hub

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/broker"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/metrics"
	"github.com/kchat/kchat/services/gateway/internal/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// Chat is the request logic the hub's sessions call (*chat.Service).
type Chat interface {
	Authenticate(ctx context.Context, token, kind string) (chat.User, error)
	NewReconnectToken(ctx context.Context, u chat.User) (auth.Token, error)
	Send(ctx context.Context, u chat.User, req chat.SendRequest) (protocol.Ack, error)
	OpenDM(ctx context.Context, u chat.User, to string) (store.Room, chat.User, error)
	Access(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Join(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Leave(ctx context.Context, u chat.User, roomID string) error
	Rooms(ctx context.Context, u chat.User) (protocol.RoomList, error)
	RoomsOf(ctx context.Context, u chat.User) ([]store.Room, error)
	History(ctx context.Context, u chat.User, roomID string, q chat.HistoryQuery) (protocol.HistoryPage, error)
	PublishTyping(ctx context.Context, u chat.User, room string) error
	Accepted() int64
}

var _ Chat = (*chat.Service)(nil)

// Timeline is the PostgreSQL reading the hub does itself (*store.Store).
type Timeline interface {
	MessagesAfter(ctx context.Context, roomID string, after int64, limit int) ([]store.Message, error)
	LastSeqs(ctx context.Context, roomIDs []string) (map[string]int64, error)
	MembershipsSince(ctx context.Context, userIDs []string, since time.Time) ([]store.Membership, time.Time, error)
}

var _ Timeline = (*store.Store)(nil)

// Announcer publishes what other services need to know about this gateway (*broker.Broker).
type Announcer interface {
	AnnounceSubscriptions(ctx context.Context, changes []broker.SubscriptionChange) error
	PublishPresence(ctx context.Context, ps []event.PresenceChanged) error
	PublishHeartbeat(ctx context.Context, hb event.GatewayHeartbeat) error
}

var _ Announcer = (*broker.Broker)(nil)

// Config tunes the hub. Zero values take the defaults noted.
type Config struct {
	GatewayID      string
	Addr           string // advertised in heartbeats
	Limits         protocol.Limits
	AuthTimeout    time.Duration // a connection must authenticate within this (default 10s)
	RecheckDelay   time.Duration // tail re-read after a fresh subscription is announced (default 1.5s)
	Reannounce     time.Duration // re-announce subscriptions and presence, re-check tails (default 30s)
	MembershipPoll time.Duration // pick up rooms joined elsewhere, e.g. new DMs (default 2s)
	Heartbeat      time.Duration // default 10s
	CatchUpTimeout time.Duration // longest a connection may stay in catch-up before 4008 (default 30s)
	StallTimeout   time.Duration // longest a fill waits for queue space before 4008 (default 15s)
	FillPage       int           // rows per PostgreSQL read when filling (default 200)
	TypingInterval time.Duration // at most one typing signal per connection and room per interval (default 2s)
	Now            func() time.Time
}

func (c *Config) setDefaults() {
	c.Limits = c.Limits.WithDefaults()
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.RecheckDelay, 1500*time.Millisecond)
	def(&c.Reannounce, 30*time.Second)
	def(&c.MembershipPoll, 2*time.Second)
	def(&c.Heartbeat, 10*time.Second)
	def(&c.CatchUpTimeout, 30*time.Second)
	def(&c.StallTimeout, 15*time.Second)
	def(&c.TypingInterval, 2*time.Second)
	if c.FillPage <= 0 {
		c.FillPage = 200
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Hub owns every session of this gateway. Safe for concurrent use.
type Hub struct {
	cfg      Config
	chat     Chat
	timeline Timeline
	ann      Announcer
	metrics  *metrics.Metrics
	log      *slog.Logger
	presence *PresenceView
	started  time.Time

	mu        sync.Mutex
	sessions  map[*Session]struct{}
	byUser    map[string]map[*Session]struct{}
	names     map[string]string // user id -> username, for presence reports
	rooms     map[string]map[*Session]struct{}
	dirtyRoom map[string]bool // subscription state changed, not yet announced
	dirtyUser map[string]bool // presence changed, not yet published
	wake      chan struct{}
	draining  bool

	messagesOut  atomic.Int64
	slowSwitches atomic.Int64
	slowCloses   atomic.Int64
}

// New returns a hub. m and log may be nil.
func New(cfg Config, c Chat, tl Timeline, ann Announcer, m *metrics.Metrics, log *slog.Logger) (*Hub, error) {
	if cfg.GatewayID == "" || c == nil || tl == nil || ann == nil {
		return nil, errors.New("hub: GatewayID, chat, timeline and announcer are required")
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		cfg: cfg, chat: c, timeline: tl, ann: ann, metrics: m, log: log,
		presence: NewPresenceView(cfg.GatewayID, 3*cfg.Heartbeat+5*time.Second),
		started:  cfg.Now(),
		sessions: map[*Session]struct{}{}, byUser: map[string]map[*Session]struct{}{}, names: map[string]string{},
		rooms: map[string]map[*Session]struct{}{}, dirtyRoom: map[string]bool{}, dirtyUser: map[string]bool{},
		wake: make(chan struct{}, 1),
	}, nil
}

// metric selectors for Metrics.Inc.
func slowSwitch(m *metrics.Metrics) prometheus.Counter { return m.SlowSwitches }
func slowClose(m *metrics.Metrics) prometheus.Counter  { return m.SlowCloses }
func duplicate(m *metrics.Metrics) prometheus.Counter  { return m.Duplicates }
func gapFill(m *metrics.Metrics) prometheus.Counter    { return m.GapFills }

// Open implements transport.Opener: a new connection, authenticated at once when the
// upgrade request carried ?token=.
func (h *Hub) Open(ctx context.Context, c *transport.Conn, r *http.Request) transport.Session {
	s := h.Attach(c)
	if tok := r.URL.Query().Get("token"); tok != "" {
		s.authenticate(ctx, tok, "", "")
	}
	return s
}

// Attach registers a session for an outbound connection (Open without HTTP, for tests).
func (h *Hub) Attach(out Outbound) *Session {
	s := newSession(h, out)
	h.mu.Lock()
	draining := h.draining
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
	if h.metrics != nil {
		h.metrics.Connections.Inc()
	}
	if draining {
		s.shutdown()
		return s
	}
	time.AfterFunc(h.cfg.AuthTimeout, func() {
		if s.User() == nil {
			s.rejectAuth("", protocol.NewError(protocol.CodeUnauthorized, "no authentication within "+h.cfg.AuthTimeout.String()))
		}
	})
	return s
}

func (h *Hub) bind(s *Session, u chat.User) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sessions[s]; !ok {
		return
	}
	set := h.byUser[u.ID]
	if set == nil {
		set = map[*Session]struct{}{}
		h.byUser[u.ID] = set
	}
	set[s] = struct{}{}
	h.names[u.ID] = u.Username
	h.dirtyUser[u.ID] = true
	h.poke()
}

// unregister forgets a closed session. Lock order is always session then hub, so the
// session's user is read before the hub lock is taken.
func (h *Hub) unregister(s *Session, rooms []string) {
	u := s.User()
	h.mu.Lock()
	delete(h.sessions, s)
	for _, r := range rooms {
		h.removeSubLocked(r, s)
	}
	if u != nil {
		if set := h.byUser[u.ID]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.byUser, u.ID)
			}
		}
		h.dirtyUser[u.ID] = true
	}
	h.poke()
	h.mu.Unlock()
	if h.metrics != nil {
		h.metrics.Connections.Dec()
	}
}

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *Hub) addSub(room string, s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.rooms[room]
	if set == nil {
		set = map[*Session]struct{}{}
		h.rooms[room] = set
		h.dirtyRoom[room] = true
		h.poke()
	}
	set[s] = struct{}{}
}

func (h *Hub) removeSub(room string, s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeSubLocked(room, s)
}

func (h *Hub) removeSubLocked(room string, s *Session) {
	set := h.rooms[room]
	if set == nil {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.rooms, room)
		h.dirtyRoom[room] = true
		h.poke()
	}
}

func (h *Hub) subscribers(room string) []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.rooms[room]
	out := make([]*Session, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

func (h *Hub) sessionsOf(user string) []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Session, 0, len(h.byUser[user]))
	for s := range h.byUser[user] {
		out = append(out, s)
	}
	return out
}

// UserJoined subscribes the user's sessions on this gateway to room from lastSeq (read
// before the join was announced, so the join entry itself is delivered).
func (h *Hub) UserJoined(userID, room string, lastSeq int64) {
	for _, s := range h.sessionsOf(userID) {
		s.subscribeKnown(room, lastSeq, false)
	}
}

// UserLeft unsubscribes the user's sessions on this gateway from room.
func (h *Hub) UserLeft(userID, room string) {
	for _, s := range h.sessionsOf(userID) {
		s.mu.Lock()
		s.unsubscribeLocked(room, "left")
		s.mu.Unlock()
	}
}

// Deliver implements broker.Sink: events from this gateway's deliveries partition and
// from chat.presence. Called from the reader goroutines; it never blocks on a client.
func (h *Hub) Deliver(_ context.Context, e event.Envelope, p event.Payload) {
	switch p := p.(type) {
	case event.MessageStored:
		for _, s := range h.subscribers(p.RoomID) {
			s.deliverStored(p)
		}
	case event.Typing:
		frame := protocol.TypingNotice{Base: protocol.Base{Type: protocol.TypeTyping}, Room: p.RoomID, User: p.User, UserName: p.UserName}
		for _, s := range h.subscribers(p.RoomID) {
			if u := s.User(); u != nil && u.ID != p.User {
				s.deliverEphemeral(protocol.TypeTyping, frame)
			}
		}
	case event.NotificationCreated:
		frame := protocol.Notification{Base: protocol.Base{Type: protocol.TypeNotification}, NotificationID: p.NotificationID,
			Room: p.RoomID, Seq: p.Seq, Reason: p.Reason, Sender: p.Sender, Preview: p.Preview, CreatedAt: p.CreatedAt}
		for _, s := range h.sessionsOf(p.User) {
			s.deliverEphemeral(protocol.TypeNotification, frame)
		}
	case event.PresenceChanged, event.GatewayHeartbeat:
		h.presence.Apply(p, h.cfg.Now())
	default:
		h.log.Debug("ignoring event", "event_id", e.ID, "type", e.Type)
	}
}

// Users lists who is online: this gateway's users (with idle time) and, from the
// presence view, everyone connected to other live gateways.
func (h *Hub) Users() []protocol.OnlineUser {
	now := h.cfg.Now()
	byID := map[string]*protocol.OnlineUser{}
	h.mu.Lock()
	local := make(map[string][]*Session, len(h.byUser))
	for uid, set := range h.byUser {
		for s := range set {
			local[uid] = append(local[uid], s)
		}
	}
	names := make(map[string]string, len(local))
	for uid := range local {
		names[uid] = h.names[uid]
	}
	h.mu.Unlock()
	for uid, ss := range local {
		var last time.Time
		for _, s := range ss {
			s.mu.Lock()
			if s.lastActive.After(last) {
				last = s.lastActive
			}
			s.mu.Unlock()
		}
		idle := int64(now.Sub(last).Seconds())
		byID[uid] = &protocol.OnlineUser{ID: uid, Username: names[uid], Connections: len(ss), Gateways: []string{h.cfg.GatewayID}, IdleSeconds: &idle}
	}
	for _, r := range h.presence.Online(now) {
		u := byID[r.UserID]
		if u == nil {
			u = &protocol.OnlineUser{ID: r.UserID, Username: r.Username}
			byID[r.UserID] = u
		}
		u.Connections += r.Conns
		u.Gateways = append(u.Gateways, r.Gateways...)
		slices.Sort(u.Gateways)
	}
	out := make([]protocol.OnlineUser, 0, len(byID))
	for _, u := range byID {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b protocol.OnlineUser) int { return strings.Compare(a.Username, b.Username) })
	return out
}

// Stats reports this instance's counters.
func (h *Hub) Stats() protocol.StatsReply {
	now := h.cfg.Now()
	h.mu.Lock()
	conns, users, rooms := len(h.sessions), len(h.byUser), len(h.rooms)
	h.mu.Unlock()
	return protocol.StatsReply{
		Base: protocol.Base{Type: protocol.TypeStats}, GatewayID: h.cfg.GatewayID, StartedAt: h.started.UTC(),
		UptimeS: int64(now.Sub(h.started).Seconds()), Connections: conns, Users: users, Rooms: rooms,
		MessagesIn: h.chat.Accepted(), MessagesOut: h.messagesOut.Load(),
		SlowCatchUp: h.slowSwitches.Load(), SlowClosed: h.slowCloses.Load(),
	}
}

// Run announces subscription and presence changes as they happen, re-announces and
// re-checks room tails periodically, watches for new memberships and sends heartbeats,
// until ctx ends. Then it publishes the final state (after Shutdown: nothing subscribed,
// nobody online) before returning.
func (h *Hub) Run(ctx context.Context) {
	reannounce := time.NewTicker(h.cfg.Reannounce)
	defer reannounce.Stop()
	poll := time.NewTicker(h.cfg.MembershipPoll)
	defer poll.Stop()
	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	var since time.Time
	h.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.flush(fctx)
			cancel()
			return
		case <-h.wake:
			h.flush(ctx)
		case <-reannounce.C:
			h.reannounce(ctx)
		case <-poll.C:
			since = h.pollMemberships(ctx, since)
		case <-heartbeat.C:
			h.heartbeat(ctx)
		}
	}
}

// flush publishes the current state of every dirty room and user. It publishes state,
// not transitions, from this one goroutine, so the last write for a key is always right.
func (h *Hub) flush(ctx context.Context) {
	h.mu.Lock()
	var changes []broker.SubscriptionChange
	var fresh []string
	for room := range h.dirtyRoom {
		on := len(h.rooms[room]) > 0
		changes = append(changes, broker.SubscriptionChange{Room: room, Subscribed: on})
		if on {
			fresh = append(fresh, room)
		}
	}
	clear(h.dirtyRoom)
	var ps []event.PresenceChanged
	now := h.cfg.Now().UTC()
	for uid := range h.dirtyUser {
		ps = append(ps, h.presenceLocked(uid, now))
	}
	clear(h.dirtyUser)
	h.mu.Unlock()

	if err := h.ann.AnnounceSubscriptions(ctx, changes); err != nil {
		h.log.Warn("cannot announce subscriptions; will retry", "rooms", len(changes), "error", err)
		h.remark(changes, nil)
		h.retryLater(ctx)
	} else if len(fresh) > 0 {
		// Fanout may have routed a room's entries before it saw our announcement; once
		// the announcement is in Kafka, re-read the tail of each new room from PostgreSQL.
		time.AfterFunc(h.cfg.RecheckDelay, func() { h.recheck(ctx, fresh) })
	}
	if err := h.ann.PublishPresence(ctx, ps); err != nil {
		h.log.Warn("cannot publish presence; will retry", "users", len(ps), "error", err)
		h.remark(nil, ps)
		h.retryLater(ctx)
	}
}

func (h *Hub) presenceLocked(uid string, now time.Time) event.PresenceChanged {
	n := len(h.byUser[uid])
	status := event.StatusOnline
	if n == 0 {
		status = event.StatusOffline
	}
	name := h.names[uid]
	if name == "" {
		name = uid
	}
	return event.PresenceChanged{User: uid, UserName: name, Status: status, GatewayID: h.cfg.GatewayID, Connections: n, At: now}
}

func (h *Hub) remark(changes []broker.SubscriptionChange, ps []event.PresenceChanged) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range changes {
		h.dirtyRoom[c.Room] = true
	}
	for _, p := range ps {
		h.dirtyUser[p.User] = true
	}
}

func (h *Hub) retryLater(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	time.AfterFunc(time.Second, h.poke)
}

func (h *Hub) recheck(ctx context.Context, rooms []string) {
	if ctx.Err() != nil || len(rooms) == 0 {
		return
	}
	seqs, err := h.timeline.LastSeqs(ctx, rooms)
	if err != nil {
		h.log.Warn("tail re-check failed", "error", err)
		return
	}
	for room, seq := range seqs {
		for _, s := range h.subscribers(room) {
			s.observeTail(room, seq)
		}
	}
}

func (h *Hub) reannounce(ctx context.Context) {
	h.mu.Lock()
	rooms := make([]string, 0, len(h.rooms))
	for room := range h.rooms {
		rooms = append(rooms, room)
		h.dirtyRoom[room] = true
	}
	for uid := range h.byUser {
		h.dirtyUser[uid] = true
	}
	h.mu.Unlock()
	h.flush(ctx)
	h.recheck(ctx, rooms)
}

// pollMemberships subscribes online users' sessions to rooms they joined through another
// gateway or were added to (a new DM), which this gateway would otherwise never hear of.
func (h *Hub) pollMemberships(ctx context.Context, since time.Time) time.Time {
	h.mu.Lock()
	users := make([]string, 0, len(h.byUser))
	for uid := range h.byUser {
		users = append(users, uid)
	}
	h.mu.Unlock()
	if len(users) == 0 {
		return since
	}
	if since.IsZero() {
		since = h.started.Add(-time.Minute)
	}
	ms, now, err := h.timeline.MembershipsSince(ctx, users, since)
	if err != nil {
		h.log.Warn("membership poll failed", "error", err)
		return since
	}
	for _, m := range ms {
		for _, s := range h.sessionsOf(m.UserID) {
			// A new DM is followed from its start; a room joined elsewhere from the current
			// tail, since this gateway does not know where the user's join entry is.
			s.autoSubscribe(ctx, m.RoomID)
		}
	}
	// Overlap the window: joined_at is the inserting transaction's start, which may
	// precede now() of a poll that ran before that transaction committed.
	return now.Add(-10 * time.Second)
}

func (h *Hub) heartbeat(ctx context.Context) {
	h.mu.Lock()
	n := len(h.sessions)
	h.mu.Unlock()
	now := h.cfg.Now().UTC()
	addr := h.cfg.Addr
	if addr == "" {
		addr = "unknown"
	}
	if err := h.ann.PublishHeartbeat(ctx, event.GatewayHeartbeat{GatewayID: h.cfg.GatewayID, Addr: addr, StartedAt: h.started.UTC(), At: now, Connections: n}); err != nil && ctx.Err() == nil {
		h.log.Warn("cannot publish heartbeat", "error", err)
	}
}

// Shutdown tells every client to reconnect elsewhere (reconnect frame with cursors, close
// 1012) and refuses new connections; it waits until they are gone or ctx ends.
func (h *Hub) Shutdown(ctx context.Context) {
	h.mu.Lock()
	h.draining = true
	all := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.shutdown()
	}
	for {
		h.mu.Lock()
		n := len(h.sessions)
		h.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
