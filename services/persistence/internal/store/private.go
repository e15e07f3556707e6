// Private rooms, checked again as their entries are stored: the gateway refuses
// non-members, but an event in chat.submitted is only as trustworthy as whoever wrote
// it. A message, edit, delete or reaction in a private room must come from a member: one
// now (room_members, under the room's lock), or one as of its place in the timeline
// (their last join or leave entry, stored or earlier in the batch, is a join). So a
// message sent just before its sender left or was kicked, which the partition holds
// before the leave, is still stored, and nothing published after the leave is. A join
// must match an accepted invitation (an invitee's accept, an admin's add or the room's
// creation), which the join uses up: the batch deletes it, so one acceptance stores one
// join. A refused event is a permanent error: the runner dead-letters it and the
// partition goes on.

package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// Errors of events a private room refuses.
var (
	ErrNotMember  = errors.New("store: sender is not a member of the private room")
	ErrNotInvited = errors.New("store: join of a private room without an accepted invitation")
)

// access is what the batch needs to know of one user in one room as it starts: for
// private rooms, their timeline membership and invitation (here); for joins and removals,
// bans and the admin role (moderation.go).
type access struct {
	joined  bool // the timeline's last join or leave entry of theirs is a join (private rooms)
	invited bool // has an accepted invitation not used by a stored join yet (private rooms)
	banned  bool // is banned from the room (joins)
	admin   bool // is an admin of the room (who kicks or bans)
}

// Who is a member of a private room now comes with the room (room.members, read like a
// DM's), so a batch of messages costs nothing more. Only joins, which are rare, queue a
// query for their invitations; and a message whose sender is not a member now costs a
// second round trip (readTimelineMembers), which only the leave race and forged events
// take.

// queuePrivateReads reads, for every join of the batch to a private room, whether the
// joiner has an accepted invitation. Rooms that are not private return no rows.
func queuePrivateReads(b *pgx.Batch, items []item, st *dbState) {
	var keys memberKeys
	for _, it := range items {
		if it.mem != nil && it.mem.Change == event.ChangeJoined {
			keys.add(memberKey{it.room, it.mem.User})
		}
	}
	if len(keys.rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT k.room_id, k.user_id,
		       EXISTS (SELECT 1 FROM room_invites i WHERE i.room_id = k.room_id AND i.user_id = k.user_id AND i.accepted_at IS NOT NULL)
		FROM unnest($1::text[], $2::text[]) AS k(room_id, user_id)
		JOIN rooms r ON r.id = k.room_id AND r.private`, keys.rooms, keys.users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var invited bool
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &invited}, func() error {
				a := st.access[k]
				a.invited = invited
				st.access[k] = a
				return nil
			})
			return err
		})
}

// readTimelineMembers reads, for the fresh messages in private rooms whose sender is not
// a member now, whether the room's timeline still has them in it (their last join or
// leave entry is a join: the message was sent before a leave not stored yet). It runs a
// query only when there is such a message.
func readTimelineMembers(ctx context.Context, tx pgx.Tx, fresh []item, st *dbState) error {
	var keys memberKeys
	for _, it := range fresh {
		if r := st.rooms[it.room]; it.sub != nil && r != nil && r.private && !isMember(r, it.sub.Sender) {
			keys.add(memberKey{it.room, it.sub.Sender})
		}
	}
	if len(keys.rooms) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `
		SELECT k.room_id, k.user_id,
		       coalesce((SELECT x.kind = 'join' FROM messages x
		                 WHERE x.room_id = k.room_id AND x.sender = k.user_id AND x.kind IN ('join', 'leave')
		                 ORDER BY x.seq DESC LIMIT 1), false)
		FROM unnest($1::text[], $2::text[]) AS k(room_id, user_id)`, keys.rooms, keys.users)
	if err != nil {
		return fmt.Errorf("cannot read timeline membership: %w", err)
	}
	var k memberKey
	var joined bool
	_, err = pgx.ForEachRow(rows, []any{&k.room, &k.user, &joined}, func() error {
		a := st.access[k]
		a.joined = joined
		st.access[k] = a
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot read timeline membership: %w", err)
	}
	return nil
}

// isMember reports whether user is in r.members, read with the room. (A linear search:
// the SQL sorted them by the database's collation, not by Go's byte order.)
func isMember(r *room, user string) bool { return slices.Contains(r.members, user) }

// checkPrivate refuses an event of a private room that its author may not write there;
// a join it accepts is recorded in w.joined, whose invitation the batch then deletes.
// Joins and leaves it lets through update what later events of the batch see.
func checkPrivate(w *writes, it item, r *room, st *dbState) error {
	if !r.private {
		return nil
	}
	switch {
	case it.sub != nil:
		if !isMember(r, it.sub.Sender) && !st.access[memberKey{it.room, it.sub.Sender}].joined {
			return consumer.Permanent(fmt.Errorf("event %s: %s by %s in %s: %w", it.env.ID, it.sub.Kind, it.sub.Sender, it.room, ErrNotMember))
		}
	case it.mem != nil && it.mem.Change == event.ChangeJoined:
		k := memberKey{it.room, it.mem.User}
		a := st.access[k]
		if !a.invited {
			return consumer.Permanent(fmt.Errorf("event %s: join of %s to %s: %w", it.env.ID, it.mem.User, it.room, ErrNotInvited))
		}
		a.joined = true
		st.access[k] = a
		w.joined = append(w.joined, k)
	case it.mem != nil && event.IsRoomChange(it.mem.Change):
		// Changes no membership; its author's right to make it is checked in planOne.
	case it.mem != nil: // a leave, kick or ban
		k := memberKey{it.room, it.mem.User}
		a := st.access[k]
		a.joined = false
		st.access[k] = a
	}
	return nil
}

// queueInvitesUsed deletes the accepted invitations the batch's joins used.
func queueInvitesUsed(b *pgx.Batch, joined []memberKey) {
	for _, k := range joined {
		b.Queue(`DELETE FROM room_invites WHERE room_id = $1 AND user_id = $2 AND accepted_at IS NOT NULL`, k.room, k.user)
	}
}
