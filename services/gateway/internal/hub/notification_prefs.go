package hub

import (
	"context"
	"time"

	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// Prefs is the notification preferences logic the hub's sessions call (*chat.Prefs), the
// same the REST routes call, so that both channels validate and store alike.
type Prefs interface {
	Get(ctx context.Context, u chat.User) (chat.NotificationPrefs, error)
	SetDefaults(ctx context.Context, u chat.User, level string, dnd *chat.DND) (chat.NotificationPrefs, error)
	SetRoom(ctx context.Context, u chat.User, roomID string, level *string, mutedUntil *time.Time) (prefs.RoomSetting, error)
}

var _ Prefs = (*chat.Prefs)(nil)

// UsePrefs enables the notification preference frames; call it before the hub serves.
// Without it they answer unavailable.
func (h *Hub) UsePrefs(p Prefs) { h.prefs = p }

// notificationPrefs answers notification_prefs, set_notification_prefs and
// set_room_notification_prefs.
func (s *Session) notificationPrefs(ctx context.Context, u chat.User, ref string, f protocol.Frame) {
	p := s.hub.prefs
	if p == nil {
		s.replyErr(ref, protocol.NewError(protocol.CodeUnavailable, "notification preferences are not configured on this gateway"))
		return
	}
	var (
		all  chat.NotificationPrefs
		room prefs.RoomSetting
		err  error
	)
	switch f := f.(type) {
	case *protocol.GetNotificationPrefs:
		all, err = p.Get(ctx, u)
	case *protocol.SetNotificationPrefs:
		all, err = p.SetDefaults(ctx, u, *f.Level, f.DND) // Decode refused a missing level
	case *protocol.SetRoomNotificationPrefs:
		var until *time.Time
		if f.MutedUntil != nil {
			t, perr := protocol.ParseMutedUntil(*f.MutedUntil) // valid: Decode checked it
			if perr != nil {
				s.replyErr(ref, perr)
				return
			}
			until = &t
		}
		if room, err = p.SetRoom(ctx, u, f.Room, f.Level, until); err != nil {
			s.replyErr(ref, withRoom(err, f.Room))
			return
		}
		out := roomPrefsFrame(room)
		out.Base = protocol.Base{Type: protocol.TypeRoomNotificationPrefs, Ref: ref}
		s.reply(protocol.TypeRoomNotificationPrefs, out)
		return
	}
	if err != nil {
		s.replyErr(ref, err)
		return
	}
	out := protocol.NotificationPrefs{Base: protocol.Base{Type: protocol.TypeNotificationPrefs, Ref: ref},
		Level: all.Level, DND: all.DND, Email: all.Email, Rooms: make([]protocol.RoomNotificationPrefs, 0, len(all.Rooms))}
	for _, r := range all.Rooms {
		out.Rooms = append(out.Rooms, roomPrefsFrame(r))
	}
	s.reply(protocol.TypeNotificationPrefs, out)
}

func roomPrefsFrame(r prefs.RoomSetting) protocol.RoomNotificationPrefs {
	out := protocol.RoomNotificationPrefs{Room: r.Room, MutedUntil: r.MutedUntil}
	if r.Level != nil {
		l := string(*r.Level)
		out.Level = &l
	}
	return out
}
