// Moderation, checked again as it is stored: a kick or ban entry must be made by an admin
// of the room (now, or at its place in the timeline: see timelinemembers.go); a message,
// edit or reaction of a member muted both now and at its place in the timeline, and a
// banned user's join, are refused, whatever the gateway checked. Kicks and bans are
// stored as leave entries whose text says who made them. A refused event is a permanent
// error: dead-lettered alone.

package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// Errors of refused moderation.
var (
	ErrNotModerator = errors.New("store: kick or ban by someone who is not an admin of the room")
	ErrBanned       = errors.New("store: join of a user banned from the room")
	ErrMuted        = errors.New("store: message, edit or reaction by a member muted in the room")
)

// queueMuteReads reads which senders of the batch's messages, edits and reactions are
// muted in their rooms now (checkModeration asks the timeline too: a message the gateway
// accepted before its sender was muted sits before the mute's entry and is stored). It
// rides the batch's pipelined reads, so it costs no round trip.
func queueMuteReads(b *pgx.Batch, items []item, st *dbState) {
	var rooms, users []string
	for _, it := range items {
		if it.sub != nil && it.sub.Kind != event.KindDelete {
			rooms, users = append(rooms, it.room), append(users, it.sub.Sender)
		}
	}
	if len(rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT m.room_id, m.user_id
		FROM room_members m
		JOIN unnest($1::text[], $2::text[]) AS k(room_id, user_id) ON m.room_id = k.room_id AND m.user_id = k.user_id
		WHERE m.muted_at IS NOT NULL`, rooms, users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user}, func() error {
				st.muted[k] = true
				return nil
			})
			return err
		})
}

// queueModerationReads reads, for each join's user and each kick's or ban's author,
// whether they are banned from the room and whether they are its admin. Messages add
// nothing here: only membership events, which are rare, cost a query.
func queueModerationReads(b *pgx.Batch, items []item, st *dbState) {
	var keys memberKeys
	for _, it := range items {
		switch {
		case it.mem == nil:
		case it.mem.Change == event.ChangeJoined:
			keys.add(memberKey{it.room, it.mem.User})
		case it.mem.Change == event.ChangeKicked || it.mem.Change == event.ChangeBanned:
			keys.add(memberKey{it.room, it.mem.By})
		}
	}
	if len(keys.rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT k.room_id, k.user_id,
		       EXISTS (SELECT 1 FROM room_bans x WHERE x.room_id = k.room_id AND x.user_id = k.user_id),
		       EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = k.room_id AND m.user_id = k.user_id AND m.role IN ('owner', 'admin'))
		FROM unnest($1::text[], $2::text[]) AS k(room_id, user_id)`, keys.rooms, keys.users).
		Query(func(rows pgx.Rows) error {
			var k memberKey
			var banned, admin bool
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user, &banned, &admin}, func() error {
				a := st.access[k]
				a.banned, a.admin = banned, admin
				st.access[k] = a
				return nil
			})
			return err
		})
}

// checkModeration refuses a muted member's message, edit or reaction, a banned user's
// join and a kick or ban not made by an admin.
func checkModeration(it item, st *dbState) error {
	if it.sub != nil && it.sub.Kind != event.KindDelete {
		if k := (memberKey{it.room, it.sub.Sender}); st.muted[k] && mutedThen(k, st) {
			return consumer.Permanent(fmt.Errorf("event %s: %s by %s in %s: %w", it.env.ID, it.sub.Kind, it.sub.Sender, it.room, ErrMuted))
		}
	}
	if it.mem == nil {
		return nil
	}
	switch it.mem.Change {
	case event.ChangeJoined:
		if st.access[memberKey{it.room, it.mem.User}].banned {
			return consumer.Permanent(fmt.Errorf("event %s: join of %s to %s: %w", it.env.ID, it.mem.User, it.room, ErrBanned))
		}
	case event.ChangeKicked, event.ChangeBanned:
		// An admin now, or at the removal's place in the timeline (demoted or gone since).
		if by := (memberKey{it.room, it.mem.By}); !st.access[by].admin && !wasAdmin(by, st) {
			return consumer.Permanent(fmt.Errorf("event %s: %s of %s in %s by %s: %w", it.env.ID, it.mem.Change, it.mem.User, it.room, it.mem.By, ErrNotModerator))
		}
	}
	return nil
}

// removalText is the text of a leave entry: empty for a leave, "kicked by NAME" or
// "banned by NAME" for a removal by an admin.
func removalText(m *event.MembershipChanged) string {
	if m.Change != event.ChangeKicked && m.Change != event.ChangeBanned {
		return ""
	}
	by := m.ByName
	if by == "" {
		by = m.By
	}
	return m.Change + " by " + by
}
