// Room changes as timeline entries: a role change, a mute or unmute, an ownership
// transfer and a settings change are written with their membership.changed event in one
// transaction through the outbox, like a kick, and published by the gateway right after
// the commit (publishOwn). Persistence checks the author's rank again and stores a
// room_change entry with its own seq, which reaches every gateway's subscribers through
// chat.stored like any entry; a change that changes nothing writes no event.

package chat

import (
	"context"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
)

// roomChange is the event of by's change (event.ChangeRole...) concerning who in room.
func (s *Service) roomChange(who, by User, room, change string) event.MembershipChanged {
	m := event.MembershipChanged{RoomID: room, User: who.ID, UserName: who.Username, Change: change, By: by.ID, ChangedAt: s.cfg.Now().UTC()}
	if by.ID != who.ID {
		m.ByName = by.Username
	}
	return m
}

// announceAll writes ms (in this order) with write, which must commit them with the
// change they describe and report whether anything changed; then it publishes them, in
// the same order, so that the room's partition holds them as the timeline will.
func (s *Service) announceAll(ctx context.Context, room string, ms []event.MembershipChanged, write func(...outbox.Row) (bool, error)) (bool, error) {
	es := make([]event.Envelope, len(ms))
	rows := make([]outbox.Row, len(ms))
	for i, m := range ms {
		e, err := event.New(s.source(), m)
		if err != nil {
			return false, err
		}
		if rows[i], err = s.ownRow(room, e); err != nil {
			return false, err
		}
		es[i] = e
	}
	changed, err := write(rows...)
	if err == nil && changed {
		for _, e := range es {
			s.publishOwn(ctx, room, e)
		}
	}
	return changed, err
}
