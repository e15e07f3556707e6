package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// TestHandleBatch_private_rooms: persistence checks a private room's rule again as it
// stores each entry, whatever the gateway checked: messages (and edits, deletes,
// reactions) only from members, joins only with an accepted invitation, which the join
// uses up. A refused event fails its batch permanently (the runner then dead-letters it
// alone) and leaves nothing behind. Public rooms are not checked.
func TestHandleBatch_private_rooms(t *testing.T) {
	msg := func(t *testing.T, room, sender, cmid string) event.Envelope {
		return chattest.Message(t, room, sender, cmid, "text "+cmid)
	}
	join := func(t *testing.T, room, user string) event.Envelope {
		return chattest.Membership(t, room, user, event.ChangeJoined)
	}
	leave := func(t *testing.T, room, user string) event.Envelope {
		return chattest.Membership(t, room, user, event.ChangeLeft)
	}
	tests := []struct {
		name        string
		steps       func(t *testing.T) []step
		want        []string
		wantInvites []string // "user accepted?" left in room_invites of room-p
	}{
		{
			name: "a member's message, edit, reaction and delete are stored",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{msg(t, "room-p", "u-alice", "1"),
					chattest.Submitted(t, "room-p", "u-alice", "2", event.KindEdit, "new", 1),
					chattest.Reaction(t, "room-p", "u-alice", "3", 1, "👍", true),
					chattest.Submitted(t, "room-p", "u-alice", "4", event.KindDelete, "", 1)}}}
			},
			want: []string{"room-p/1 message u-alice edited deleted", "room-p/2 edit u-alice ->1", "room-p/3 reaction u-alice +👍 ->1",
				"room-p/4 delete u-alice ->1"},
			wantInvites: []string{"u-bob true", "u-carol false"},
		},
		{
			name: "a non-member's message is refused, and its batch stores nothing",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-p", "u-alice", "1"), msg(t, "room-p", "u-dave", "2")}, wantErr: store.ErrNotMember},
					// An invited user is no member before the join.
					{batch: []event.Envelope{msg(t, "room-p", "u-carol", "3")}, wantErr: store.ErrNotMember},
					{batch: []event.Envelope{chattest.Reaction(t, "room-p", "u-dave", "4", 1, "👍", true)}, wantErr: store.ErrNotMember},
				}
			},
			wantInvites: []string{"u-bob true", "u-carol false"},
		},
		{
			name: "a join with an accepted invitation is stored and uses it up; a replayed join is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{join(t, "room-p", "u-bob"), msg(t, "room-p", "u-bob", "1")}},
					{batch: []event.Envelope{join(t, "room-p", "u-bob")}, wantErr: store.ErrNotInvited},
				}
			},
			want:        []string{"room-p/1 join u-bob", "room-p/2 message u-bob text 1"},
			wantInvites: []string{"u-carol false"},
		},
		{
			name: "a forged join without an invitation, or with one not accepted, is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{join(t, "room-p", "u-dave")}, wantErr: store.ErrNotInvited},
					{batch: []event.Envelope{join(t, "room-p", "u-carol")}, wantErr: store.ErrNotInvited},
					// A member's duplicate join is forged too: their invitation was used.
					{batch: []event.Envelope{join(t, "room-p", "u-alice")}, wantErr: store.ErrNotInvited},
				}
			},
			wantInvites: []string{"u-bob true", "u-carol false"},
		},
		{
			name: "a message the partition holds before its sender's leave is stored; one after it is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{join(t, "room-p", "u-bob")}},
					// bob leaves: the gateway deletes his membership before the leave event
					// is stored, and his last message is still ahead of it in the partition.
					{applied: `DELETE FROM room_members WHERE room_id = 'room-p' AND user_id = 'u-bob'`,
						batch:   []event.Envelope{msg(t, "room-p", "u-bob", "before"), leave(t, "room-p", "u-bob"), msg(t, "room-p", "u-bob", "after")},
						wantErr: store.ErrNotMember},
					{batch: []event.Envelope{msg(t, "room-p", "u-bob", "before"), leave(t, "room-p", "u-bob")}},
					{batch: []event.Envelope{msg(t, "room-p", "u-bob", "later")}, wantErr: store.ErrNotMember},
				}
			},
			want:        []string{"room-p/1 join u-bob", "room-p/2 message u-bob text before", "room-p/3 leave u-bob"},
			wantInvites: []string{"u-carol false"},
		},
		{
			name: "leaves are not checked",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{leave(t, "room-p", "u-alice")}}}
			},
			want:        []string{"room-p/1 leave u-alice"},
			wantInvites: []string{"u-bob true", "u-carol false"},
		},
		{
			name: "public rooms are not checked",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{msg(t, "room-b", "u-carol", "1"), join(t, "room-b", "u-dave")}}}
			},
			want:        []string{"room-b/1 message u-carol text 1", "room-b/2 join u-dave"},
			wantInvites: []string{"u-bob true", "u-carol false"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			// room-p: private, alice its admin; bob accepted an invitation (the gateway
			// made him a member in the same transaction), carol's is pending; dave is
			// nobody there.
			chattest.Seed(t, pool, chattest.Room{ID: "room-p", Members: []string{"u-alice", "u-bob"}, Admins: []string{"u-alice"}},
				chattest.Room{ID: "room-x", Members: []string{"u-carol", "u-dave"}})
			for _, q := range []string{
				`UPDATE rooms SET private = true WHERE id = 'room-p'`,
				`INSERT INTO room_invites (room_id, user_id, invited_by, created_at, expires_at, accepted_at) VALUES
					('room-p', 'u-bob', 'u-alice', now(), now() + interval '1 day', now()),
					('room-p', 'u-carol', 'u-alice', now(), now() + interval '1 day', NULL)`,
			} {
				if _, err := pool.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			sent := runSteps(t, st, pool, tc.steps(t))
			var got []string
			for _, e := range timeline(t, pool) {
				if e[:6] == "room-p" || e[:6] == "room-b" {
					got = append(got, e)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("timeline:\n got %q\nwant %q", got, tc.want)
			}
			rows, err := pool.Query(ctx, `SELECT user_id || ' ' || (accepted_at IS NOT NULL) FROM room_invites WHERE room_id = 'room-p' ORDER BY user_id`)
			if err != nil {
				t.Fatal(err)
			}
			var invites []string
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				invites = append(invites, s)
			}
			if !slices.Equal(invites, tc.wantInvites) {
				t.Errorf("invitations left: %q, want %q", invites, tc.wantInvites)
			}
			checkOutbox(t, pool, sent)
			checkLastSeq(t, pool)
		})
	}
}
