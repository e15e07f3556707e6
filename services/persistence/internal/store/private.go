// Private rooms, checked again as their entries are stored: the gateway refuses
// non-members, but an event in chat.submitted is only as trustworthy as whoever wrote
// it. A message, edit, delete or reaction in a private room must come from a member (as
// of this transaction, under the room's lock); a join must match an accepted invitation
// (an invitee's accept, an admin's add or the room's creation), which the join uses up:
// the batch deletes it, so one acceptance stores one join. A refused event is a permanent
// error: the runner dead-letters it and the partition goes on.

package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// Errors of events a private room refuses.
var (
	ErrNotMember  = errors.New("store: sender is not a member of the private room")
	ErrNotInvited = errors.New("store: join of a private room without an accepted invitation")
)

// privateAccess is what one user may do in one private room as the batch starts.
type privateAccess struct {
	member  bool // has a room_members row
	invited bool // has an accepted invitation not used by a stored join yet
}

// queuePrivateReads reads, for every (room, user) of the batch whose room is private,
// the user's membership and accepted invitation. Rooms that are not private return no
// rows, so public rooms and DMs cost one index probe per event and nothing else.
func queuePrivateReads(b *pgx.Batch, items []item, st *dbState) {
	var rooms, users []string
	seen := map[memberKey]bool{}
	for _, it := range items {
		var k memberKey
		switch {
		case it.sub != nil:
			k = memberKey{it.room, it.sub.Sender}
		case it.mem != nil && it.mem.Change == event.ChangeJoined:
			k = memberKey{it.room, it.mem.User}
		default:
			continue
		}
		if !seen[k] {
			seen[k] = true
			rooms, users = append(rooms, k.room), append(users, k.user)
		}
	}
	if len(rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT k.room_id, k.user_id,
		       EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = k.room_id AND m.user_id = k.user_id),
		       EXISTS (SELECT 1 FROM room_invites i WHERE i.room_id = k.room_id AND i.user_id = k.user_id AND i.accepted_at IS NOT NULL)
		FROM unnest($1::text[], $2::text[]) AS k(room_id, user_id)
		JOIN rooms r ON r.id = k.room_id AND r.private`, rooms, users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var a privateAccess
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &a.member, &a.invited}, func() error {
				st.private[k] = a
				return nil
			})
			return err
		})
}

// checkPrivate refuses an event of a private room that its author may not write there;
// a join it accepts is recorded in w.joined, whose invitation the batch then deletes.
func checkPrivate(w *writes, it item, r *room, st *dbState) error {
	if !r.private {
		return nil
	}
	switch {
	case it.sub != nil:
		if !st.private[memberKey{it.room, it.sub.Sender}].member {
			return consumer.Permanent(fmt.Errorf("event %s: %s by %s in %s: %w", it.env.ID, it.sub.Kind, it.sub.Sender, it.room, ErrNotMember))
		}
	case it.mem != nil && it.mem.Change == event.ChangeJoined:
		k := memberKey{it.room, it.mem.User}
		if !st.private[k].invited {
			return consumer.Permanent(fmt.Errorf("event %s: join of %s to %s: %w", it.env.ID, it.mem.User, it.room, ErrNotInvited))
		}
		w.joined = append(w.joined, k)
	}
	return nil
}

// queueInvitesUsed deletes the accepted invitations the batch's joins used.
func queueInvitesUsed(b *pgx.Batch, joined []memberKey) {
	for _, k := range joined {
		b.Queue(`DELETE FROM room_invites WHERE room_id = $1 AND user_id = $2 AND accepted_at IS NOT NULL`, k.room, k.user)
	}
}
