// Notification preferences: GET/PUT /api/me/notification-preferences (default level,
// do-not-disturb hours; e-mail shown alongside) and PUT/DELETE
// /api/rooms/{id}/notification-preferences (a room's level and mute). Mounted by
// RegisterPrefs beside Register.

package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// NotificationPrefs is the preferences logic the API calls (*chat.Prefs).
type NotificationPrefs interface {
	Get(ctx context.Context, u chat.User) (chat.NotificationPrefs, error)
	SetDefaults(ctx context.Context, u chat.User, level string, dnd *chat.DND) (chat.NotificationPrefs, error)
	SetRoom(ctx context.Context, u chat.User, roomID string, level *string, mutedUntil *time.Time) (prefs.RoomSetting, error)
	DeleteRoom(ctx context.Context, u chat.User, roomID string) (prefs.RoomSetting, error)
}

var _ NotificationPrefs = (*chat.Prefs)(nil)

// RegisterPrefs mounts the preference routes under /api on e, authenticated like the
// other /api/me routes.
func (a *API) RegisterPrefs(e *echo.Echo, p NotificationPrefs) {
	authed := e.Group("/api", a.requireAuth)
	authed.GET("/me/notification-preferences", func(c echo.Context) error {
		out, err := p.Get(c.Request().Context(), user(c))
		return prefsReply(c, out, err)
	})
	authed.PUT("/me/notification-preferences", func(c echo.Context) error {
		// PUT replaces: level is required, a missing or null dnd means none.
		var req struct {
			Level *string   `json:"level"`
			DND   *chat.DND `json:"dnd"`
		}
		if err := decode(c, &req); err != nil {
			return fail(c, err)
		}
		if req.Level == nil {
			return fail(c, protocol.NewError(protocol.CodeBadRequest, "level is required (all, mentions or none)"))
		}
		out, err := p.SetDefaults(c.Request().Context(), user(c), *req.Level, req.DND)
		return prefsReply(c, out, err)
	})
	authed.PUT("/rooms/:id/notification-preferences", func(c echo.Context) error {
		// Missing and null are the same: the user's default level, not muted.
		var req struct {
			Level      *string          `json:"level"`
			MutedUntil *json.RawMessage `json:"muted_until"`
		}
		if err := decode(c, &req); err != nil {
			return fail(c, err)
		}
		var until *time.Time
		if req.MutedUntil != nil && string(*req.MutedUntil) != "null" {
			var s string
			if json.Unmarshal(*req.MutedUntil, &s) != nil {
				s = "" // not a string: refused below with the same message
			}
			t, perr := protocol.ParseMutedUntil(s)
			if perr != nil {
				return fail(c, perr)
			}
			until = &t
		}
		out, err := p.SetRoom(c.Request().Context(), user(c), c.Param("id"), req.Level, until)
		return prefsReply(c, out, err)
	})
	authed.DELETE("/rooms/:id/notification-preferences", func(c echo.Context) error {
		out, err := p.DeleteRoom(c.Request().Context(), user(c), c.Param("id"))
		return prefsReply(c, out, err)
	})
}

func prefsReply(c echo.Context, v any, err error) error {
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, v)
}
