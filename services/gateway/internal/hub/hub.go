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
	"cmp"
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

	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/broker"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/metrics"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/store"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// Chat is the request logic the hub's sessions call (*chat.Service).
type Chat interface {
	Authenticate(ctx context.Context, token, kind string) (chat.User, error)
	NewReconnectToken(ctx context.Context, u chat.User) (auth.Token, error)
	SendAsync(ctx context.Context, u chat.User, req chat.SendRequest, done func(protocol.Ack, error))
	OpenDM(ctx context.Context, u chat.User, to string) (store.Room, chat.User, error)
	Access(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Join(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Leave(ctx context.Context, u chat.User, roomID, successor string) error
	Rooms(ctx context.Context, u chat.User) (protocol.RoomList, error)
	RoomsOf(ctx context.Context, u chat.User) ([]store.Room, error)
	History(ctx context.Context, u chat.User, roomID string, q chat.HistoryQuery) (protocol.HistoryPage, error)
	PublishTyping(ctx context.Context, u chat.User, room string) error
	Accepted() int64
	MarkRead(ctx context.Context, u chat.User, roomID string, seq int64) (protocol.ReadMarker, error)
	Thread(ctx context.Context, u chat.User, roomID string, root, after int64, limit int) (protocol.ThreadPage, error)
	MarkThreadRead(ctx context.Context, u chat.User, roomID string, root, seq int64) (protocol.ThreadReadMarker, error)
	Notifications(ctx context.Context, u chat.User, before string, limit int) (protocol.NotificationList, error)
	MarkNotificationsRead(ctx context.Context, u chat.User, ids []string, all bool) (protocol.NotificationsRead, error)
	PendingNotifications(ctx context.Context, u chat.User, max int) ([]protocol.Notification, error)
	Roles
}

var _ Chat = (*chat.Service)(nil)

// Timeline is the PostgreSQL reading the hub does itself (*store.Store).
type Timeline interface {
	MessagesAfter(ctx context.Context, roomID string, after int64, limit int) ([]store.Message, error)
	LastSeqs(ctx context.Context, roomIDs []string) (map[string]int64, error)
	Usernames(ctx context.Context, userIDs []string) (map[string]string, error)
}

var _ Timeline = (*store.Store)(nil)

// Announcer publishes which rooms this gateway has subscribers for (*broker.Broker).
type Announcer interface {
	AnnounceSubscriptions(ctx context.Context, changes []broker.SubscriptionChange) error
}

var _ Announcer = (*broker.Broker)(nil)

// Presence reports this gateway's connection count per user (*presence.Announcer, which
// also heartbeats and reports everyone offline on shutdown). Set must not block.
type Presence interface {
	Set(user, userName string, connections int)
}

var _ Presence = (*presence.Announcer)(nil)

// OnlineView is the cluster-wide presence table (*presence.View).
type OnlineView interface {
	OnlineUsers() []string
	Connections(user string) int
}

var _ OnlineView = (*presence.View)(nil)

// Config tunes the hub. Zero values take the defaults noted.
type Config struct {
	GatewayID   string
	Limits      protocol.Limits
	AuthTimeout time.Duration // a connection must authenticate within this (default 10s)
	// Reannounce is how often the subscriptions (which route typing to this gateway) are
	// published again, in case a compaction or a fanout restart lost one (default 30s).
	// The timeline does not depend on it: the gateway reads chat.stored itself.
	Reannounce     time.Duration
	CatchUpTimeout time.Duration // longest a connection may stay in catch-up before 4008 (default 30s)
	StallTimeout   time.Duration // longest a fill waits for queue space before 4008 (default 15s)
	FillPage       int           // rows per PostgreSQL read when filling (default 200)
	TypingInterval time.Duration // at most one typing signal per connection and room per interval (default 2s)
	// PendingNotifications is the most unread notifications sent at hello (default 50;
	// never more than half the send queue). The rest are a `notifications` request away.
	PendingNotifications int
	// Rate limits. A zero Rate is no limit. ConnRate bounds message frames (send, edit,
	// delete, dm) per connection, UserLimiter the same per user across this gateway's
	// connections and REST (shared with the API), FrameRate every frame per connection.
	ConnRate    ratelimit.Rate
	FrameRate   ratelimit.Rate
	UserLimiter *ratelimit.Keyed
	// A connection whose attempts over AbuseWindow exceed AbuseFactor times what its
	// limits allow is closed with 1008 (zero factor or window: never).
	AbuseFactor float64
	AbuseWindow time.Duration
	Now         func() time.Time
}

func (c *Config) setDefaults() {
	c.Limits = c.Limits.WithDefaults()
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.Reannounce, 30*time.Second)
	def(&c.CatchUpTimeout, 30*time.Second)
	def(&c.StallTimeout, 15*time.Second)
	def(&c.TypingInterval, 2*time.Second)
	if c.FillPage <= 0 {
		c.FillPage = 200
	}
	if c.PendingNotifications <= 0 {
		c.PendingNotifications = 50
	}
	if c.UserLimiter == nil {
		c.UserLimiter = ratelimit.NewKeyed(ratelimit.Rate{})
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// UsersRoom is a pseudo-room this gateway announces on chat.subscriptions while it has at
// least one authenticated connection. Fanout sends user-addressed events (notifications)
// to every gateway with any subscription; without it, a gateway whose users follow no
// room (auth only, or hello with rooms:{}) would never get their notifications. Room ids
// start with a letter or digit, so it can never name a real room.
const UsersRoom = "_users"

// Hub owns every session of this gateway. Safe for concurrent use.
type Hub struct {
	cfg      Config
	chat     Chat
	timeline Timeline
	ann      Announcer
	presence Presence
	online   OnlineView
	prefs    Prefs // nil: notification preference frames answer unavailable
	metrics  *metrics.Metrics
	log      *slog.Logger
	started  time.Time

	mu        sync.Mutex
	sessions  map[*Session]struct{}
	byUser    map[string]map[*Session]struct{}
	names     map[string]string // user id -> username, for presence reports
	rooms     map[string]map[*Session]struct{}
	dirtyRoom map[string]bool // subscription state changed, not yet announced
	wake      chan struct{}
	draining  bool

	messagesOut  atomic.Int64
	slowSwitches atomic.Int64
	slowCloses   atomic.Int64
}

// New returns a hub. m and log may be nil.
func New(cfg Config, c Chat, tl Timeline, ann Announcer, pr Presence, online OnlineView, m *metrics.Metrics, log *slog.Logger) (*Hub, error) {
	if cfg.GatewayID == "" || c == nil || tl == nil || ann == nil || pr == nil || online == nil {
		return nil, errors.New("hub: GatewayID, chat, timeline, announcer, presence and online view are required")
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		cfg: cfg, chat: c, timeline: tl, ann: ann, presence: pr, online: online, metrics: m, log: log,
		started:  cfg.Now(),
		sessions: map[*Session]struct{}{}, byUser: map[string]map[*Session]struct{}{}, names: map[string]string{},
		rooms: map[string]map[*Session]struct{}{}, dirtyRoom: map[string]bool{},
		wake: make(chan struct{}, 1),
	}, nil
}

// metric selectors for Metrics.Inc.
func slowSwitch(m *metrics.Metrics) prometheus.Counter { return m.SlowSwitches }
func slowClose(m *metrics.Metrics) prometheus.Counter  { return m.SlowCloses }
func duplicate(m *metrics.Metrics) prometheus.Counter  { return m.Duplicates }
func gapFill(m *metrics.Metrics) prometheus.Counter    { return m.GapFills }
func abuseClose(m *metrics.Metrics) prometheus.Counter { return m.AbuseCloses }

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
		if len(h.byUser) == 1 {
			h.dirtyRoom[UsersRoom] = true
			h.poke()
		}
	}
	set[s] = struct{}{}
	h.names[u.ID] = u.Username
	h.presence.Set(u.ID, u.Username, len(set))
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
	if set := h.byUser[userID(u)]; set != nil {
		delete(set, s)
		h.presence.Set(u.ID, u.Username, len(set))
		if len(set) == 0 {
			delete(h.byUser, u.ID)
			if len(h.byUser) == 0 {
				h.dirtyRoom[UsersRoom] = true
				h.poke()
			}
		}
	}
	h.mu.Unlock()
	if h.metrics != nil {
		h.metrics.Connections.Dec()
	}
}

func userID(u *chat.User) string {
	if u == nil {
		return ""
	}
	return u.ID
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
		s.follow(room, lastSeq, lastSeq, true)
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

// Users lists who is online across the cluster: everyone the presence view sees on a live
// gateway, plus this gateway's own users (whose report may not have been read back yet),
// with idle time for the latter.
func (h *Hub) Users(ctx context.Context) []protocol.OnlineUser {
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
		byID[uid] = &protocol.OnlineUser{ID: uid, Username: names[uid], Connections: len(ss), Here: len(ss), IdleSeconds: &idle}
	}
	var unnamed []string
	for _, uid := range h.online.OnlineUsers() {
		n := h.online.Connections(uid)
		if u := byID[uid]; u != nil {
			u.Connections = max(u.Connections, n)
			continue
		}
		byID[uid] = &protocol.OnlineUser{ID: uid, Connections: n}
		unnamed = append(unnamed, uid)
	}
	if len(unnamed) > 0 {
		found, err := h.timeline.Usernames(ctx, unnamed)
		if err != nil {
			h.log.Warn("cannot read usernames", "error", err)
		}
		for _, uid := range unnamed {
			byID[uid].Username = found[uid]
		}
	}
	out := make([]protocol.OnlineUser, 0, len(byID))
	for _, u := range byID {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b protocol.OnlineUser) int {
		return cmp.Or(strings.Compare(a.Username, b.Username), strings.Compare(a.ID, b.ID))
	})
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
	// Acks still waiting on Kafka go out before the reconnect frame, so clients do not
	// resend what was accepted.
	wait := sendDrainTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	deadline := time.Now().Add(wait)
	for _, s := range all {
		s.awaitSends(time.Until(deadline))
	}
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
