// Room changes (a member's role, mute or unmute, an ownership transfer, the room's
// settings), checked again as they are stored and stored as room_change entries. The
// gateway made the change and wrote its event in one transaction, so the database
// already holds the change, and maybe later ones, when its event gets here; what is
// checked is that its author could make it, at its place in the timeline or now
// (timelinemembers.go): they outrank the member it concerns (and, for a role, the role
// given), or, for settings, they are an owner or admin. A refused change is a permanent
// error, dead-lettered alone like a kick by a non-admin.
//
// Ownership transfers are checked less: in rooms older than the timeline's roles the
// author is, now, an admin who may have left the room in the same transaction (an owner's
// leave naming a successor), so only the new owner's membership is checked.

package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// Errors of refused room changes.
var (
	// ErrNotOutranked refuses a role change, mute or unmute whose author does not, as it
	// is stored, rank above the member it concerns (and above the role given).
	ErrNotOutranked = errors.New("store: room change by someone who does not outrank its target")
	// ErrNoSuchMember refuses a change concerning someone who is not a member of the room.
	ErrNoSuchMember = errors.New("store: room change concerning a non-member")
	// ErrNotAdmin refuses a settings change whose author was neither an owner nor an
	// admin of the room.
	ErrNotAdmin = errors.New("store: settings change by someone who is not an owner or admin of the room")
	// ErrDMChange refuses a room change in a direct message room, which has no roles.
	ErrDMChange = errors.New("store: room change in a direct message room")
)

// roomChange is what a room_change entry records besides its author; it is the messages
// row's room_change column and the stored event's fields of the same names.
type roomChange struct {
	Change     string                    `json:"change"`
	Target     string                    `json:"target,omitempty"`
	TargetName string                    `json:"target_name,omitempty"`
	Role       string                    `json:"role,omitempty"`
	Settings   *event.RoomSettingsChange `json:"settings,omitempty"`
}

// rank orders roles as the gateway does; a non-member ("") ranks below every member.
func rank(role string) int {
	switch role {
	case event.RoleOwner:
		return 3
	case event.RoleAdmin:
		return 2
	case event.RoleMember:
		return 1
	}
	return 0
}

// queueRoleReads reads the roles, now, of the authors and targets of the batch's room
// changes into st.roles (a non-member has no row, hence role "").
func queueRoleReads(b *pgx.Batch, items []item, st *dbState) {
	var keys memberKeys
	for _, it := range items {
		if it.mem != nil && event.IsRoomChange(it.mem.Change) {
			keys.add(memberKey{it.room, it.mem.By})
			keys.add(memberKey{it.room, it.mem.User})
		}
	}
	if len(keys.rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT m.room_id, m.user_id, m.role
		FROM room_members m
		JOIN unnest($1::text[], $2::text[]) AS k(room_id, user_id) ON m.room_id = k.room_id AND m.user_id = k.user_id`, keys.rooms, keys.users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var role string
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &role}, func() error {
				st.roles[k] = role
				return nil
			})
			return err
		})
}

// checkRoomChange refuses a room change its author may not make as it is stored.
func checkRoomChange(it item, r *room, st *dbState) error {
	m := it.mem
	refuse := func(err error) error {
		return consumer.Permanent(fmt.Errorf("event %s: %s of %s in %s by %s: %w", it.env.ID, m.Change, m.User, it.room, m.By, err))
	}
	if r.kind == event.RoomKindDM {
		return refuse(ErrDMChange)
	}
	by, target := authorRank(memberKey{it.room, m.By}, st), targetRank(memberKey{it.room, m.User}, st)
	switch m.Change {
	case event.ChangeSettings:
		if by < rank(event.RoleAdmin) {
			return refuse(ErrNotAdmin)
		}
	case event.ChangeOwner:
		if target == 0 {
			return refuse(ErrNoSuchMember)
		}
	default: // role, muted, unmuted
		switch {
		case target == 0:
			return refuse(ErrNoSuchMember)
		case by < rank(event.RoleAdmin), by <= target, m.Change == event.ChangeRole && by <= rank(m.Role):
			return refuse(ErrNotOutranked)
		}
	}
	return nil
}

// roomChangeOf is what the room_change entry of m records.
func roomChangeOf(m *event.MembershipChanged) *roomChange {
	c := &roomChange{Change: m.Change, Role: m.Role, Settings: m.Settings}
	if m.Change != event.ChangeSettings {
		c.Target, c.TargetName = m.User, m.UserName
	}
	return c
}

// roomChangeColumn is the room_change column's value of a row: JSON for room_change
// entries, NULL for the others.
func roomChangeColumn(c *roomChange) (any, error) {
	if c == nil {
		return nil, nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("cannot encode room change: %w", err)
	}
	return string(b), nil
}
