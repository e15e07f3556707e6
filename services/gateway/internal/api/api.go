// Package api is the gateway's REST surface on Echo: accounts, rooms, DMs, history, sends,
// who is online and stats. It validates HTTP input, calls the chat logic and maps its
// protocol errors to statuses; the shape of every error body is {code, message}.
package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/hub"
	"github.com/kchat/kchat/services/gateway/internal/metrics"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Chat is the request logic the API calls (*chat.Service).
type Chat interface {
	Register(ctx context.Context, username, password string) (chat.User, error)
	Login(ctx context.Context, username, password string) (chat.Session, error)
	Resume(ctx context.Context, reconnectToken string) (chat.Session, error)
	Authenticate(ctx context.Context, token, kind string) (chat.User, error)
	CreateRoom(ctx context.Context, u chat.User, id, name string, private bool) (protocol.RoomInfo, error)
	Rooms(ctx context.Context, u chat.User) (protocol.RoomList, error)
	Join(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Leave(ctx context.Context, u chat.User, roomID, successor string) error
	Members(ctx context.Context, u chat.User, roomID string) ([]chat.Member, error)
	OpenDM(ctx context.Context, u chat.User, to string) (store.Room, chat.User, error)
	Send(ctx context.Context, u chat.User, req chat.SendRequest) (protocol.Ack, error)
	History(ctx context.Context, u chat.User, roomID string, q chat.HistoryQuery) (protocol.HistoryPage, error)
	MarkRead(ctx context.Context, u chat.User, roomID string, seq int64) (protocol.ReadMarker, error)
	Thread(ctx context.Context, u chat.User, roomID string, root, after int64, limit int) (protocol.ThreadPage, error)
	MarkThreadRead(ctx context.Context, u chat.User, roomID string, root, seq int64) (protocol.ThreadReadMarker, error)
	Notifications(ctx context.Context, u chat.User, before string, limit int) (protocol.NotificationList, error)
	MarkNotificationsRead(ctx context.Context, u chat.User, ids []string, all bool) (protocol.NotificationsRead, error)
	UnreadNotifications(ctx context.Context, u chat.User) (int, error)
	// Private rooms' invitations (invites.go).
	Invite(ctx context.Context, u chat.User, roomID, username string) (protocol.Invite, error)
	Invites(ctx context.Context, u chat.User) ([]protocol.Invite, error)
	AcceptInvite(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	DeclineInvite(ctx context.Context, u chat.User, roomID string) error
	RevokeInvite(ctx context.Context, u chat.User, roomID, username string) (bool, error)
	AddMember(ctx context.Context, u chat.User, roomID, username string) (store.Room, chat.User, error)
	// Moderation by room admins (moderation.go).
	Kick(ctx context.Context, u chat.User, roomID, username string) (chat.User, bool, error)
	Ban(ctx context.Context, u chat.User, roomID, username string) (chat.User, bool, error)
	Unban(ctx context.Context, u chat.User, roomID, username string) (bool, error)
	// Roles and muting (roles.go).
	SetRole(ctx context.Context, u chat.User, roomID, username, role string) (chat.User, bool, error)
	Mute(ctx context.Context, u chat.User, roomID, username string, muted bool) (chat.User, bool, error)
	Transfer(ctx context.Context, u chat.User, roomID, username string) (chat.User, error)
	UpdateRoom(ctx context.Context, u chat.User, roomID string, rs chat.RoomSettings) (chat.UpdatedRoom, error)
	Directory(ctx context.Context, q, cursor string, limit int) (chat.DirectoryPage, error)
	// A room's details for the asking user (roominfo.go).
	RoomDetails(ctx context.Context, u chat.User, roomID string) (store.RoomDetails, error)
}

var _ Chat = (*chat.Service)(nil)

// Hub is the connection state the API touches (*hub.Hub).
type Hub interface {
	UserJoined(userID, room string, lastSeq int64)
	UserLeft(userID, room string)
	Users(ctx context.Context) []protocol.OnlineUser
	Stats() protocol.StatsReply
}

// ReadNotifier is implemented by hubs that tell a user's open connections about a read
// marker set over REST (*hub.Hub does). It is separate from Hub so that a hub without
// connections (tests) need not implement it.
type ReadNotifier interface {
	ReadMarked(userID string, m protocol.ReadMarker, except *hub.Session)
}

var _ ReadNotifier = (*hub.Hub)(nil)

// Config holds the API's limiters. Nil limiters limit nothing.
type Config struct {
	// UserLimiter bounds sends, edits and deletes per user; the hub shares it, so REST and
	// WebSocket draw from one bucket per user on this gateway.
	UserLimiter *ratelimit.Keyed
	// LoginAccount is charged one token per failed login of a username, LoginAddr one per
	// login or registration attempt from a remote address.
	LoginAccount *ratelimit.Keyed
	LoginAddr    *ratelimit.Keyed
	Metrics      *metrics.Metrics
	Now          func() time.Time
	// Search serves GET /api/search (nil: it answers 503); Logger records its failures.
	Search Searcher
	Logger *slog.Logger
}

// API holds the handlers.
type API struct {
	chat Chat
	hub  Hub
	cfg  Config
}

// New returns the API; without a Config nothing is rate-limited.
func New(c Chat, h Hub, opt ...Config) *API {
	var cfg Config
	if len(opt) > 0 {
		cfg = opt[0]
	}
	off := ratelimit.NewKeyed(ratelimit.Rate{})
	for _, k := range []**ratelimit.Keyed{&cfg.UserLimiter, &cfg.LoginAccount, &cfg.LoginAddr} {
		if *k == nil {
			*k = off
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &API{chat: c, hub: h, cfg: cfg}
}

// Register mounts the routes under /api on e.
func (a *API) Register(e *echo.Echo) {
	g := e.Group("/api")
	g.POST("/register", a.register)
	g.POST("/login", a.login)
	g.POST("/resume", a.resume)
	authed := g.Group("", a.requireAuth)
	authed.GET("/me", a.me)
	authed.GET("/rooms", a.rooms)
	authed.POST("/rooms", a.createRoom)
	authed.POST("/rooms/:id/join", a.join)
	authed.POST("/rooms/:id/leave", a.leave)
	authed.GET("/rooms/:id/members", a.members)
	authed.POST("/rooms/:id/members", a.addMember)
	authed.POST("/rooms/:id/invites", a.invite)
	authed.DELETE("/rooms/:id/invites/:username", a.revokeInvite)
	authed.GET("/me/invites", a.invites)
	authed.POST("/me/invites/:id/accept", a.acceptInvite)
	authed.POST("/me/invites/:id/decline", a.declineInvite)
	authed.POST("/rooms/:id/kick", a.kick)
	authed.POST("/rooms/:id/bans", a.ban)
	authed.DELETE("/rooms/:id/bans/:username", a.unban)
	authed.POST("/rooms/:id/members/:username/role", a.setRole)
	authed.POST("/rooms/:id/members/:username/mute", a.mute)
	authed.POST("/rooms/:id/transfer", a.transfer)
	authed.PATCH("/rooms/:id", a.updateRoom)
	authed.GET("/rooms/:id", a.roomDetails)
	authed.GET("/rooms/directory", a.directory)
	authed.DELETE("/rooms/:id/members/:username/mute", a.mute)
	authed.GET("/rooms/:id/messages", a.history)
	authed.POST("/rooms/:id/messages", a.send)
	authed.PATCH("/rooms/:id/messages/:seq", a.edit)
	authed.DELETE("/rooms/:id/messages/:seq", a.remove)
	authed.POST("/rooms/:id/messages/:seq/reactions", a.react)
	authed.POST("/rooms/:id/read", a.markRead)
	authed.GET("/rooms/:id/threads/:seq", a.thread)
	authed.POST("/rooms/:id/threads/:seq/read", a.markThreadRead)
	authed.POST("/dms/:username", a.openDM)
	authed.GET("/users", a.users)
	authed.GET("/stats", a.stats)
	authed.GET("/search", a.search)
	authed.GET("/notifications", a.notifications)
	authed.GET("/notifications/unread", a.unreadNotifications)
	authed.POST("/notifications/read", a.readNotifications)
}
