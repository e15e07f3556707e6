// Moderation of the current room by its admins: /kick, /ban and /unban, over REST.

package app

import (
	"context"
	"net/http"
	"net/url"

	"github.com/kchat/kchat/clients/chat/internal/command"
)

// moderate runs /kick, /ban or /unban on the current room; it returns false when the
// client itself has ended.
func (a *App) moderate(ctx context.Context, cmd command.Command) bool {
	room := a.currentRoom()
	if room == "" {
		a.errf("no current room: /join ROOM first")
		return true
	}
	a.mu.Lock()
	base, tok := a.httpBase, a.session
	a.mu.Unlock()
	roomURL := base + "/api/rooms/" + url.PathEscape(room)
	var res struct {
		Kicked, Removed, Unbanned bool
	}
	var err error
	switch cmd.Kind {
	case command.Kick:
		err = a.rest.post(ctx, roomURL+"/kick", tok, map[string]string{"username": cmd.User}, &res)
	case command.Ban:
		err = a.rest.post(ctx, roomURL+"/bans", tok, map[string]string{"username": cmd.User}, &res)
	case command.Unban:
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodDelete, roomURL+"/bans/"+url.PathEscape(cmd.User), nil)
		if err == nil {
			err = a.rest.do(req, tok, &res)
		}
	}
	if err != nil {
		a.errf("/%s: %v", map[command.Kind]string{command.Kick: "kick", command.Ban: "ban", command.Unban: "unban"}[cmd.Kind], err)
		return true
	}
	switch {
	case cmd.Kind == command.Kick && res.Kicked:
		a.errf("kicked %s from %s", cmd.User, a.render.RoomLabel(room))
	case cmd.Kind == command.Kick:
		a.errf("%s is not in %s", cmd.User, a.render.RoomLabel(room))
	case cmd.Kind == command.Ban:
		a.errf("banned %s from %s", cmd.User, a.render.RoomLabel(room))
	case res.Unbanned:
		a.errf("lifted %s's ban from %s", cmd.User, a.render.RoomLabel(room))
	default:
		a.errf("%s was not banned from %s", cmd.User, a.render.RoomLabel(room))
	}
	return true
}
