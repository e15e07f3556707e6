// Package chat holds the gateway's request logic shared by REST and WebSocket: accounts
// and tokens, rooms and memberships, direct messages, validated sends and history. Every
// failure it returns is a *protocol.Error whose code the caller puts on the wire (REST maps
// codes to statuses). It holds no connection state; the hub does.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Store is the part of *store.Store the chat logic uses.
type Store interface {
	CreateUser(ctx context.Context, u store.User) error
	UserByName(ctx context.Context, name string) (store.User, error)
	CreateSession(ctx context.Context, userID string, hash []byte, kind string, expiresAt time.Time) error
	SessionUser(ctx context.Context, hash []byte) (store.User, string, time.Time, error)
	// CreateRoomAnnounced, AddMemberAnnounced and RemoveMemberAnnounced change a
	// membership and write its membership.changed event (announce) to the outbox in one
	// PostgreSQL transaction, the event only if the membership changed: a membership and
	// its timeline entry commit together, and the outbox relay publishes the entry to
	// chat.submitted. They are the only way Join, Leave and CreateRoom write.
	// SettleOutbox records how the gateway's own publish of such rows went (see
	// outbox.Settle).
	SettleOutbox(ctx context.Context, published bool, eventIDs ...string) error
	CreateRoomAnnounced(ctx context.Context, id, name, kind, creator string, announce ...outbox.Row) error
	EnsureDM(ctx context.Context, id, name, a, b string) (bool, error)
	Room(ctx context.Context, roomID, userID string) (store.Room, error)
	CheckSend(ctx context.Context, roomID, userID, clientMsgID string) (store.SendCheck, error)
	MessageAt(ctx context.Context, roomID string, seq int64) (store.Message, error)
	AddMemberAnnounced(ctx context.Context, roomID, userID string, announce ...outbox.Row) (bool, error)
	RemoveMemberAnnounced(ctx context.Context, roomID, userID string, announce ...outbox.Row) (bool, error)
	Members(ctx context.Context, roomID string) ([]store.Membership, error)
	RoomsOf(ctx context.Context, userID string) ([]store.Room, error)
	PublicRooms(ctx context.Context, limit int) ([]store.Room, error)
	MessagesAfter(ctx context.Context, roomID string, after int64, limit int) ([]store.Message, error)
	MessagesBefore(ctx context.Context, roomID string, before int64, limit int) ([]store.Message, error)
	MarkRead(ctx context.Context, userID, roomID string, seq int64) (int64, int64, error)
}

// NotificationStore is the part of *notifications.Store the chat logic uses.
type NotificationStore interface {
	List(ctx context.Context, userID, beforeID string, limit int) ([]notifications.Notification, error)
	Pending(ctx context.Context, userID string) ([]notifications.Notification, error)
	UnreadCount(ctx context.Context, userID string) (int, error)
	MarkRead(ctx context.Context, userID string, ids []string) (int, error)
	MarkAllRead(ctx context.Context, userID string) (int, error)
}

var _ NotificationStore = (*notifications.Store)(nil)

var _ Store = (*store.Store)(nil)

// Publisher writes events to a declared topic (the broker).
type Publisher interface {
	Publish(ctx context.Context, declared, key string, events ...event.Envelope) error
	// PublishAsync queues e in call order and returns; done reports the acknowledgement.
	PublishAsync(ctx context.Context, declared, key string, e event.Envelope, done func(error)) error
}

// Config configures the Service. Zero values take the defaults noted.
type Config struct {
	GatewayID    string
	Limits       protocol.Limits
	SessionTTL   time.Duration // default 24h
	ReconnectTTL time.Duration // default 1h
	Password     auth.Params   // default auth.DefaultParams
	// Notifications reads and marks users' notifications; nil answers every notification
	// call with unavailable (tests that do not need them).
	Notifications NotificationStore
	Now           func() time.Time
	// Topic maps a declared topic name to the real one, for outbox rows (which name the
	// real topic). Default: the Publisher's Topic method if it has one (the broker does),
	// else the declared name.
	Topic func(declared string) string
}

// Service implements the chat operations. Safe for concurrent use.
type Service struct {
	cfg      Config
	store    Store
	pub      Publisher
	log      *slog.Logger
	accepted atomic.Int64
}

// New returns a Service.
func New(cfg Config, st Store, pub Publisher, log *slog.Logger) (*Service, error) {
	if cfg.GatewayID == "" || st == nil || pub == nil {
		return nil, errors.New("chat: GatewayID, store and publisher are required")
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 24 * time.Hour
	}
	if cfg.ReconnectTTL <= 0 {
		cfg.ReconnectTTL = time.Hour
	}
	if cfg.Password.Memory == 0 {
		cfg.Password = auth.DefaultParams
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Topic == nil {
		cfg.Topic = func(declared string) string { return declared }
		if tn, ok := pub.(interface{ Topic(string) string }); ok {
			cfg.Topic = tn.Topic
		}
	}
	return &Service{cfg: cfg, store: st, pub: pub, log: log}, nil
}

// Limits returns the validation limits in force.
func (s *Service) Limits() protocol.Limits { return s.cfg.Limits }

// Accepted counts sends this gateway published (messages in).
func (s *Service) Accepted() int64 { return s.accepted.Load() }

func (s *Service) source() string { return "kchat/gateway/" + s.cfg.GatewayID }

// User is an authenticated account.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

func errUnavailable(err error) *protocol.Error {
	return protocol.NewError(protocol.CodeUnavailable, "temporarily unavailable, retry").Retry()
}

// internal turns an unexpected error into the wire error, keeping the cause in the log.
func (s *Service) internal(ctx context.Context, what string, err error) *protocol.Error {
	s.log.ErrorContext(ctx, what, "error", err)
	return errUnavailable(err)
}

// Register creates an account.
func (s *Service) Register(ctx context.Context, username, password string) (User, error) {
	if !protocol.ValidUsername(username) {
		return User{}, protocol.NewError(protocol.CodeBadRequest, "username must be 3-32 characters of a-z, A-Z, 0-9, _ and -")
	}
	if len(password) < 8 || len(password) > 256 {
		return User{}, protocol.NewError(protocol.CodeBadRequest, "password must be 8-256 characters")
	}
	hash, err := auth.HashPassword(password, s.cfg.Password)
	if err != nil {
		return User{}, s.internal(ctx, "cannot hash password", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return User{}, s.internal(ctx, "cannot mint user id", err)
	}
	u := store.User{ID: id.String(), Username: username, PasswordHash: hash}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrUsernameTaken) {
			return User{}, protocol.NewError(protocol.CodeUsernameTaken, "username is taken")
		}
		return User{}, s.internal(ctx, "cannot register", err)
	}
	return User{ID: u.ID, Username: u.Username}, nil
}

// Session is what login and resume hand out.
type Session struct {
	Token              string    `json:"token"`
	ExpiresAt          time.Time `json:"expires_at"`
	ReconnectToken     string    `json:"reconnect_token"`
	ReconnectExpiresAt time.Time `json:"reconnect_expires_at"`
	User               User      `json:"user"`
}

// Login checks a password and issues a session token and a reconnect token.
func (s *Service) Login(ctx context.Context, username, password string) (Session, error) {
	bad := protocol.NewError(protocol.CodeInvalidCredentials, "wrong username or password")
	u, err := s.store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		// Hash anyway so that response time does not reveal which usernames exist.
		_, _ = auth.CheckPassword(dummyHash, password)
		return Session{}, bad
	}
	if err != nil {
		return Session{}, s.internal(ctx, "cannot read user", err)
	}
	ok, err := auth.CheckPassword(u.PasswordHash, password)
	if err != nil {
		return Session{}, s.internal(ctx, "cannot check password", err)
	}
	if !ok {
		return Session{}, bad
	}
	return s.issue(ctx, User{ID: u.ID, Username: u.Username})
}

// dummyHash has DefaultParams' cost; its password is random and unknown.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$wR6Mlq3U8p5g3x0qJp9m1yZ1m2Yb0pQm4Tn9o0dQx2A"

func (s *Service) issue(ctx context.Context, u User) (Session, error) {
	now := s.cfg.Now()
	tok, err := s.mint(ctx, u, auth.KindSession, now, s.cfg.SessionTTL)
	if err != nil {
		return Session{}, err
	}
	rt, err := s.mint(ctx, u, auth.KindReconnect, now, s.cfg.ReconnectTTL)
	if err != nil {
		return Session{}, err
	}
	return Session{Token: tok.Value, ExpiresAt: tok.ExpiresAt, ReconnectToken: rt.Value, ReconnectExpiresAt: rt.ExpiresAt, User: u}, nil
}

func (s *Service) mint(ctx context.Context, u User, kind string, now time.Time, ttl time.Duration) (auth.Token, error) {
	t, err := auth.NewToken(kind, now, ttl)
	if err != nil {
		return auth.Token{}, s.internal(ctx, "cannot mint token", err)
	}
	if err := s.store.CreateSession(ctx, u.ID, t.Hash, kind, t.ExpiresAt); err != nil {
		return auth.Token{}, s.internal(ctx, "cannot store token", err)
	}
	return t, nil
}

// NewReconnectToken issues a fresh reconnect token for an authenticated user.
func (s *Service) NewReconnectToken(ctx context.Context, u User) (auth.Token, error) {
	return s.mint(ctx, u, auth.KindReconnect, s.cfg.Now(), s.cfg.ReconnectTTL)
}

// Authenticate resolves a token of the wanted kind. Malformed, unknown, expired and
// wrong-kind tokens all fail the same way (invalid_token), so probing learns nothing.
func (s *Service) Authenticate(ctx context.Context, token, kind string) (User, error) {
	bad := protocol.NewError(protocol.CodeInvalidToken, "invalid or expired token")
	if !auth.WellFormed(token) {
		return User{}, bad
	}
	u, gotKind, exp, err := s.store.SessionUser(ctx, auth.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return User{}, bad
	}
	if err != nil {
		return User{}, s.internal(ctx, "cannot read session", err)
	}
	if !auth.Usable(gotKind, exp, kind, s.cfg.Now()) {
		return User{}, bad
	}
	return User{ID: u.ID, Username: u.Username}, nil
}

// Resume trades a valid reconnect token for a new session (REST clients that lost their
// session token).
func (s *Service) Resume(ctx context.Context, reconnectToken string) (Session, error) {
	u, err := s.Authenticate(ctx, reconnectToken, auth.KindReconnect)
	if err != nil {
		return Session{}, err
	}
	return s.issue(ctx, u)
}

// Access returns the room if u may read it: not_found for an unknown room, forbidden for
// a non-member.
func (s *Service) Access(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, protocol.NewError(protocol.CodeNotFound, "no such room")
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	if !r.Member() {
		return store.Room{}, notMember(roomID)
	}
	return r, nil
}

// notMember answers someone outside a room. Outside a DM the answer is the same as for a
// room that does not exist: a 403 would tell anyone who knows two user ids whether those
// two people talk. DM ids are the only room ids with a ':' (created rooms are slugs).
func notMember(roomID string) *protocol.Error {
	if strings.HasPrefix(roomID, "dm:") {
		return protocol.NewError(protocol.CodeNotFound, "no such room")
	}
	return protocol.NewError(protocol.CodeForbidden, "not a member of this room")
}

// CreateRoom creates a public room with u as admin and announces u's join.
func (s *Service) CreateRoom(ctx context.Context, u User, id, name string) (protocol.RoomInfo, error) {
	if !protocol.ValidSlug(id) {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "id must be 2-64 characters of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	name = strings.TrimSpace(name)
	if name == "" {
		name = id
	}
	if len(name) > 100 {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "name is longer than 100 bytes")
	}
	if strings.ContainsRune(name, 0) {
		// PostgreSQL text cannot hold NUL; the insert would fail as a retryable 503.
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "name must not contain NUL characters")
	}
	e, err := s.membershipEvent(u, id, event.ChangeJoined)
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot build membership event", err)
	}
	row, err := s.ownRow(id, e)
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot build outbox row", err)
	}
	err = s.store.CreateRoomAnnounced(ctx, id, name, event.RoomKindRoom, u.ID, row)
	if errors.Is(err, store.ErrRoomExists) {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeConflict, "a room with this id exists")
	}
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot create room", err)
	}
	s.publishOwn(ctx, id, e)
	return protocol.RoomInfo{ID: id, Name: name, Kind: event.RoomKindRoom, Role: "admin"}, nil
}

func (s *Service) membershipEvent(u User, room, change string) (event.Envelope, error) {
	return event.New(s.source(), event.MembershipChanged{
		RoomID: room, User: u.ID, UserName: u.Username, Change: change, By: u.ID, ChangedAt: s.cfg.Now().UTC(),
	})
}

// changeMembership adds (joined) or removes (left) u's membership of room together with
// its membership.changed event, keyed by room for chat.submitted, in one transaction
// through the outbox: once it returns nil both are committed, and the event was published
// (publishOwn) or the outbox relay will publish it (at least once; persistence's inbox
// makes a republished one a no-op). It reports whether the membership changed; if it did not (someone else's call
// got there first), no event is written either.
func (s *Service) changeMembership(ctx context.Context, u User, room, change string) (bool, error) {
	e, err := s.membershipEvent(u, room, change)
	if err != nil {
		return false, err
	}
	row, err := s.ownRow(room, e)
	if err != nil {
		return false, err
	}
	var changed bool
	if change == event.ChangeJoined {
		changed, err = s.store.AddMemberAnnounced(ctx, room, u.ID, row)
	} else {
		changed, err = s.store.RemoveMemberAnnounced(ctx, room, u.ID, row)
	}
	if err == nil && changed {
		s.publishOwn(ctx, room, e)
	}
	return changed, err
}

// ownPublishTimeout bounds the gateway's own publish of a committed membership event; a
// slower Kafka leaves the event to the outbox relay.
const ownPublishTimeout = 5 * time.Second

// ownRow is the outbox row of a membership event that the gateway publishes itself right
// after the commit (publishOwn): the relay stays off it for a while meanwhile.
func (s *Service) ownRow(room string, e event.Envelope) (outbox.Row, error) {
	row, err := outbox.NewRow(s.cfg.Topic(topics.Submitted), room, e)
	row.RelayAfter = s.cfg.Now().Add(2 * ownPublishTimeout)
	return row, err
}

// publishOwn publishes a committed membership event and waits for Kafka, so that it is in
// the room's partition before anything the caller does next (a first message after a
// join or a room's creation is stored after the join entry, not before). If Kafka does
// not acknowledge it in time, the row goes to the outbox relay at once; the membership
// stands either way, and a second copy is dropped by persistence's inbox.
func (s *Service) publishOwn(ctx context.Context, room string, e event.Envelope) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownPublishTimeout)
	defer cancel()
	err := s.pub.Publish(pctx, topics.Submitted, room, e)
	if err != nil {
		s.log.WarnContext(ctx, "membership event not published; left to the outbox relay", "event_id", e.ID, "room", room, "error", err)
	}
	if serr := s.store.SettleOutbox(pctx, err == nil, e.ID); serr != nil {
		s.log.WarnContext(ctx, "cannot settle outbox row; the relay republishes it later", "event_id", e.ID, "error", serr)
	}
}

// Join makes u a member of a public room and announces the join in the room's timeline:
// the membership row and its membership.changed event commit in one transaction (the
// outbox), and Join returns nil only after that commit, so a caller may subscribe u's
// connections on its result. Joining a room u is already in returns it and writes nothing.
// It returns the room's last_seq read before the membership changed, so a subscription
// from there includes the join entry.
func (s *Service) Join(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, protocol.NewError(protocol.CodeNotFound, "no such room")
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	if r.Kind == event.RoomKindDM && !r.Member() {
		return store.Room{}, notMember(roomID)
	}
	if r.Member() {
		return r, nil
	}
	if _, err := s.changeMembership(ctx, u, roomID, event.ChangeJoined); err != nil {
		return store.Room{}, s.internal(ctx, "cannot add member", err)
	}
	r.Role = "member"
	return r, nil
}

// Leave ends u's membership and announces it in the room's timeline, both in one
// transaction (see Join); it returns nil only after the commit, so a caller may
// unsubscribe u's connections on its result. A Leave by someone who is not (or no
// longer) a member is refused like any non-member's request (forbidden) and writes
// nothing: a retried Leave after a success changes nothing and announces nothing twice.
func (s *Service) Leave(ctx context.Context, u User, roomID string) error {
	r, err := s.Access(ctx, u, roomID)
	if err != nil {
		return err
	}
	if r.Kind == event.RoomKindDM {
		return protocol.NewError(protocol.CodeBadRequest, "direct message rooms cannot be left")
	}
	if _, err := s.changeMembership(ctx, u, roomID, event.ChangeLeft); err != nil {
		return s.internal(ctx, "cannot remove member", err)
	}
	return nil
}

// Member is one entry of a member list.
type Member struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

// Members lists a room's members; DM member lists are for the two members only.
func (s *Service) Members(ctx context.Context, u User, roomID string) ([]Member, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, protocol.NewError(protocol.CodeNotFound, "no such room")
	}
	if err != nil {
		return nil, s.internal(ctx, "cannot read room", err)
	}
	if r.Kind == event.RoomKindDM && !r.Member() {
		return nil, notMember(roomID)
	}
	ms, err := s.store.Members(ctx, roomID)
	if err != nil {
		return nil, s.internal(ctx, "cannot list members", err)
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: m.UserID, Username: m.Username, Role: m.Role, JoinedAt: m.JoinedAt}
	}
	return out, nil
}

// RoomsOf lists u's rooms.
func (s *Service) RoomsOf(ctx context.Context, u User) ([]store.Room, error) {
	rs, err := s.store.RoomsOf(ctx, u.ID)
	if err != nil {
		return nil, s.internal(ctx, "cannot list rooms", err)
	}
	return rs, nil
}

// Rooms lists u's rooms and the public rooms.
func (s *Service) Rooms(ctx context.Context, u User) (protocol.RoomList, error) {
	mine, err := s.RoomsOf(ctx, u)
	if err != nil {
		return protocol.RoomList{}, err
	}
	pub, err := s.store.PublicRooms(ctx, 500)
	if err != nil {
		return protocol.RoomList{}, s.internal(ctx, "cannot list rooms", err)
	}
	list := protocol.RoomList{Base: protocol.Base{Type: protocol.TypeRooms}, Mine: []protocol.RoomInfo{}, Public: []protocol.RoomInfo{}}
	for _, r := range mine {
		marker, unread := r.LastReadSeq, r.Unread
		list.Mine = append(list.Mine, protocol.RoomInfo{ID: r.ID, Name: r.Name, Kind: r.Kind, LastSeq: r.LastSeq, Role: r.Role,
			Members: r.Members, LastReadSeq: &marker, Unread: &unread})
	}
	for _, r := range pub {
		list.Public = append(list.Public, protocol.RoomInfo{ID: r.ID, Name: r.Name, Kind: r.Kind, LastSeq: r.LastSeq})
	}
	return list, nil
}

// DMRoomID is the id of the DM room of two users: "dm:<a>:<b>" with the ids sorted, so
// both sides compute the same room.
func DMRoomID(a, b string) string {
	ids := []string{a, b}
	slices.Sort(ids)
	return "dm:" + ids[0] + ":" + ids[1]
}

// OpenDM returns the DM room between u and the user named to, creating it on first use.
func (s *Service) OpenDM(ctx context.Context, u User, to string) (store.Room, User, error) {
	if !protocol.ValidUsername(to) {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeBadRequest, "not a valid username")
	}
	other, err := s.store.UserByName(ctx, to)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeNotFound, "no such user")
	}
	if err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot read user", err)
	}
	if other.ID == u.ID {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeBadRequest, "cannot message yourself")
	}
	id := DMRoomID(u.ID, other.ID)
	names := []string{u.Username, other.Username}
	slices.Sort(names)
	if _, err := s.store.EnsureDM(ctx, id, names[0]+" & "+names[1], u.ID, other.ID); err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot create dm", err)
	}
	r, err := s.store.Room(ctx, id, u.ID)
	if err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot read dm", err)
	}
	return r, User{ID: other.ID, Username: other.Username}, nil
}

// SendRequest is a validated send, edit or delete.
type SendRequest struct {
	Room        string
	ClientMsgID string
	Text        string
	Kind        string // event.KindMessage (default), KindEdit or KindDelete
	TargetSeq   int64
}

// Send publishes message.submitted keyed by room with acks=all and only then reports
// accepted. A client_msg_id already stored by this sender in this room is answered as a
// duplicate with the original seq and nothing is published; a retry whose first attempt is
// still in flight is published again and dropped by persistence.
func (s *Service) Send(ctx context.Context, u User, req SendRequest) (protocol.Ack, error) {
	type result struct {
		ack protocol.Ack
		err error
	}
	out := make(chan result, 1)
	s.SendAsync(ctx, u, req, func(ack protocol.Ack, err error) { out <- result{ack, err} })
	select {
	case r := <-out:
		return r.ack, r.err
	case <-ctx.Done():
		return protocol.Ack{}, errUnavailable(ctx.Err())
	}
}

// SendAsync is Send for a connection that keeps reading while its messages are written:
// the checks run before it returns and the message is queued to Kafka in call order, so
// one connection's messages to a room keep their order; done gets the ack (or error) once,
// possibly from another goroutine, possibly before SendAsync returns.
func (s *Service) SendAsync(ctx context.Context, u User, req SendRequest, done func(protocol.Ack, error)) {
	if req.Kind == "" {
		req.Kind = event.KindMessage
	}
	if req.Kind != event.KindDelete {
		if e := protocol.ValidateText(req.ClientMsgID, req.Text, s.cfg.Limits); e != nil {
			done(protocol.Ack{}, e)
			return
		}
	}
	chk, err := s.store.CheckSend(ctx, req.Room, u.ID, req.ClientMsgID)
	if err != nil {
		done(protocol.Ack{}, s.internal(ctx, "cannot check send", err))
		return
	}
	if !chk.RoomFound {
		done(protocol.Ack{}, protocol.NewError(protocol.CodeNotFound, "no such room"))
		return
	}
	if !chk.Member {
		done(protocol.Ack{}, notMember(req.Room))
		return
	}
	ack := protocol.Ack{Base: protocol.Base{Type: protocol.TypeAck}, Room: req.Room, ClientMsgID: req.ClientMsgID}
	if chk.DupSeq > 0 {
		ack.Status, ack.Seq, ack.MessageID = protocol.AckDuplicate, chk.DupSeq, chk.DupID
		done(ack, nil)
		return
	}
	if req.Kind == event.KindEdit || req.Kind == event.KindDelete {
		if err := s.checkTarget(ctx, u, chk, req); err != nil {
			done(protocol.Ack{}, err)
			return
		}
	}
	e, err := event.New(s.source(), event.MessageSubmitted{
		RoomID: req.Room, Sender: u.ID, SenderName: u.Username, ClientMsgID: req.ClientMsgID,
		Text: req.Text, Kind: req.Kind, TargetSeq: req.TargetSeq, SubmittedAt: s.cfg.Now().UTC(),
	})
	if err != nil {
		done(protocol.Ack{}, protocol.NewError(protocol.CodeBadRequest, err.Error()))
		return
	}
	published := func(err error) {
		if err != nil {
			s.log.WarnContext(ctx, "publish failed", "event_id", e.ID, "room", req.Room, "error", err)
			done(protocol.Ack{}, errUnavailable(err))
			return
		}
		s.accepted.Add(1)
		ack.Status, ack.MessageID = protocol.AckAccepted, e.ID
		done(ack, nil)
	}
	if err := s.pub.PublishAsync(ctx, topics.Submitted, req.Room, e, published); err != nil {
		published(err)
	}
}

// checkTarget decides whether u may edit or delete the entry at req.TargetSeq: it must be a
// message (not a join, an edit...), not deleted, and u its author or an admin of the
// room. Persistence checks the same again when it stores the change, since the target
// may change (be deleted) between this check and then.
func (s *Service) checkTarget(ctx context.Context, u User, chk store.SendCheck, req SendRequest) error {
	t, err := s.store.MessageAt(ctx, req.Room, req.TargetSeq)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.NewError(protocol.CodeNotFound, "no message with that seq")
	}
	if err != nil {
		return s.internal(ctx, "cannot read target", err)
	}
	switch {
	case t.Kind != event.KindMessage:
		return protocol.NewError(protocol.CodeBadRequest, "only messages can be edited or deleted, not "+t.Kind+" entries")
	case t.Sender != u.ID && chk.Role != "admin":
		return protocol.NewError(protocol.CodeForbidden, "only the author or a room admin may "+req.Kind+" this message")
	case t.DeletedAt != nil && req.Kind == event.KindDelete:
		return protocol.NewError(protocol.CodeConflict, "message is already deleted")
	case t.DeletedAt != nil:
		return protocol.NewError(protocol.CodeConflict, "a deleted message cannot be edited")
	}
	return nil
}

// MarkRead moves u's read marker of a room forward to seq and returns the marker and the
// unread count after it. A marker never moves back (an older seq answers the current
// marker); a seq past the room's last_seq is refused, since no client can have seen it.
func (s *Service) MarkRead(ctx context.Context, u User, roomID string, seq int64) (protocol.ReadMarker, error) {
	marker, unread, err := s.store.MarkRead(ctx, u.ID, roomID, seq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return protocol.ReadMarker{}, protocol.NewError(protocol.CodeNotFound, "no such room")
	case errors.Is(err, store.ErrNotMember):
		return protocol.ReadMarker{}, notMember(roomID)
	case errors.Is(err, store.ErrPastEnd):
		msg := fmt.Sprintf("seq %d is past the room's last seq", seq)
		if pe, ok := errors.AsType[*store.PastEndError](err); ok {
			msg = fmt.Sprintf("%s %d", msg, pe.LastSeq)
		}
		return protocol.ReadMarker{}, protocol.NewError(protocol.CodeBadRequest, msg)
	case err != nil:
		return protocol.ReadMarker{}, s.internal(ctx, "cannot mark read", err)
	}
	return protocol.ReadMarker{Base: protocol.Base{Type: protocol.TypeRead}, Room: roomID, Seq: marker, Unread: unread}, nil
}

func (s *Service) notes() (NotificationStore, error) {
	if s.cfg.Notifications == nil {
		return nil, protocol.NewError(protocol.CodeUnavailable, "notifications are not available").Retry()
	}
	return s.cfg.Notifications, nil
}

// NotificationFrame renders a stored notification.
func NotificationFrame(n notifications.Notification) protocol.Notification {
	return protocol.Notification{Base: protocol.Base{Type: protocol.TypeNotification}, NotificationID: n.ID, Room: n.RoomID,
		Seq: n.Seq, Reason: n.Reason, Sender: n.Sender, Preview: n.Preview, CreatedAt: n.CreatedAt, ReadAt: n.ReadAt}
}

// Notifications returns a page of u's notifications, newest first (older than before,
// when given), with the unread count.
func (s *Service) Notifications(ctx context.Context, u User, before string, limit int) (protocol.NotificationList, error) {
	ns, err := s.notes()
	if err != nil {
		return protocol.NotificationList{}, err
	}
	if e := protocol.ValidateNotificationPage(before, limit); e != nil {
		return protocol.NotificationList{}, e
	}
	if limit <= 0 {
		limit = notifications.DefaultListLimit
	}
	rows, err := ns.List(ctx, u.ID, before, limit+1)
	if err != nil {
		return protocol.NotificationList{}, s.internal(ctx, "cannot list notifications", err)
	}
	unread, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return protocol.NotificationList{}, s.internal(ctx, "cannot count notifications", err)
	}
	out := protocol.NotificationList{Base: protocol.Base{Type: protocol.TypeNotifications}, UnreadCount: unread,
		HasMore: len(rows) > limit, Notifications: make([]protocol.Notification, 0, min(len(rows), limit))}
	for _, n := range rows[:min(len(rows), limit)] {
		out.Notifications = append(out.Notifications, NotificationFrame(n))
	}
	return out, nil
}

// MarkNotificationsRead marks u's notifications read: ids, or all of them. Unknown ids,
// other users' ids and ids already read change nothing and are not an error (a retry
// or a second device must not fail); Marked says how many changed.
func (s *Service) MarkNotificationsRead(ctx context.Context, u User, ids []string, all bool) (protocol.NotificationsRead, error) {
	ns, err := s.notes()
	if err != nil {
		return protocol.NotificationsRead{}, err
	}
	if e := protocol.ValidateNotificationIDs(ids, all); e != nil {
		return protocol.NotificationsRead{}, e
	}
	var n int
	if all {
		n, err = ns.MarkAllRead(ctx, u.ID)
	} else {
		n, err = ns.MarkRead(ctx, u.ID, ids)
	}
	if err != nil {
		return protocol.NotificationsRead{}, s.internal(ctx, "cannot mark notifications read", err)
	}
	unread, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return protocol.NotificationsRead{}, s.internal(ctx, "cannot count notifications", err)
	}
	return protocol.NotificationsRead{Base: protocol.Base{Type: protocol.TypeNotificationsRead}, Marked: n, UnreadCount: unread}, nil
}

// UnreadNotifications counts u's unread notifications.
func (s *Service) UnreadNotifications(ctx context.Context, u User) (int, error) {
	ns, err := s.notes()
	if err != nil {
		return 0, err
	}
	n, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return 0, s.internal(ctx, "cannot count notifications", err)
	}
	return n, nil
}

// PendingNotifications returns u's newest unread notifications, at most max, oldest first:
// what a connection is given at hello.
func (s *Service) PendingNotifications(ctx context.Context, u User, max int) ([]protocol.Notification, error) {
	ns, err := s.notes()
	if err != nil {
		return nil, err
	}
	rows, err := ns.Pending(ctx, u.ID)
	if err != nil {
		return nil, s.internal(ctx, "cannot read pending notifications", err)
	}
	if len(rows) > max {
		rows = rows[len(rows)-max:] // Pending is oldest first; keep the newest
	}
	out := make([]protocol.Notification, len(rows))
	for i, n := range rows {
		out[i] = NotificationFrame(n)
		out[i].Pending = true
	}
	return out, nil
}

// PublishTyping publishes a typing signal to chat.ephemeral; it is never stored.
func (s *Service) PublishTyping(ctx context.Context, u User, room string) error {
	e, err := event.New(s.source(), event.Typing{RoomID: room, User: u.ID, UserName: u.Username, State: event.TypingStarted})
	if err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, topics.Ephemeral, room, e); err != nil {
		return errUnavailable(err)
	}
	return nil
}

// HistoryQuery selects a page: Before (exclusive, newest page below it) or After
// (exclusive, oldest page above it); neither means the newest page.
type HistoryQuery struct {
	Before int64
	After  int64
	Limit  int
}

// History returns a page of the room's timeline, oldest first, with current text and
// edit/delete marks, for members only.
func (s *Service) History(ctx context.Context, u User, roomID string, q HistoryQuery) (protocol.HistoryPage, error) {
	if _, err := s.Access(ctx, u, roomID); err != nil {
		return protocol.HistoryPage{}, err
	}
	if q.Limit <= 0 {
		q.Limit = protocol.DefaultHistoryLimit
	}
	if q.Limit > s.cfg.Limits.MaxHistory {
		return protocol.HistoryPage{}, protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("limit must be at most %d", s.cfg.Limits.MaxHistory))
	}
	if q.Before > 0 && q.After > 0 {
		return protocol.HistoryPage{}, protocol.NewError(protocol.CodeBadRequest, "give before or after, not both")
	}
	var ms []store.Message
	var err error
	if q.After > 0 {
		ms, err = s.store.MessagesAfter(ctx, roomID, q.After, q.Limit+1)
	} else {
		before := q.Before
		if before <= 0 {
			before = 1<<63 - 1
		}
		ms, err = s.store.MessagesBefore(ctx, roomID, before, q.Limit+1)
	}
	if err != nil {
		return protocol.HistoryPage{}, s.internal(ctx, "cannot read history", err)
	}
	page := protocol.HistoryPage{Base: protocol.Base{Type: protocol.TypeHistory}, Room: roomID, HasMore: len(ms) > q.Limit}
	ms = ms[:min(len(ms), q.Limit)]
	if q.After <= 0 {
		slices.Reverse(ms)
	}
	page.Messages = make([]protocol.Message, len(ms))
	for i, m := range ms {
		page.Messages[i] = FrameOf(m)
	}
	return page, nil
}

// FrameOf renders a stored timeline row as a message frame. A deleted message keeps its
// place and marks but not its text (persistence clears it too; this covers rows deleted
// before it did).
func FrameOf(m store.Message) protocol.Message {
	if m.DeletedAt != nil {
		m.Text = ""
	}
	return protocol.Message{
		Base: protocol.Base{Type: protocol.TypeMessage}, Room: m.RoomID, Seq: m.Seq, Kind: m.Kind, MessageID: m.EventID,
		Sender: m.Sender, SenderName: m.SenderName, ClientMsgID: m.ClientMsgID, Text: m.Text, TargetSeq: m.TargetSeq,
		SentAt: m.SentAt, StoredAt: m.StoredAt, EditedAt: m.EditedAt, DeletedAt: m.DeletedAt,
	}
}

// FrameOfStored renders a live message.stored event as a message frame.
func FrameOfStored(m event.MessageStored) protocol.Message {
	return protocol.Message{
		Base: protocol.Base{Type: protocol.TypeMessage}, Room: m.RoomID, Seq: m.Seq, Kind: m.Kind, MessageID: m.MessageID,
		Sender: m.Sender, SenderName: m.SenderName, ClientMsgID: m.ClientMsgID, Text: m.Text, TargetSeq: m.TargetSeq,
		SentAt: m.SentAt, StoredAt: m.StoredAt,
	}
}
