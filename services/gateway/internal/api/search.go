// GET /api/search: full-text search over the messages of the rooms the user is in now
// (pkg/search holds the query and the authorization rule; docs/search.md).

package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/search"
)

// Searcher runs searches (*search.Searcher).
type Searcher interface {
	Search(ctx context.Context, q search.Query) (search.Page, error)
}

var _ Searcher = (*search.Searcher)(nil)

// searchTimeout bounds one search: a query the planner misjudges must not hold a pooled
// connection for long. chatbench's worst p99 on a million messages is tens of ms.
const searchTimeout = 5 * time.Second

func (a *API) search(c echo.Context) error {
	if a.cfg.Search == nil {
		return fail(c, protocol.NewError(protocol.CodeUnavailable, "search is not configured on this gateway"))
	}
	q, err := searchQuery(c)
	if err != nil {
		return fail(c, err)
	}
	q.UserID = user(c).ID // what confines the search to the user's rooms
	ctx, cancel := context.WithTimeout(c.Request().Context(), searchTimeout)
	defer cancel()
	page, err := a.cfg.Search.Search(ctx, q)
	var inv *search.InvalidError
	switch {
	case errors.As(err, &inv):
		return fail(c, protocol.NewError(protocol.CodeBadRequest, inv.Msg))
	case errors.Is(err, context.DeadlineExceeded) && c.Request().Context().Err() == nil:
		return fail(c, protocol.NewError(protocol.CodeUnavailable, "the search took too long; add words or filters").Retry())
	case err != nil:
		if a.cfg.Logger != nil {
			a.cfg.Logger.Error("search failed", "user_id", q.UserID, "error", err)
		}
		return fail(c, protocol.NewError(protocol.CodeInternal, "internal error"))
	}
	return c.JSON(http.StatusOK, page)
}

// searchQuery reads the query parameters; pkg/search validates the rest.
func searchQuery(c echo.Context) (search.Query, error) {
	q := search.Query{
		Text:   c.QueryParam("q"),
		Room:   c.QueryParam("room"),
		Sender: c.QueryParam("sender"),
		Cursor: c.QueryParam("cursor"),
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > search.MaxLimit {
			return q, protocol.NewError(protocol.CodeBadRequest, "limit must be an integer between 1 and "+strconv.Itoa(search.MaxLimit))
		}
		q.Limit = n
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		v := c.QueryParam(t.name)
		if v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return q, protocol.NewError(protocol.CodeBadRequest, t.name+" must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")
		}
		*t.dst = at
	}
	return q, nil
}
