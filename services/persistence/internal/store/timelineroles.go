// Roles as of the timeline. A room change, kick or ban reaches persistence after the
// gateway already applied it, in the transaction that wrote its event; by then the same
// author may have made further changes (handed the room on and left, say), so room_members
// alone would refuse an entry that was valid when it was made, and the timeline would miss
// a change the room had undergone. timeline_roles holds each member's role as the room's
// stored entries give it, updated in the batch transaction as entries are stored, in room
// order; an author or target is judged by whichever of the two views allows the change
// (see checkRoomChange), so rooms and members older than the table, or written by tools
// straight into room_members, are still judged by what they are now.

package store

import (
	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/event"
)

// queueTimelineRoleReads reads, as of the last stored entry of their rooms, the roles of
// the authors and targets of the batch's room changes and of its kicks' and bans' authors.
func queueTimelineRoleReads(b *pgx.Batch, items []item, st *dbState) {
	var rooms, users []string
	seen := map[memberKey]bool{}
	add := func(k memberKey) {
		if !seen[k] {
			seen[k] = true
			rooms, users = append(rooms, k.room), append(users, k.user)
		}
	}
	for _, it := range items {
		switch {
		case it.mem == nil:
		case event.IsRoomChange(it.mem.Change):
			add(memberKey{it.room, it.mem.By})
			add(memberKey{it.room, it.mem.User})
		case it.mem.Change == event.ChangeKicked || it.mem.Change == event.ChangeBanned:
			add(memberKey{it.room, it.mem.By})
		}
	}
	if len(rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT t.room_id, t.user_id, t.role
		FROM timeline_roles t
		JOIN unnest($1::text[], $2::text[]) AS k(room_id, user_id) ON t.room_id = k.room_id AND t.user_id = k.user_id`, rooms, users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var role string
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &role}, func() error {
				st.timelineRoles[k] = role
				return nil
			})
			return err
		})
}

// noteTimelineRoles applies a stored membership entry of a room (not a DM: it has no
// roles) to the timeline's roles: the batch's later events see it, and the batch writes
// the final role of every member it touched.
func noteTimelineRoles(w *writes, it item, st *dbState) {
	m := it.mem
	set := func(user, role string) {
		k := memberKey{it.room, user}
		st.timelineRoles[k] = role
		if w.timelineRoles == nil {
			w.timelineRoles = map[memberKey]string{}
		}
		w.timelineRoles[k] = role
	}
	switch m.Change {
	case event.ChangeJoined:
		role := m.Role // the creator's join makes them the owner
		if role == "" {
			role = event.RoleMember
		}
		set(m.User, role)
	case event.ChangeLeft, event.ChangeKicked, event.ChangeBanned:
		set(m.User, "")
	case event.ChangeRole:
		set(m.User, m.Role)
	case event.ChangeOwner:
		set(m.By, event.RoleAdmin) // the previous owner stays on as an admin
		set(m.User, event.RoleOwner)
	}
}

// queueTimelineRoleWrites stores the batch's final timeline roles ("" for someone who is
// no longer a member).
func queueTimelineRoleWrites(b *pgx.Batch, roles map[memberKey]string) {
	var setRooms, setUsers, setRoles, delRooms, delUsers []string
	for k, role := range roles {
		if role == "" {
			delRooms, delUsers = append(delRooms, k.room), append(delUsers, k.user)
		} else {
			setRooms, setUsers, setRoles = append(setRooms, k.room), append(setUsers, k.user), append(setRoles, role)
		}
	}
	if len(setRooms) > 0 {
		b.Queue(`
			INSERT INTO timeline_roles (room_id, user_id, role)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
			ON CONFLICT (room_id, user_id) DO UPDATE SET role = excluded.role`, setRooms, setUsers, setRoles)
	}
	if len(delRooms) > 0 {
		b.Queue(`
			DELETE FROM timeline_roles t
			USING unnest($1::text[], $2::text[]) AS k(room_id, user_id)
			WHERE t.room_id = k.room_id AND t.user_id = k.user_id`, delRooms, delUsers)
	}
}

// authorRank is the rank of a change's author: the higher of their role now and as of
// the change's place in the timeline.
func authorRank(k memberKey, st *dbState) int {
	return max(rank(st.roles[k]), rank(st.timelineRoles[k]))
}

// targetRank is the rank of the member a change concerns: the lower of their role now
// and as of the change's place in the timeline, among the views in which they are a
// member (0 if in neither).
func targetRank(k memberKey, st *dbState) int {
	now, then := rank(st.roles[k]), rank(st.timelineRoles[k])
	switch {
	case now == 0:
		return then
	case then == 0:
		return now
	}
	return min(now, then)
}
