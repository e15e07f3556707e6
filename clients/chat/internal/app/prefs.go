package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/kchat/kchat/clients/chat/internal/command"
)

// put is post with PUT.
func (r *rest) put(ctx context.Context, url, token string, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return r.do(req, token, out)
}

// prefsView is the part of GET /api/me/notification-preferences the commands keep when
// they replace one setting (PUT replaces the whole object).
type prefsView struct {
	Level string          `json:"level"`
	DND   json.RawMessage `json:"dnd"`
	Rooms []struct {
		Room       string     `json:"room"`
		Level      *string    `json:"level"`
		MutedUntil *time.Time `json:"muted_until"`
	} `json:"rooms"`
}

// setPrefs runs /notify and /mute over REST (preferences have no WebSocket frame).
func (a *App) setPrefs(ctx context.Context, cmd command.Command) {
	a.mu.Lock()
	base, tok := a.httpBase, a.session
	a.mu.Unlock()
	name := "/notify"
	if cmd.Kind == command.Mute {
		name = "/mute"
	}
	var cur prefsView
	if err := a.rest.get(ctx, base+"/api/me/notification-preferences", tok, &cur); err != nil {
		a.errf("%s: %v", name, err)
		return
	}
	if cmd.Kind == command.Notify && cmd.Room == "" {
		body := map[string]any{"level": cmd.Text, "dnd": cur.DND}
		if err := a.rest.put(ctx, base+"/api/me/notification-preferences", tok, body, nil); err != nil {
			a.errf("%s: %v", name, err)
			return
		}
		a.errf("notifications: %s (rooms with a level of their own keep it)", cmd.Text)
		return
	}
	room := cmd.Room
	if room == "" {
		room = a.currentRoom()
	}
	if room == "" {
		a.errf("%s: no current room: give ROOM or /join one", name)
		return
	}
	body := map[string]any{"level": nil, "muted_until": nil}
	for _, r := range cur.Rooms {
		if r.Room == room {
			body["level"], body["muted_until"] = r.Level, r.MutedUntil
		}
	}
	var said string
	switch {
	case cmd.Kind == command.Notify && cmd.Text == "default":
		body["level"], said = nil, "your default level"
	case cmd.Kind == command.Notify:
		body["level"], said = cmd.Text, cmd.Text
	case cmd.N == 0:
		body["muted_until"], said = nil, "unmuted"
	default:
		until := time.Now().Add(time.Duration(cmd.N) * time.Minute)
		body["muted_until"], said = until.UTC().Format(time.RFC3339), "muted until "+until.In(a.loc()).Format("Jan 2 15:04")
	}
	if err := a.rest.put(ctx, base+"/api/rooms/"+url.PathEscape(room)+"/notification-preferences", tok, body, nil); err != nil {
		a.errf("%s: %v", name, err)
		return
	}
	a.errf("%s: %s", a.render.RoomLabel(room), said)
}
