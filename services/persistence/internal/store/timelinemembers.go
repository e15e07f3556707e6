// Members as of the timeline. A room change, kick or ban reaches persistence after the
// gateway applied it, in the transaction that wrote its event, and a message after the
// gateway accepted it; by then room_members may hold later changes (the author demoted,
// muted, or gone after handing the room on). Judged by room_members alone, an entry that
// was valid where it sits in the room's order would be refused: the timeline would miss
// a change the room underwent, or lose a message its sender was told was accepted.
//
// timeline_members holds each member's role and mute as the room's stored entries give
// them, updated in the batch transaction as entries are stored, in room order. An entry is
// judged by whichever of the two views allows it: an author's rank is the higher of the
// two, a target's the lower, and a sender counts as muted only if muted in both. Rooms and
// members older than the table, or written by tools straight into room_members, have no
// timeline row and are judged by what they are now.

package store

import (
	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/event"
)

// timelineMember is a member of a room as its stored entries have them.
type timelineMember struct {
	role  string
	muted bool
}

// timelineChange is what a batch's entries changed of one member's timeline row.
type timelineChange struct {
	left  bool   // no longer a member: the row goes
	role  string // the role set, if any
	muted *bool  // the mute set, if any
}

// queueTimelineReads reads the timeline rows of the authors and targets of the batch's
// room changes, of its kicks' and bans' authors and of its messages', edits', deletes'
// and reactions' senders.
func queueTimelineReads(b *pgx.Batch, items []item, st *dbState) {
	var keys memberKeys
	for _, it := range items {
		switch {
		case it.sub != nil:
			keys.add(memberKey{it.room, it.sub.Sender})
		case event.IsRoomChange(it.mem.Change):
			keys.add(memberKey{it.room, it.mem.By})
			keys.add(memberKey{it.room, it.mem.User})
		case it.mem.Change == event.ChangeKicked || it.mem.Change == event.ChangeBanned:
			keys.add(memberKey{it.room, it.mem.By})
		}
	}
	if len(keys.rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT t.room_id, t.user_id, t.role, t.muted
		FROM timeline_members t
		JOIN unnest($1::text[], $2::text[]) AS k(room_id, user_id) ON t.room_id = k.room_id AND t.user_id = k.user_id`, keys.rooms, keys.users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var m timelineMember
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &m.role, &m.muted}, func() error {
				st.timeline[k] = m
				return nil
			})
			return err
		})
}

// noteTimeline applies a stored membership entry of a room (not a DM: it has no roles) to
// the timeline's members: the batch's later events see it, and the batch writes it.
func noteTimeline(w *writes, it item, st *dbState) {
	m := it.mem
	change := func(user string, apply func(*timelineChange, *timelineMember)) {
		k := memberKey{it.room, user}
		if w.timeline == nil {
			w.timeline = map[memberKey]*timelineChange{}
		}
		c := w.timeline[k]
		if c == nil {
			c = &timelineChange{}
			w.timeline[k] = c
		}
		tm, known := st.timeline[k]
		apply(c, &tm)
		switch {
		case c.left:
			delete(st.timeline, k)
		case known || c.role != "":
			st.timeline[k] = tm
		}
	}
	setRole := func(role string) func(*timelineChange, *timelineMember) {
		return func(c *timelineChange, tm *timelineMember) { c.left, c.role, tm.role = false, role, role }
	}
	switch m.Change {
	case event.ChangeJoined:
		role := m.Role // the creator's join makes them the owner
		if role == "" {
			role = event.RoleMember
		}
		change(m.User, func(c *timelineChange, tm *timelineMember) {
			unmuted := false
			*c, *tm = timelineChange{role: role, muted: &unmuted}, timelineMember{role: role}
		})
	case event.ChangeLeft, event.ChangeKicked, event.ChangeBanned:
		change(m.User, func(c *timelineChange, _ *timelineMember) { *c = timelineChange{left: true} })
	case event.ChangeRole:
		change(m.User, setRole(m.Role))
	case event.ChangeOwner:
		change(m.By, setRole(event.RoleAdmin)) // the previous owner stays on as an admin
		change(m.User, setRole(event.RoleOwner))
	case event.ChangeMuted, event.ChangeUnmuted:
		muted := m.Change == event.ChangeMuted
		change(m.User, func(c *timelineChange, tm *timelineMember) { c.muted, tm.muted = &muted, muted })
	}
}

// queueTimelineWrites stores what the batch's entries changed of the timeline's members:
// roles first (a member new to the table starts unmuted), then mutes, and the rows of
// those who left go.
func queueTimelineWrites(b *pgx.Batch, changes map[memberKey]*timelineChange) {
	var roleRooms, roleUsers, roles, muteRooms, muteUsers, goneRooms, goneUsers []string
	var mutes []bool
	for k, c := range changes {
		if c.left {
			goneRooms, goneUsers = append(goneRooms, k.room), append(goneUsers, k.user)
			continue
		}
		if c.role != "" {
			roleRooms, roleUsers, roles = append(roleRooms, k.room), append(roleUsers, k.user), append(roles, c.role)
		}
		if c.muted != nil {
			muteRooms, muteUsers, mutes = append(muteRooms, k.room), append(muteUsers, k.user), append(mutes, *c.muted)
		}
	}
	if len(roleRooms) > 0 {
		b.Queue(`
			INSERT INTO timeline_members (room_id, user_id, role)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
			ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role`, roleRooms, roleUsers, roles)
	}
	if len(muteRooms) > 0 {
		b.Queue(`
			UPDATE timeline_members t SET muted = c.muted
			FROM unnest($1::text[], $2::text[], $3::boolean[]) AS c(room_id, user_id, muted)
			WHERE t.room_id = c.room_id AND t.user_id = c.user_id`, muteRooms, muteUsers, mutes)
	}
	if len(goneRooms) > 0 {
		b.Queue(`
			DELETE FROM timeline_members t
			USING unnest($1::text[], $2::text[]) AS k(room_id, user_id)
			WHERE t.room_id = k.room_id AND t.user_id = k.user_id`, goneRooms, goneUsers)
	}
}

// authorRank is the rank of the author of a change: the higher of their role now and as
// of the change's place in the timeline.
func authorRank(k memberKey, st *dbState) int {
	return max(rank(st.roles[k]), rank(st.timeline[k].role))
}

// targetRank is the rank of the member a change concerns: the lower of their role now
// and as of the change's place in the timeline, among the views in which they are a
// member (0 if in neither).
func targetRank(k memberKey, st *dbState) int {
	now, then := rank(st.roles[k]), rank(st.timeline[k].role)
	switch {
	case now == 0:
		return then
	case then == 0:
		return now
	}
	return min(now, then)
}

// wasAdmin reports whether k is an owner or admin as of the timeline.
func wasAdmin(k memberKey, st *dbState) bool {
	return rank(st.timeline[k].role) >= rank(event.RoleAdmin)
}

// mutedThen reports whether k, muted now, is muted as of the timeline too (or has no
// timeline row, so only now counts).
func mutedThen(k memberKey, st *dbState) bool {
	tm, known := st.timeline[k]
	return !known || tm.muted
}
