// GET /api/rooms/{id}: a room's details for the asking user.

package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// roomDetails answers the room's name, topic, privacy, member count and the caller's role
// and mute, which the web page shows in its header and composer.
func (a *API) roomDetails(c echo.Context) error {
	d, err := a.chat.RoomDetails(c.Request().Context(), user(c), c.Param("id"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, d)
}
