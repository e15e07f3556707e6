// E-mail notification settings (GET/PUT /api/me/email) and the unsubscribe link of the
// digest e-mails (GET /api/email/unsubscribe). Mounted by RegisterEmail beside Register.

package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// EmailSettings is the e-mail logic the API calls (*chat.Email).
type EmailSettings interface {
	Settings(ctx context.Context, u chat.User) (chat.EmailSettings, error)
	SetSettings(ctx context.Context, u chat.User, address string, enabled bool) (chat.EmailSettings, error)
	Unsubscribe(ctx context.Context, token string) error
}

var _ EmailSettings = (*chat.Email)(nil)

// RegisterEmail mounts the e-mail routes under /api on e. The settings are authenticated
// like the other /api/me routes; the unsubscribe link is not, since its signed token is
// the authorization (it is followed from a mail client, without a session).
func (a *API) RegisterEmail(e *echo.Echo, s EmailSettings) {
	g := e.Group("/api")
	g.GET("/email/unsubscribe", func(c echo.Context) error { return unsubscribe(c, s) })
	authed := g.Group("", a.requireAuth)
	authed.GET("/me/email", func(c echo.Context) error {
		st, err := s.Settings(c.Request().Context(), user(c))
		if err != nil {
			return fail(c, err)
		}
		return c.JSON(http.StatusOK, st)
	})
	authed.PUT("/me/email", func(c echo.Context) error {
		// Pointers tell a missing field from false or "": PUT replaces both, so both
		// must be given.
		var req struct {
			Address *string `json:"address"`
			Enabled *bool   `json:"enabled"`
		}
		if err := decode(c, &req); err != nil {
			return fail(c, err)
		}
		if req.Address == nil || req.Enabled == nil {
			return fail(c, protocol.NewError(protocol.CodeBadRequest, "address and enabled are required"))
		}
		st, err := s.SetSettings(c.Request().Context(), user(c), *req.Address, *req.Enabled)
		if err != nil {
			return fail(c, err)
		}
		return c.JSON(http.StatusOK, st)
	})
}

const unsubscribedPage = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>kchat</title></head>
<body><p>E-mail notifications are off for your kchat account. You can turn them on again in kchat.</p></body></html>
`

// unsubscribe answers a browser (a link clicked in a mail client) with a page and any
// other client with JSON.
func unsubscribe(c echo.Context, s EmailSettings) error {
	if err := s.Unsubscribe(c.Request().Context(), c.QueryParam("token")); err != nil {
		return fail(c, err)
	}
	if strings.Contains(c.Request().Header.Get("Accept"), "text/html") {
		return c.HTML(http.StatusOK, unsubscribedPage)
	}
	return c.JSON(http.StatusOK, map[string]bool{"enabled": false})
}
