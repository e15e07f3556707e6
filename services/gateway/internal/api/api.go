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

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/protocol"
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
}

var _ Chat = (*chat.Service)(nil)

// Hub is the connection state the API touches (*hub.Hub).
type Hub interface {
	UserJoined(userID, room string, lastSeq int64)
	UserLeft(userID, room string)
	Users(ctx context.Context) []protocol.OnlineUser
	Stats() protocol.StatsReply
}

// API holds the handlers.
type API struct {
	chat Chat
	hub  Hub
}

// New returns the API.
func New(c Chat, h Hub) *API { return &API{chat: c, hub: h} }

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
	authed.POST("/dms/:username", a.openDM)
	authed.GET("/users", a.users)
	authed.GET("/stats", a.stats)
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable,omitempty"`
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
	return c.JSON(Status(pe.Code), ErrorBody{Code: pe.Code, Message: pe.Message, Retryable: pe.Retryable})
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
	s, err := a.chat.Login(c.Request().Context(), req.Username, req.Password)
	if err != nil {
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
	ack, err := a.chat.Send(c.Request().Context(), user(c), chat.SendRequest{Room: c.Param("id"), ClientMsgID: req.ClientMsgID, Text: req.Text})
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

func (a *API) users(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"users": a.hub.Users(c.Request().Context())})
}

func (a *API) stats(c echo.Context) error {
	st := a.hub.Stats()
	return c.JSON(http.StatusOK, st)
}
