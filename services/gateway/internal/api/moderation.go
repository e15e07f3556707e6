// Moderation by room admins: the handlers of /rooms/{id}/kick and /rooms/{id}/bans.

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/services/gateway/internal/hub"
)

// Remover is implemented by hubs that tell a removed user's connections why they stop
// following a room (*hub.Hub does); others just unsubscribe them (UserLeft).
type Remover interface {
	UserRemoved(userID, room, reason string)
}

var _ Remover = (*hub.Hub)(nil)

// removed unsubscribes the removed user's connections on this gateway at once.
func (a *API) removed(userID, room, change string) {
	if r, ok := a.hub.(Remover); ok {
		r.UserRemoved(userID, room, change)
		return
	}
	a.hub.UserLeft(userID, room)
}

// kick removes a member; their connections on this gateway stop following the room at
// once (other gateways' when the leave entry reaches them).
func (a *API) kick(c echo.Context) error {
	var req usernameBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	to, removed, err := a.chat.Kick(c.Request().Context(), user(c), room, req.Username)
	if err != nil {
		return fail(c, err)
	}
	if removed {
		a.removed(to.ID, room, event.ChangeKicked)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": to.Username, "kicked": removed})
}

func (a *API) ban(c echo.Context) error {
	var req usernameBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	to, removed, err := a.chat.Ban(c.Request().Context(), user(c), room, req.Username)
	if err != nil {
		return fail(c, err)
	}
	if removed {
		a.removed(to.ID, room, event.ChangeBanned)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": to.Username, "banned": true, "removed": removed})
}

func (a *API) unban(c echo.Context) error {
	room, name := c.Param("id"), c.Param("username")
	lifted, err := a.chat.Unban(c.Request().Context(), user(c), room, name)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": name, "unbanned": lifted})
}
