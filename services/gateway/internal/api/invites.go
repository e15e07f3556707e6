// Private rooms' invitations and an admin's direct add: the handlers of /rooms/{id}/invites,
// /rooms/{id}/members (POST) and /me/invites.

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
)

type usernameBody struct {
	Username string `json:"username"`
}

func (a *API) invite(c echo.Context) error {
	var req usernameBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	inv, err := a.chat.Invite(c.Request().Context(), user(c), c.Param("id"), req.Username)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusCreated, inv)
}

func (a *API) revokeInvite(c echo.Context) error {
	room := c.Param("id")
	revoked, err := a.chat.RevokeInvite(c.Request().Context(), user(c), room, c.Param("username"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": c.Param("username"), "revoked": revoked})
}

func (a *API) invites(c echo.Context) error {
	list, err := a.chat.Invites(c.Request().Context(), user(c))
	if err != nil {
		return fail(c, err)
	}
	if list == nil {
		list = []protocol.Invite{}
	}
	return c.JSON(http.StatusOK, map[string]any{"invites": list})
}

// acceptInvite answers like join, and subscribes the user's connections on this gateway
// the same way (other gateways follow the join entry).
func (a *API) acceptInvite(c echo.Context) error {
	u, room := user(c), c.Param("id")
	r, err := a.chat.AcceptInvite(c.Request().Context(), u, room)
	if err != nil {
		return fail(c, err)
	}
	a.hub.UserJoined(u.ID, room, r.LastSeq)
	return c.JSON(http.StatusOK, map[string]any{"room": room, "last_seq": r.LastSeq})
}

func (a *API) declineInvite(c echo.Context) error {
	room := c.Param("id")
	if err := a.chat.DeclineInvite(c.Request().Context(), user(c), room); err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room})
}

func (a *API) addMember(c echo.Context) error {
	var req usernameBody
	if err := decode(c, &req); err != nil {
		return fail(c, err)
	}
	room := c.Param("id")
	r, added, err := a.chat.AddMember(c.Request().Context(), user(c), room, req.Username)
	if err != nil {
		return fail(c, err)
	}
	a.hub.UserJoined(added.ID, room, r.LastSeq)
	return c.JSON(http.StatusOK, map[string]any{"room": room, "username": added.Username})
}
