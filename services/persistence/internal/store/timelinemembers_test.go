package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// TestHandleBatch_changes_judged_where_they_were_made: the gateway applies a room change,
// kick or ban to room_members in the transaction that writes its event, and accepts a
// message before its event is stored, so when persistence stores the entry its author may
// have been demoted, muted or gone since, and its target too. Such an entry is stored (the
// room underwent it; the sender was told it was accepted), judged by the members as of its
// place in the timeline, which the stored entries keep up to date; what was never allowed
// is still refused.
func TestHandleBatch_changes_judged_where_they_were_made(t *testing.T) {
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// want lists the entries stored, as "seq kind sender"; roles the timeline's members
		// afterwards, as "user role [muted]".
		want, roles []string
	}{
		{
			name: "settings, then the owner hands the room on and leaves",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `UPDATE room_members SET role = 'owner' WHERE user_id = 'u-adam';
						DELETE FROM room_members WHERE user_id = 'u-olive'`,
						batch: []event.Envelope{change(t, "room-r", "u-olive", event.ChangeSettings, "u-olive", "", &event.RoomSettingsChange{Private: ptr(true)})}},
					{batch: []event.Envelope{change(t, "room-r", "u-adam", event.ChangeOwner, "u-olive", "owner", nil),
						change(t, "room-r", "u-olive", event.ChangeLeft, "u-olive", "", nil)}},
				}
			},
			want:  []string{"1 room_change u-olive", "2 room_change u-olive", "3 leave u-olive"},
			roles: []string{"u-adam owner", "u-max member", "u-mia member"},
		},
		{
			name: "a kick and a mute, then their author is demoted and the muted member leaves",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `DELETE FROM room_members WHERE user_id IN ('u-max', 'u-mia');
						UPDATE room_members SET role = 'member' WHERE user_id = 'u-adam'`,
						batch: []event.Envelope{removal(t, "room-r", "u-max", event.ChangeKicked, "u-adam"),
							change(t, "room-r", "u-mia", event.ChangeMuted, "u-adam", "", nil)}},
					{batch: []event.Envelope{change(t, "room-r", "u-adam", event.ChangeRole, "u-olive", "member", nil),
						change(t, "room-r", "u-mia", event.ChangeLeft, "u-mia", "", nil)}},
				}
			},
			want:  []string{"1 leave u-max", "2 room_change u-adam", "3 room_change u-olive", "4 leave u-mia"},
			roles: []string{"u-adam member", "u-olive owner"},
		},
		{
			name: "a change its author made after their demotion is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `UPDATE room_members SET role = 'member' WHERE user_id = 'u-adam'`,
						batch: []event.Envelope{change(t, "room-r", "u-adam", event.ChangeRole, "u-olive", "member", nil),
							change(t, "room-r", "u-max", event.ChangeMuted, "u-adam", "", nil)},
						wantErr: store.ErrNotOutranked},
				}
			},
			roles: []string{"u-adam admin", "u-max member", "u-mia member", "u-olive owner"},
		},
		{
			name: "a room's creator owns it from their join on",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `INSERT INTO rooms (id, name, kind) VALUES ('room-new', 'new', 'room');
						INSERT INTO room_members (room_id, user_id, role) VALUES ('room-new', 'u-mia', 'member')`,
						batch: []event.Envelope{change(t, "room-new", "u-max", event.ChangeJoined, "u-max", "owner", nil),
							change(t, "room-new", "u-mia", event.ChangeJoined, "u-mia", "", nil),
							change(t, "room-new", "u-max", event.ChangeSettings, "u-max", "", &event.RoomSettingsChange{Topic: ptr("mine")}),
							change(t, "room-new", "u-max", event.ChangeLeft, "u-max", "", nil)}},
					{batch: []event.Envelope{change(t, "room-new", "u-mia", event.ChangeSettings, "u-mia", "", &event.RoomSettingsChange{Topic: ptr("ours")})},
						wantErr: store.ErrNotAdmin},
				}
			},
			want:  []string{"1 join u-max", "2 join u-mia", "3 room_change u-max", "4 leave u-max"},
			roles: []string{"room-new: u-mia member", "u-adam admin", "u-max member", "u-mia member", "u-olive owner"},
		},
		{
			name: "a message sent before its sender was muted, then one after",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `UPDATE room_members SET muted_at = now(), muted_by = 'u-olive' WHERE user_id = 'u-mia'`,
						batch: []event.Envelope{chattest.Submitted(t, "room-r", "u-mia", "c1", event.KindMessage, "before", 0),
							change(t, "room-r", "u-mia", event.ChangeMuted, "u-olive", "", nil)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-r", "u-mia", "c2", event.KindMessage, "after", 0)}, wantErr: store.ErrMuted},
				}
			},
			want:  []string{"1 message u-mia", "2 room_change u-olive"},
			roles: []string{"u-adam admin", "u-max member", "u-mia member muted", "u-olive owner"},
		},
		{
			name: "an admin's delete of someone's message, then the admin is demoted",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{chattest.Submitted(t, "room-r", "u-max", "c1", event.KindMessage, "spam", 0)}},
					{applied: `UPDATE room_members SET role = 'member' WHERE user_id = 'u-adam'`,
						batch: []event.Envelope{chattest.Submitted(t, "room-r", "u-adam", "c2", event.KindDelete, "", 1),
							change(t, "room-r", "u-adam", event.ChangeRole, "u-olive", "member", nil),
							// Once demoted, no longer.
							chattest.Submitted(t, "room-r", "u-adam", "c3", event.KindEdit, "mine now", 1)},
						wantErr: store.ErrNotAuthor},
					{batch: []event.Envelope{chattest.Submitted(t, "room-r", "u-adam", "c2", event.KindDelete, "", 1),
						change(t, "room-r", "u-adam", event.ChangeRole, "u-olive", "member", nil)}},
				}
			},
			want:  []string{"1 message u-max", "2 delete u-adam", "3 room_change u-olive"},
			roles: []string{"u-adam member", "u-max member", "u-mia member", "u-olive owner"},
		},
		{
			name: "what the author could never do is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{applied: `DELETE FROM room_members WHERE user_id = 'u-mia'`,
						batch:   []event.Envelope{change(t, "room-r", "u-mia", event.ChangeSettings, "u-mia", "", &event.RoomSettingsChange{Name: ptr("mine")})},
						wantErr: store.ErrNotAdmin},
					{batch: []event.Envelope{removal(t, "room-r", "u-adam", event.ChangeKicked, "u-max")}, wantErr: store.ErrNotModerator},
				}
			},
			roles: []string{"u-adam admin", "u-max member", "u-mia member", "u-olive owner"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			chattest.Seed(t, pool, roomR)
			// room-r's timeline roles start as its members' roles, as the migration leaves
			// a room that existed before it.
			if _, err := pool.Exec(ctx, `UPDATE room_members SET role = 'owner' WHERE room_id = 'room-r' AND user_id = 'u-olive';
				INSERT INTO timeline_members (room_id, user_id, role) SELECT room_id, user_id, role FROM room_members WHERE room_id = 'room-r'`); err != nil {
				t.Fatal(err)
			}
			sent := runSteps(t, st, pool, tc.steps(t))
			if got := queryStrings(t, pool, `SELECT seq || ' ' || kind || ' ' || sender FROM messages
				WHERE room_id IN ('room-r', 'room-new') ORDER BY room_id, seq`); !slices.Equal(got, tc.want) {
				t.Errorf("entries:\n got %q\nwant %q", got, tc.want)
			}
			if got := queryStrings(t, pool, `SELECT CASE WHEN room_id = 'room-r' THEN '' ELSE room_id || ': ' END || user_id || ' ' || role ||
				CASE WHEN muted THEN ' muted' ELSE '' END
				FROM timeline_members ORDER BY room_id, user_id`); !slices.Equal(got, tc.roles) {
				t.Errorf("timeline roles:\n got %q\nwant %q", got, tc.roles)
			}
			checkOutbox(t, pool, sent)
			checkLastSeq(t, pool)
		})
	}
}
