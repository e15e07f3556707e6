// Web Push: GET /api/push/vapid-public-key (what a browser subscribes with) and
// POST/DELETE /api/me/push-subscriptions (a device's PushSubscription). Mounted by
// RegisterPush beside Register.

package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// PushSubscriptions is the push logic the API calls (*chat.Push).
type PushSubscriptions interface {
	PublicKey() (string, error)
	Subscribe(ctx context.Context, u chat.User, s webpush.Subscription) (chat.PushSubscription, error)
	Unsubscribe(ctx context.Context, u chat.User, endpoint string) (bool, error)
}

var _ PushSubscriptions = (*chat.Push)(nil)

// RegisterPush mounts the push routes under /api on e. The public key needs no session
// (it is public); the subscriptions are per user.
func (a *API) RegisterPush(e *echo.Echo, p PushSubscriptions) {
	g := e.Group("/api")
	g.GET("/push/vapid-public-key", func(c echo.Context) error {
		k, err := p.PublicKey()
		if err != nil {
			return fail(c, err)
		}
		return c.JSON(http.StatusOK, map[string]string{"public_key": k})
	})
	authed := g.Group("", a.requireAuth)
	authed.POST("/me/push-subscriptions", func(c echo.Context) error {
		// The shape of PushSubscription.toJSON(); expirationTime is accepted and ignored.
		var req struct {
			Endpoint *string `json:"endpoint"`
			Keys     *struct {
				P256dh string `json:"p256dh"`
				Auth   string `json:"auth"`
			} `json:"keys"`
		}
		if err := decode(c, &req); err != nil {
			return fail(c, err)
		}
		if req.Endpoint == nil || req.Keys == nil {
			return fail(c, protocol.NewError(protocol.CodeBadRequest, "endpoint and keys {p256dh, auth} are required"))
		}
		out, err := p.Subscribe(c.Request().Context(), user(c), webpush.Subscription{Endpoint: *req.Endpoint, P256dh: req.Keys.P256dh, Auth: req.Keys.Auth})
		if err != nil {
			return fail(c, err)
		}
		return c.JSON(http.StatusOK, out)
	})
	authed.DELETE("/me/push-subscriptions", func(c echo.Context) error {
		var req struct {
			Endpoint string `json:"endpoint"`
		}
		if err := decode(c, &req); err != nil {
			return fail(c, err)
		}
		removed, err := p.Unsubscribe(c.Request().Context(), user(c), req.Endpoint)
		if err != nil {
			return fail(c, err)
		}
		return c.JSON(http.StatusOK, map[string]bool{"removed": removed})
	})
}
