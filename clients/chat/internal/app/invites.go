// Private rooms' invitations: /invite, /invites, /accept and /decline, over REST (the
// WebSocket protocol has no invitation frames).

package app

import (
	"context"
	"fmt"
	"net/url"

	"github.com/kchat/kchat/clients/chat/internal/command"
	"github.com/kchat/kchat/pkg/protocol"
)

// invitation runs one of the invitation commands; it returns false when the client
// itself has ended.
func (a *App) invitation(ctx context.Context, cmd command.Command) bool {
	a.mu.Lock()
	base, tok := a.httpBase, a.session
	a.mu.Unlock()
	switch cmd.Kind {
	case command.Invite:
		room := a.currentRoom()
		if room == "" {
			a.errf("no current room: /join ROOM first")
			return true
		}
		var inv protocol.Invite
		if err := a.rest.post(ctx, base+"/api/rooms/"+url.PathEscape(room)+"/invites", tok, map[string]string{"username": cmd.User}, &inv); err != nil {
			a.errf("/invite: %v", err)
			return true
		}
		a.errf("invited %s to #%s until %s", inv.Username, inv.Room, inv.ExpiresAt.In(a.loc()).Format("Jan 2 15:04"))
	case command.Invites:
		var list struct {
			Invites []protocol.Invite `json:"invites"`
		}
		if err := a.rest.get(ctx, base+"/api/me/invites", tok, &list); err != nil {
			a.errf("/invites: %v", err)
			return true
		}
		out := []string{"--- invitations ---"}
		for _, inv := range list.Invites {
			out = append(out, fmt.Sprintf("  #%s from %s, until %s: /accept %s or /decline %s", inv.Room, inv.InvitedBy,
				inv.ExpiresAt.In(a.loc()).Format("Jan 2 15:04"), inv.Room, inv.Room))
		}
		if len(list.Invites) == 0 {
			out = append(out, "  (none)")
		}
		a.printLines(out)
	case command.Accept:
		if err := a.rest.post(ctx, base+"/api/me/invites/"+url.PathEscape(cmd.Room)+"/accept", tok, nil, nil); err != nil {
			a.errf("/accept: %v", err)
			return true
		}
		// Join over the connection too, so that it follows the room at once (the accept
		// went to the gateway over REST); joining a room one is in changes nothing.
		if _, err := ask[*protocol.Membership](ctx, a, &protocol.Join{Base: reqBase(protocol.TypeJoin), Room: cmd.Room}); err != nil {
			return a.reportErr("/accept", err)
		}
		a.mu.Lock()
		a.current = cmd.Room
		a.mu.Unlock()
		a.errf("now in %s", a.render.RoomLabel(cmd.Room))
	case command.Decline:
		if err := a.rest.post(ctx, base+"/api/me/invites/"+url.PathEscape(cmd.Room)+"/decline", tok, nil, nil); err != nil {
			a.errf("/decline: %v", err)
			return true
		}
		a.errf("declined #%s", cmd.Room)
	}
	return true
}
