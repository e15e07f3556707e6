// Threads over REST: a thread's page of replies and the caller's thread read marker.
// Replies themselves are sent with POST .../messages and a thread_root.

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
)

func (a *API) thread(c echo.Context) error {
	root, err := targetSeq(c)
	if err != nil {
		return fail(c, err)
	}
	after, err := queryInt(c, "after")
	if err != nil {
		return fail(c, err)
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		return fail(c, err)
	}
	page, err := a.chat.Thread(c.Request().Context(), user(c), c.Param("id"), root, after, int(min(limit, 1<<20)))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": page.Room, "root": page.Root, "messages": page.Messages, "has_more": page.HasMore})
}

func (a *API) markThreadRead(c echo.Context) error {
	root, err := targetSeq(c)
	if err != nil {
		return fail(c, err)
	}
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	if e := protocol.ValidateThreadRead(room, root, req.Seq); e != nil {
		return fail(c, e)
	}
	m, err := a.chat.MarkThreadRead(c.Request().Context(), user(c), room, root, *req.Seq)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": m.Room, "root": m.Root, "last_read_seq": m.Seq, "unread": m.Unread})
}
