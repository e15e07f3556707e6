// Role, mute, transfer, room settings and directory frames: the WebSocket side of REST's
// role routes (api/roles.go), calling the same chat.Service methods so that both
// channels check, store and refuse alike.

package hub

import (
	"context"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// Roles is the role and room settings logic the sessions call (*chat.Service).
type Roles interface {
	SetRole(ctx context.Context, u chat.User, roomID, username, role string) (chat.User, bool, error)
	Mute(ctx context.Context, u chat.User, roomID, username string, muted bool) (chat.User, bool, error)
	Transfer(ctx context.Context, u chat.User, roomID, username string) (chat.User, error)
	UpdateRoom(ctx context.Context, u chat.User, roomID string, rs chat.RoomSettings) (chat.UpdatedRoom, error)
	Directory(ctx context.Context, q, cursor string, limit int) (chat.DirectoryPage, error)
}

var _ Roles = (*chat.Service)(nil)

// roles answers set_role, mute, unmute, transfer, update_room and directory. Errors of
// room-scoped frames name the room, as other room frames' errors do.
func (s *Session) roles(ctx context.Context, u chat.User, ref string, f protocol.Frame) {
	base := func(typ string) protocol.Base { return protocol.Base{Type: typ, Ref: ref} }
	switch f := f.(type) {
	case *protocol.SetRole:
		to, changed, err := s.hub.chat.SetRole(ctx, u, f.Room, f.User, f.Role)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		s.reply(protocol.TypeRoleSet, protocol.RoleSet{Base: base(protocol.TypeRoleSet), Room: f.Room, User: to.Username, Role: f.Role, Changed: changed})
	case *protocol.MuteMember:
		muted := f.Type == protocol.TypeMute
		to, changed, err := s.hub.chat.Mute(ctx, u, f.Room, f.User, muted)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		typ := protocol.TypeUnmuted
		if muted {
			typ = protocol.TypeMuted
		}
		s.reply(typ, protocol.MuteResult{Base: base(typ), Room: f.Room, User: to.Username, Muted: muted, Changed: changed})
	case *protocol.Transfer:
		to, err := s.hub.chat.Transfer(ctx, u, f.Room, f.User)
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		s.reply(protocol.TypeTransferred, protocol.Transferred{Base: base(protocol.TypeTransferred), Room: f.Room, Owner: to.Username})
	case *protocol.UpdateRoom:
		r, err := s.hub.chat.UpdateRoom(ctx, u, f.Room, chat.RoomSettings{Name: f.Name, Topic: f.Topic, Private: f.Private})
		if err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		s.reply(protocol.TypeRoomUpdated, protocol.RoomUpdated{Base: base(protocol.TypeRoomUpdated), Room: r.ID, Name: r.Name, Topic: r.Topic, Private: r.Private, Changed: r.Changed})
	case *protocol.Directory:
		page, err := s.hub.chat.Directory(ctx, f.Q, f.Cursor, f.Limit)
		if err != nil {
			s.replyErr(ref, err)
			return
		}
		out := protocol.DirectoryPage{Base: base(protocol.TypeDirectory), Rooms: make([]protocol.DirectoryRoom, 0, len(page.Rooms)), Cursor: page.Cursor}
		for _, r := range page.Rooms {
			out.Rooms = append(out.Rooms, protocol.DirectoryRoom{ID: r.ID, Name: r.Name, Topic: r.Topic, Members: r.Members})
		}
		s.reply(protocol.TypeDirectory, out)
	}
}
