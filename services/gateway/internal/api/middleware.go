// Middleware and per-request guards: security headers, bearer-token authentication, and
// the rate limits on sends (per user) and on logins and registrations (per address).

package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/hub"
)

const userKey = "kchat.user"

// SecurityHeaders sets the headers every response should carry. The CSP here is the
// strict default for API answers; the web page sets its own (scripts, styles and
// WebSocket connections from its origin), which replaces this one on the page's files.
// API answers hold tokens and private messages, so they are never cached. HSTS is HSTS's
// own middleware, as it depends on how the request arrived.
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

// HSTS tells browsers to use only HTTPS for this host for maxAge. It is sent on answers
// that came over TLS: to the gateway itself, or, when trustProxy is set, to a
// TLS-terminating proxy in front that says so in X-Forwarded-Proto (browsers ignore the
// header on plain HTTP, so a forged X-Forwarded-Proto gains nothing). Zero: never sent.
func HSTS(maxAge time.Duration, trustProxy bool) echo.MiddlewareFunc {
	value := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if maxAge <= 0 {
			return next
		}
		return func(c echo.Context) error {
			if c.IsTLS() || (trustProxy && strings.EqualFold(c.Request().Header.Get(echo.HeaderXForwardedProto), "https")) {
				c.Response().Header().Set("Strict-Transport-Security", value)
			}
			return next(c)
		}
	}
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
