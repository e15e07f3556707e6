package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// removal builds a kick or ban of user in room by by, as a gateway submits it.
func removal(t *testing.T, room, user, change, by string) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MembershipChanged{RoomID: room, User: user, UserName: "Name of " + user,
		Change: change, By: by, ByName: "Name of " + by, ChangedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestHandleBatch_moderation: kicks and bans are stored as leave entries saying who made
// them, only when made by an admin of the room as the entry is stored; a banned user's
// join is refused. Refusals are permanent and leave nothing behind.
func TestHandleBatch_moderation(t *testing.T) {
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		want  []string
	}{
		{
			name: "an admin's kick and ban are leave entries naming the admin",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{removal(t, "room-a", "u-bob", event.ChangeKicked, "u-carol"),
					removal(t, "room-a", "u-alice", event.ChangeBanned, "u-carol")}}}
			},
			want: []string{"room-a/1 leave u-bob kicked by Name of u-carol", "room-a/2 leave u-alice banned by Name of u-carol"},
		},
		{
			name: "a kick or ban by a member who is not an admin is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{chattest.Message(t, "room-a", "u-alice", "1", "fine"),
						removal(t, "room-a", "u-bob", event.ChangeKicked, "u-alice")}, wantErr: store.ErrNotModerator},
					{batch: []event.Envelope{removal(t, "room-a", "u-bob", event.ChangeBanned, "u-alice")}, wantErr: store.ErrNotModerator},
					// A DM has no admins.
					{batch: []event.Envelope{removal(t, "dm-alice-bob", "u-bob", event.ChangeKicked, "u-alice")}, wantErr: store.ErrNotModerator},
				}
			},
		},
		{
			name: "a banned user's join is refused; others' are stored",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{chattest.Membership(t, "room-b", "u-dave", event.ChangeJoined)}, wantErr: store.ErrBanned},
					{batch: []event.Envelope{chattest.Membership(t, "room-b", "u-carol", event.ChangeJoined)}},
				}
			},
			want: []string{"room-b/1 join u-carol"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			chattest.Seed(t, pool, chattest.Room{ID: "room-x", Members: []string{"u-dave"}})
			if _, err := pool.Exec(ctx, `INSERT INTO room_bans (room_id, user_id, banned_by, banned_at) VALUES ('room-b', 'u-dave', 'u-alice', now())`); err != nil {
				t.Fatal(err)
			}
			runSteps(t, st, pool, tc.steps(t))
			if got := timeline(t, pool); !slices.Equal(got, tc.want) {
				t.Errorf("timeline:\n got %q\nwant %q", got, tc.want)
			}
			checkLastSeq(t, pool)
		})
	}
}

// TestHandleBatch_muted: a muted member's message and reaction are refused as they are
// stored (the mute may postdate the gateway's check), permanently; their delete and
// others' messages are stored.
func TestHandleBatch_muted(t *testing.T) {
	st, pool := newStore(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `UPDATE room_members SET muted_at = now() WHERE room_id = 'room-a' AND user_id = 'u-bob'`); err != nil {
		t.Fatal(err)
	}
	steps := []step{
		{batch: []event.Envelope{chattest.Message(t, "room-a", "u-alice", "1", "fine")}},
		{batch: []event.Envelope{chattest.Message(t, "room-a", "u-bob", "2", "muted")}, wantErr: store.ErrMuted},
	}
	runSteps(t, st, pool, steps)
	if got, want := timeline(t, pool), []string{"room-a/1 message u-alice fine"}; !slices.Equal(got, want) {
		t.Errorf("timeline:\n got %q\nwant %q", got, want)
	}
	checkLastSeq(t, pool)
}
