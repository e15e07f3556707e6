// Roles and room settings of the current room (/role, /transfer, /topic, /rename) and the
// public room directory (/directory), over REST.

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/kchat/kchat/clients/chat/internal/command"
)

// roomAdmin runs /role, /transfer, /topic or /rename on the current room.
func (a *App) roomAdmin(ctx context.Context, cmd command.Command) bool {
	room := a.currentRoom()
	if room == "" {
		a.errf("no current room: /join ROOM first")
		return true
	}
	a.mu.Lock()
	base, tok := a.httpBase, a.session
	a.mu.Unlock()
	roomURL := base + "/api/rooms/" + url.PathEscape(room)
	var err error
	var done string
	switch cmd.Kind {
	case command.Role:
		var res struct{ Changed bool }
		err = a.rest.post(ctx, roomURL+"/members/"+url.PathEscape(cmd.User)+"/role", tok, map[string]string{"role": cmd.Text}, &res)
		done = fmt.Sprintf("%s is now %s in %s", cmd.User, cmd.Text, a.render.RoomLabel(room))
	case command.Transfer:
		err = a.rest.post(ctx, roomURL+"/transfer", tok, map[string]string{"username": cmd.User}, nil)
		done = fmt.Sprintf("%s now owns %s; you are an admin", cmd.User, a.render.RoomLabel(room))
	case command.Topic, command.Rename:
		field := map[command.Kind]string{command.Topic: "topic", command.Rename: "name"}[cmd.Kind]
		err = a.patch(ctx, roomURL, tok, map[string]string{field: cmd.Text})
		done = fmt.Sprintf("%s of %s set to %q", field, a.render.RoomLabel(room), cmd.Text)
	}
	if err != nil {
		a.errf("%v", err)
		return true
	}
	a.errf("%s", done)
	return true
}

func (a *App) patch(ctx context.Context, u, tok string, body any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return a.rest.do(req, tok, nil)
}

// directory prints the public rooms matching q (first page).
func (a *App) directory(ctx context.Context, q string) bool {
	a.mu.Lock()
	base, tok := a.httpBase, a.session
	a.mu.Unlock()
	var res struct {
		Rooms []struct {
			ID, Name, Topic string
			Members         int
		}
		Cursor string
	}
	if err := a.rest.get(ctx, base+"/api/rooms/directory?q="+url.QueryEscape(q), tok, &res); err != nil {
		a.errf("/directory: %v", err)
		return true
	}
	if len(res.Rooms) == 0 {
		a.errf("no public rooms match")
	}
	for _, r := range res.Rooms {
		a.errf("#%s %s (%d members) %s", r.ID, r.Name, r.Members, r.Topic)
	}
	if res.Cursor != "" {
		a.errf("(more: narrow the search)")
	}
	return true
}
