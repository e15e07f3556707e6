// Roles and room settings of the current room (/role, /mute USER, /unmute USER,
// /transfer, /topic, /rename) and the public room directory (/directory), over the
// WebSocket's request frames like /leave and /history: they need no second channel, and
// a connection dropped before the reply repeats them on the next one. All but /transfer
// repeat harmlessly (changed:false); a transfer that had landed is refused the second
// time (no longer the owner), which the user sees as that error.

package app

import (
	"context"

	"github.com/kchat/kchat/clients/chat/internal/command"
	"github.com/kchat/kchat/pkg/protocol"
)

// roomAdmin runs /role, /mute USER, /unmute USER, /transfer, /topic or /rename on the
// current room; it returns false when the client itself has ended.
func (a *App) roomAdmin(ctx context.Context, cmd command.Command) bool {
	room := a.currentRoom()
	if room == "" {
		a.errf("no current room: /join ROOM first")
		return true
	}
	label := a.render.RoomLabel(room)
	switch cmd.Kind {
	case command.Role:
		f, err := ask[*protocol.RoleSet](ctx, a, &protocol.SetRole{Base: reqBase(protocol.TypeSetRole), Room: room, User: cmd.User, Role: cmd.Text})
		if err != nil {
			return a.reportErr("/role", err)
		}
		if !f.Changed {
			a.errf("%s was %s in %s already", f.User, f.Role, label)
			return true
		}
		a.errf("%s is now %s in %s", f.User, f.Role, label)
	case command.MuteUser, command.UnmuteUser:
		typ, name := protocol.TypeMute, "/mute"
		if cmd.Kind == command.UnmuteUser {
			typ, name = protocol.TypeUnmute, "/unmute"
		}
		f, err := ask[*protocol.MuteResult](ctx, a, &protocol.MuteMember{Base: reqBase(typ), Room: room, User: cmd.User})
		if err != nil {
			return a.reportErr(name, err)
		}
		switch {
		case f.Muted && f.Changed:
			a.errf("muted %s in %s: they read but cannot post until /unmute %s", f.User, label, f.User)
		case f.Muted:
			a.errf("%s was muted in %s already", f.User, label)
		case f.Changed:
			a.errf("unmuted %s in %s", f.User, label)
		default:
			a.errf("%s was not muted in %s", f.User, label)
		}
	case command.Transfer:
		f, err := ask[*protocol.Transferred](ctx, a, &protocol.Transfer{Base: reqBase(protocol.TypeTransfer), Room: room, User: cmd.User})
		if err != nil {
			return a.reportErr("/transfer", err)
		}
		a.errf("%s now owns %s; you are an admin", f.Owner, label)
	case command.Topic, command.Rename:
		req := &protocol.UpdateRoom{Base: reqBase(protocol.TypeUpdateRoom), Room: room}
		name, field := "/topic", "topic"
		if cmd.Kind == command.Rename {
			name, field = "/rename", "name"
		}
		text := cmd.Text
		if cmd.Kind == command.Topic {
			req.Topic = &text
		} else {
			req.Name = &text
		}
		f, err := ask[*protocol.RoomUpdated](ctx, a, req)
		if err != nil {
			return a.reportErr(name, err)
		}
		value := f.Topic
		if cmd.Kind == command.Rename {
			value = f.Name
		}
		a.errf("%s of %s set to %q", field, label, value)
	}
	return true
}

// directory prints the public rooms matching q (first page); it returns false when the
// client itself has ended.
func (a *App) directory(ctx context.Context, q string) bool {
	f, err := ask[*protocol.DirectoryPage](ctx, a, &protocol.Directory{Base: reqBase(protocol.TypeDirectory), Q: q})
	if err != nil {
		return a.reportErr("/directory", err)
	}
	if len(f.Rooms) == 0 {
		a.errf("no public rooms match")
	}
	for _, r := range f.Rooms {
		a.errf("#%s %s (%d members) %s", r.ID, r.Name, r.Members, r.Topic)
	}
	if f.Cursor != "" {
		a.errf("(more: narrow the search)")
	}
	return true
}
