// Package chat holds the gateway's request logic shared by REST and WebSocket: accounts
// and tokens, rooms and memberships, direct messages, validated sends and history. Every
// failure it returns is a *protocol.Error whose code the caller puts on the wire (REST maps
// codes to statuses). It holds no connection state; the hub does.
package chat

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
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
	Reactions(ctx context.Context, roomID, userID string, seqs []int64, maxNames int) ([]store.Reaction, error)
	MarkRead(ctx context.Context, userID, roomID string, seq int64) (int64, int64, error)
}

// InviteStore is the part of *store.Store that private rooms and invitations use
// (store/invites.go). It is separate from Store so that a Store without private rooms
// (a test's fake) need not implement it: New takes it from the Store when it has it.
type InviteStore interface {
	CreatePrivateRoomAnnounced(ctx context.Context, id, name, creator string, announce ...outbox.Row) error
	CreateInvite(ctx context.Context, roomID, userID, by string, now, expiresAt time.Time) error
	PendingInvites(ctx context.Context, userID string, now time.Time) ([]store.Invite, error)
	AcceptInviteAnnounced(ctx context.Context, roomID, userID string, now time.Time, announce ...outbox.Row) (bool, error)
	DeletePendingInvite(ctx context.Context, roomID, userID string) (bool, error)
	AddMemberByAdmin(ctx context.Context, roomID, userID, by string, now time.Time, announce ...outbox.Row) (bool, error)
}

var _ InviteStore = (*store.Store)(nil)

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
	// Invites keeps private rooms' invitations; default: the Store, if it is one. Nil
	// answers private room creation and every invitation call with unavailable.
	Invites InviteStore
	// InviteTTL is how long an invitation can be accepted (default 7 days).
	InviteTTL time.Duration
	// Threads reads thread summaries and replies and keeps thread read markers; default:
	// the Store, if it is one. Nil: history has no summaries and thread calls answer
	// unavailable.
	Threads ThreadStore
	Now     func() time.Time
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
	// attachments is set once by UseAttachments before serving (nil: none).
	attachments Attachments
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
	if cfg.Invites == nil {
		cfg.Invites, _ = st.(InviteStore)
	}
	if cfg.Threads == nil {
		cfg.Threads, _ = st.(ThreadStore)
	}
	if cfg.InviteTTL <= 0 {
		cfg.InviteTTL = 7 * 24 * time.Hour
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
