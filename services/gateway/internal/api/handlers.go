// The route handlers: each validates its HTTP input, calls the chat logic and renders the
// answer or the error.

package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// decode reads a JSON body of at most 64 KiB into v.
func decode(c echo.Context, v any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeBody(body, v)
}

// decodeOptional is decode for a request whose body may be left out (empty).
func decodeOptional(c echo.Context, v any) error {
	body, err := readBody(c)
	if err != nil || len(strings.TrimSpace(string(body))) == 0 {
		return err
	}
	return decodeBody(body, v)
}

func readBody(c echo.Context) ([]byte, error) {
	if c.Request().Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 64<<10+1))
	if err != nil {
		return nil, protocol.NewError(protocol.CodeBadRequest, "cannot read body")
	}
	if len(body) > 64<<10 {
		return nil, protocol.NewError(protocol.CodeTooLarge, "body is larger than 64 KiB")
	}
	return body, nil
}

func decodeBody(body []byte, v any) error {
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
		ID      string `json:"id"`
		Name    string `json:"name"`
		Private bool   `json:"private"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	u := user(c)
	r, err := a.chat.CreateRoom(c.Request().Context(), u, req.ID, req.Name, req.Private)
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

// leaveBody is the leave's optional body; the successor may be given as a query
// parameter instead.
type leaveBody struct {
	Successor string `json:"successor"`
}

func (a *API) leave(c echo.Context) error {
	u, room := user(c), c.Param("id")
	req := leaveBody{Successor: c.QueryParam("successor")}
	var body leaveBody
	if err := decodeOptional(c, &body); err != nil {
		return fail(c, err)
	}
	if body.Successor != "" {
		req.Successor = body.Successor
	}
	if req.Successor != "" && !protocol.ValidUsername(req.Successor) {
		return fail(c, protocol.NewError(protocol.CodeBadRequest, "successor is not a valid username"))
	}
	if err := a.chat.Leave(c.Request().Context(), u, room, req.Successor); err != nil {
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
		ClientMsgID string   `json:"client_msg_id"`
		Text        string   `json:"text"`
		Attachments []string `json:"attachments"`
		ThreadRoot  int64    `json:"thread_root"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	return a.submit(c, chat.SendRequest{Room: c.Param("id"), ClientMsgID: req.ClientMsgID, Text: req.Text, Attachments: req.Attachments,
		ThreadRoot: req.ThreadRoot})
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

// react toggles the caller's emoji on a message. on is required: a missing one is refused
// rather than read as "remove".
func (a *API) react(c echo.Context) error {
	seq, err := targetSeq(c)
	if err != nil {
		return fail(c, err)
	}
	var req struct {
		ClientMsgID string `json:"client_msg_id"`
		Emoji       string `json:"emoji"`
		On          *bool  `json:"on"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	id := clientMsgID(req.ClientMsgID)
	if e := protocol.ValidateReact(c.Param("id"), id, seq, req.Emoji, req.On, protocol.Limits{}); e != nil {
		return fail(c, e)
	}
	return a.submit(c, chat.SendRequest{Room: c.Param("id"), ClientMsgID: id, Kind: event.KindReaction, TargetSeq: seq,
		Emoji: req.Emoji, On: *req.On})
}

// submit rate-limits and publishes a send, edit or delete and answers like POST messages.
func (a *API) submit(c echo.Context, req chat.SendRequest) error {
	if err := a.allowUser(c); err != nil {
		return fail(c, err)
	}
	ctx, endSpan := chat.TraceSend(c.Request().Context(), "rest", user(c), req)
	ack, err := a.chat.Send(ctx, user(c), req)
	endSpan(ack, err)
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
