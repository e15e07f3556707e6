// Roles and muting: the handlers of /rooms/{id}/members/{username}/role and .../mute.

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/services/gateway/internal/chat"
)

type roleBody struct {
	Role string `json:"role"`
}

func (a *API) setRole(c echo.Context) error {
	var req roleBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	to, changed, err := a.chat.SetRole(c.Request().Context(), user(c), room, c.Param("username"), req.Role)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": to.Username, "role": req.Role, "changed": changed})
}

// mute mutes (POST) or unmutes (DELETE) a member.
func (a *API) mute(c echo.Context) error {
	room := c.Param("id")
	muted := c.Request().Method == http.MethodPost
	to, changed, err := a.chat.Mute(c.Request().Context(), user(c), room, c.Param("username"), muted)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": to.Username, "muted": muted, "changed": changed})
}

// transfer hands the room's ownership to the member named in the body.
func (a *API) transfer(c echo.Context) error {
	var req usernameBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	to, err := a.chat.Transfer(c.Request().Context(), user(c), room, req.Username)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "owner": to.Username})
}

// updateRoom renames the room, sets its topic or its privacy.
func (a *API) updateRoom(c echo.Context) error {
	var req chat.RoomSettings
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	r, err := a.chat.UpdateRoom(c.Request().Context(), user(c), c.Param("id"), req)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, r)
}

// directory pages through the public rooms.
func (a *API) directory(c echo.Context) error {
	limit, err := queryInt(c, "limit")
	if err != nil {
		return fail(c, err)
	}
	page, err := a.chat.Directory(c.Request().Context(), c.QueryParam("q"), c.QueryParam("cursor"), int(limit))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, page)
}
