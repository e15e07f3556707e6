// Package api is the gateway's REST surface on Echo: accounts, rooms, DMs, history, sends,
// who is online and stats. It validates HTTP input, calls the chat logic and maps its
// protocol errors to statuses; the shape of every error body is {code, message}.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
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
	CreateRoom(ctx context.Context, u chat.User, id, name string) (protocol.RoomInfo, error)
	Rooms(ctx context.Context, u chat.User) (protocol.RoomList, error)
	Join(ctx context.Context, u chat.User, roomID string) (store.Room, error)
	Leave(ctx context.Context, u chat.User, roomID string) error
	Members(ctx context.Context, u chat.User, roomID string) ([]chat.Member, error)
	OpenDM(ctx context.Context, u chat.User, to string) (store.Room, chat.User, error)
	Send(ctx context.Context, u chat.User, req chat.SendRequest) (protocol.Ack, error)
	History(ctx context.Context, u chat.User, roomID string, q chat.HistoryQuery) (protocol.HistoryPage, error)
	MarkRead(ctx context.Context, u chat.User, roomID string, seq int64) (protocol.ReadMarker, error)
	Notifications(ctx context.Context, u chat.User, before string, limit int) (protocol.NotificationList, error)
	MarkNotificationsRead(ctx context.Context, u chat.User, ids []string, all bool) (protocol.NotificationsRead, error)
	UnreadNotifications(ctx context.Context, u chat.User) (int, error)
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

const userKey = "kchat.user"

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
	authed.GET("/rooms/:id/messages", a.history)
	authed.POST("/rooms/:id/messages", a.send)
	authed.PATCH("/rooms/:id/messages/:seq", a.edit)
	authed.DELETE("/rooms/:id/messages/:seq", a.remove)
	authed.POST("/rooms/:id/read", a.markRead)
	authed.POST("/dms/:username", a.openDM)
	authed.GET("/users", a.users)
	authed.GET("/stats", a.stats)
	authed.GET("/notifications", a.notifications)
	authed.GET("/notifications/unread", a.unreadNotifications)
	authed.POST("/notifications/read", a.readNotifications)
}

// SecurityHeaders sets the headers every response should carry. The CSP here is the
// strict default for API answers; the web page sets its own (scripts, styles and
// WebSocket connections from its origin), which replaces this one on the page's files.
// API answers hold tokens and private messages, so they are never cached. HSTS is left to
// the TLS-terminating proxy in front, since the gateway speaks plain HTTP.
func SecurityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if strings.HasPrefix(c.Request().URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Retryable  bool   `json:"retryable,omitempty"`
	RetryAfter int64  `json:"retry_after_ms,omitempty"`
}

// Status maps a protocol error code to its HTTP status.
func Status(code string) int {
	switch code {
	case protocol.CodeBadJSON, protocol.CodeBadRequest, protocol.CodeUnknownType:
		return http.StatusBadRequest
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeUnauthorized, protocol.CodeInvalidToken, protocol.CodeInvalidCredentials:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeUsernameTaken, protocol.CodeConflict:
		return http.StatusConflict
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func fail(c echo.Context, err error) error {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.NewError(protocol.CodeInternal, "internal error")
	}
	if pe.RetryAfter > 0 {
		// Retry-After is in whole seconds; round up so that a client honouring it is not
		// refused again.
		c.Response().Header().Set("Retry-After", strconv.FormatInt((pe.RetryAfter+999)/1000, 10))
	}
	return c.JSON(Status(pe.Code), ErrorBody{Code: pe.Code, Message: pe.Message, Retryable: pe.Retryable, RetryAfter: pe.RetryAfter})
}

// limitedError is the rate_limited answer with its wait.
func limitedError(msg string, wait time.Duration) error {
	e := protocol.NewError(protocol.CodeRateLimited, msg).Retry()
	e.RetryAfter = hub.RetryAfterMs(wait)
	return e
}

// allowUser takes a token from the user's message bucket (shared with WebSocket).
func (a *API) allowUser(c echo.Context) error {
	if ok, wait := a.cfg.UserLimiter.Allow(user(c).ID, a.cfg.Now()); !ok {
		a.cfg.Metrics.Limited("user")
		return limitedError("too many messages from this user", wait)
	}
	return nil
}

// allowAddr charges the remote address one login or registration attempt. Both cost an
// argon2id hash, so this limit also protects the gateway's CPU.
func (a *API) allowAddr(c echo.Context) error {
	if ok, wait := a.cfg.LoginAddr.Allow(c.RealIP(), a.cfg.Now()); !ok {
		a.cfg.Metrics.Limited("login_addr")
		return limitedError("too many attempts from this address", wait)
	}
	return nil
}

// ErrorHandler renders Echo's own errors (unknown route, wrong method) in the API shape.
func ErrorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = strings.ToLower(http.StatusText(status))
	}
	code := protocol.CodeInternal
	switch status {
	case http.StatusNotFound:
		code = protocol.CodeNotFound
	case http.StatusMethodNotAllowed, http.StatusBadRequest:
		code = protocol.CodeBadRequest
	case http.StatusRequestEntityTooLarge:
		code = protocol.CodeTooLarge
	}
	_ = c.JSON(status, ErrorBody{Code: code, Message: msg})
}

// decode reads a JSON body of at most 64 KiB into v.
func decode(c echo.Context, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 64<<10+1))
	if err != nil {
		return protocol.NewError(protocol.CodeBadRequest, "cannot read body")
	}
	if len(body) > 64<<10 {
		return protocol.NewError(protocol.CodeTooLarge, "body is larger than 64 KiB")
	}
	if !json.Valid(body) || len(strings.TrimSpace(string(body))) == 0 || strings.TrimSpace(string(body))[0] != '{' {
		return protocol.NewError(protocol.CodeBadJSON, "body must be a JSON object")
	}
	if !protocol.ValidUTF8JSON(body) {
		// On the raw bytes: json.Unmarshal would replace them with U+FFFD.
		return protocol.NewError(protocol.CodeBadRequest, "body is "+protocol.InvalidUTF8)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return protocol.NewError(protocol.CodeBadRequest, te.Field+" has the wrong type")
		}
		return protocol.NewError(protocol.CodeBadRequest, "malformed body")
	}
	return nil
}

func (a *API) requireAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return fail(c, protocol.NewError(protocol.CodeUnauthorized, "missing bearer token"))
		}
		u, err := a.chat.Authenticate(c.Request().Context(), strings.TrimSpace(tok), auth.KindSession)
		if err != nil {
			return fail(c, err)
		}
		c.Set(userKey, u)
		// A room id that cannot exist is an unknown room. Checked here, before any query:
		// PostgreSQL rejects some such ids (a NUL byte), which surfaced as a retryable
		// 503 that a client would retry forever (found by FuzzREST).
		if id := c.Param("id"); id != "" && !protocol.ValidRoomRef(id) {
			return fail(c, protocol.NewError(protocol.CodeNotFound, "no such room"))
		}
		return next(c)
	}
}

func user(c echo.Context) chat.User {
	u, _ := c.Get(userKey).(chat.User)
	return u
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (a *API) register(c echo.Context) error {
	if err := a.allowAddr(c); err != nil {
		return fail(c, err)
	}
	var req credentials
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	u, err := a.chat.Register(c.Request().Context(), req.Username, req.Password)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusCreated, map[string]any{"user": u})
}

func (a *API) login(c echo.Context) error {
	var req credentials
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	if req.Username == "" || req.Password == "" {
		return fail(c, protocol.NewError(protocol.CodeBadRequest, "username and password are required"))
	}
	if err := a.allowAddr(c); err != nil {
		return fail(c, err)
	}
	// An account is charged only for failures, so its owner is not locked out by their own
	// logins; a guesser is, after the burst, whatever address they come from.
	now := a.cfg.Now()
	if ok, wait := a.cfg.LoginAccount.Check(req.Username, now); !ok {
		a.cfg.Metrics.Limited("login_account")
		return fail(c, limitedError("too many failed logins for this account", wait))
	}
	s, err := a.chat.Login(c.Request().Context(), req.Username, req.Password)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeInvalidCredentials {
			a.cfg.LoginAccount.Take(req.Username, now)
		}
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, s)
}

func (a *API) resume(c echo.Context) error {
	var req struct {
		ReconnectToken string `json:"reconnect_token"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	if req.ReconnectToken == "" {
		return fail(c, protocol.NewError(protocol.CodeBadRequest, "reconnect_token is required"))
	}
	s, err := a.chat.Resume(c.Request().Context(), req.ReconnectToken)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, s)
}

func (a *API) me(c echo.Context) error { return c.JSON(http.StatusOK, map[string]any{"user": user(c)}) }

func (a *API) rooms(c echo.Context) error {
	list, err := a.chat.Rooms(c.Request().Context(), user(c))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"mine": list.Mine, "public": list.Public})
}

func (a *API) createRoom(c echo.Context) error {
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	u := user(c)
	r, err := a.chat.CreateRoom(c.Request().Context(), u, req.ID, req.Name)
	if err != nil {
		return fail(c, err)
	}
	a.hub.UserJoined(u.ID, r.ID, 0)
	return c.JSON(http.StatusCreated, r)
}

func (a *API) join(c echo.Context) error {
	u, room := user(c), c.Param("id")
	r, err := a.chat.Join(c.Request().Context(), u, room)
	if err != nil {
		return fail(c, err)
	}
	a.hub.UserJoined(u.ID, room, r.LastSeq)
	return c.JSON(http.StatusOK, map[string]any{"room": room, "last_seq": r.LastSeq})
}

func (a *API) leave(c echo.Context) error {
	u, room := user(c), c.Param("id")
	if err := a.chat.Leave(c.Request().Context(), u, room); err != nil {
		return fail(c, err)
	}
	a.hub.UserLeft(u.ID, room)
	return c.JSON(http.StatusOK, map[string]any{"room": room})
}

func (a *API) members(c echo.Context) error {
	room := c.Param("id")
	ms, err := a.chat.Members(c.Request().Context(), user(c), room)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "members": ms})
}

func queryInt(c echo.Context, name string) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, protocol.NewError(protocol.CodeBadRequest, name+" must be a non-negative integer")
	}
	return n, nil
}

func (a *API) history(c echo.Context) error {
	var q chat.HistoryQuery
	var err error
	if q.Before, err = queryInt(c, "before"); err != nil {
		return fail(c, err)
	}
	if q.After, err = queryInt(c, "after"); err != nil {
		return fail(c, err)
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		return fail(c, err)
	}
	q.Limit = int(min(limit, 1<<20))
	page, err := a.chat.History(c.Request().Context(), user(c), c.Param("id"), q)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": page.Room, "messages": page.Messages, "has_more": page.HasMore})
}

func (a *API) send(c echo.Context) error {
	var req struct {
		ClientMsgID string `json:"client_msg_id"`
		Text        string `json:"text"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	return a.submit(c, chat.SendRequest{Room: c.Param("id"), ClientMsgID: req.ClientMsgID, Text: req.Text})
}

// targetSeq reads the :seq path parameter of an edit or delete.
func targetSeq(c echo.Context) (int64, error) {
	n, err := strconv.ParseInt(c.Param("seq"), 10, 64)
	if err != nil || n < 1 {
		return 0, protocol.NewError(protocol.CodeBadRequest, "seq must be a positive integer")
	}
	return n, nil
}

// clientMsgID returns the request's idempotency key, or a fresh one: REST clients that do
// not retry need not invent one, those that do should send their own.
func clientMsgID(given string) string {
	if given != "" {
		return given
	}
	return uuid.Must(uuid.NewV7()).String()
}

func (a *API) edit(c echo.Context) error {
	seq, err := targetSeq(c)
	if err != nil {
		return fail(c, err)
	}
	var req struct {
		ClientMsgID string `json:"client_msg_id"`
		Text        string `json:"text"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	return a.submit(c, chat.SendRequest{Room: c.Param("id"), ClientMsgID: clientMsgID(req.ClientMsgID), Text: req.Text,
		Kind: event.KindEdit, TargetSeq: seq})
}

func (a *API) remove(c echo.Context) error {
	seq, err := targetSeq(c)
	if err != nil {
		return fail(c, err)
	}
	id := c.QueryParam("client_msg_id")
	if len(id) > 64 {
		return fail(c, protocol.NewError(protocol.CodeBadRequest, "client_msg_id is longer than 64 characters"))
	}
	return a.submit(c, chat.SendRequest{Room: c.Param("id"), ClientMsgID: clientMsgID(id), Kind: event.KindDelete, TargetSeq: seq})
}

// submit rate-limits and publishes a send, edit or delete and answers like POST messages.
func (a *API) submit(c echo.Context, req chat.SendRequest) error {
	if err := a.allowUser(c); err != nil {
		return fail(c, err)
	}
	ack, err := a.chat.Send(c.Request().Context(), user(c), req)
	if err != nil {
		return fail(c, err)
	}
	status := http.StatusAccepted
	if ack.Status == protocol.AckDuplicate {
		status = http.StatusOK
	}
	return c.JSON(status, map[string]any{"room": ack.Room, "client_msg_id": ack.ClientMsgID, "message_id": ack.MessageID, "status": ack.Status, "seq": ack.Seq})
}

func (a *API) openDM(c echo.Context) error {
	u := user(c)
	r, other, err := a.chat.OpenDM(c.Request().Context(), u, c.Param("username"))
	if err != nil {
		return fail(c, err)
	}
	a.hub.UserJoined(u.ID, r.ID, r.LastSeq)
	a.hub.UserJoined(other.ID, r.ID, r.LastSeq)
	return c.JSON(http.StatusOK, map[string]any{"room": protocol.RoomInfo{ID: r.ID, Name: r.Name, Kind: r.Kind, LastSeq: r.LastSeq, Role: r.Role}, "with": other})
}

func (a *API) markRead(c echo.Context) error {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	if e := protocol.ValidateRead(room, req.Seq); e != nil {
		return fail(c, e)
	}
	u := user(c)
	m, err := a.chat.MarkRead(c.Request().Context(), u, room, *req.Seq)
	if err != nil {
		return fail(c, err)
	}
	if rn, ok := a.hub.(ReadNotifier); ok {
		rn.ReadMarked(u.ID, m, nil)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": m.Room, "last_read_seq": m.Seq, "unread": m.Unread})
}

func (a *API) notifications(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return fail(c, err)
	}
	list, err := a.chat.Notifications(c.Request().Context(), user(c), c.QueryParam("before"), int(min(limit, 1<<20)))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"notifications": list.Notifications, "unread_count": list.UnreadCount, "has_more": list.HasMore})
}

func (a *API) unreadNotifications(c echo.Context) error {
	n, err := a.chat.UnreadNotifications(c.Request().Context(), user(c))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"unread_count": n})
}

func (a *API) readNotifications(c echo.Context) error {
	var req struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	res, err := a.chat.MarkNotificationsRead(c.Request().Context(), user(c), req.IDs, req.All)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"marked": res.Marked, "unread_count": res.UnreadCount})
}

func (a *API) users(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"users": a.hub.Users(c.Request().Context())})
}

func (a *API) stats(c echo.Context) error {
	st := a.hub.Stats()
	return c.JSON(http.StatusOK, st)
}
