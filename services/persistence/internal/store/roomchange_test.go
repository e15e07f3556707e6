package store_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// roomR has an owner, an admin and two members.
var roomR = chattest.Room{ID: "room-r", Members: []string{"u-olive", "u-adam", "u-mia", "u-max"}, Admins: []string{"u-olive", "u-adam"}}

// change builds a room change of user in room by by, as a gateway submits it.
func change(t *testing.T, room, user, change, by, role string, settings *event.RoomSettingsChange) event.Envelope {
	t.Helper()
	m := event.MembershipChanged{RoomID: room, User: user, UserName: user, Change: change, By: by, ChangedAt: time.Now().UTC(),
		Role: role, Settings: settings}
	if by != user {
		m.ByName = by
	}
	e, err := event.New("kchat/gateway/test", m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ptr[T any](v T) *T { return &v }

// TestHandleBatch_room_changes: role changes, mutes, unmutes, transfers and settings are
// room_change entries with their own seq, naming their author as sender; they are stored
// once however often they are delivered, and refused (permanently, leaving nothing) when
// their author does not outrank the member they concern (timelinemembers_test.go covers
// changes overtaken by later ones).
func TestHandleBatch_room_changes(t *testing.T) {
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// want lists the room_change entries as "seq sender" and their JSON (jsonb orders keys
		// shortest first).
		want []string
	}{
		{
			name: "the owner makes a member an admin",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{change(t, "room-r", "u-mia", event.ChangeRole, "u-olive", "admin", nil)}}}
			},
			want: []string{`1 u-olive {"role": "admin", "change": "role", "target": "u-mia", "target_name": "u-mia"}`},
		},
		{
			name: "an admin mutes and unmutes a member",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{change(t, "room-r", "u-mia", event.ChangeMuted, "u-adam", "", nil),
					change(t, "room-r", "u-mia", event.ChangeUnmuted, "u-adam", "", nil)}}}
			},
			want: []string{`1 u-adam {"change": "muted", "target": "u-mia", "target_name": "u-mia"}`,
				`2 u-adam {"change": "unmuted", "target": "u-mia", "target_name": "u-mia"}`},
		},
		{
			name: "settings name only what changed and no target",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{change(t, "room-r", "u-adam", event.ChangeSettings, "u-adam", "",
					&event.RoomSettingsChange{Topic: ptr(""), Private: ptr(true)})}}}
			},
			want: []string{`1 u-adam {"change": "settings", "settings": {"topic": "", "private": true}}`},
		},
		{
			name: "an ownership transfer",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{change(t, "room-r", "u-adam", event.ChangeOwner, "u-olive", "owner", nil)}}}
			},
			want: []string{`1 u-olive {"role": "owner", "change": "owner", "target": "u-adam", "target_name": "u-adam"}`},
		},
		{
			name: "a redelivered change is stored once",
			steps: func(t *testing.T) []step {
				e := change(t, "room-r", "u-max", event.ChangeMuted, "u-olive", "", nil)
				return []step{{batch: []event.Envelope{e, e}}, {batch: []event.Envelope{e}}}
			},
			want: []string{`1 u-olive {"change": "muted", "target": "u-max", "target_name": "u-max"}`},
		},
		{
			name: "changes by someone who does not outrank their target are refused",
			steps: func(t *testing.T) []step {
				return []step{
					// An admin may not give the admin role, nor act on the owner or an admin.
					{batch: []event.Envelope{change(t, "room-r", "u-mia", event.ChangeRole, "u-adam", "admin", nil)}, wantErr: store.ErrNotOutranked},
					{batch: []event.Envelope{change(t, "room-r", "u-olive", event.ChangeMuted, "u-adam", "", nil)}, wantErr: store.ErrNotOutranked},
					// A member mutes nobody, changes no settings.
					{batch: []event.Envelope{change(t, "room-r", "u-max", event.ChangeMuted, "u-mia", "", nil)}, wantErr: store.ErrNotOutranked},
					{batch: []event.Envelope{change(t, "room-r", "u-mia", event.ChangeSettings, "u-mia", "",
						&event.RoomSettingsChange{Name: ptr("mine")})}, wantErr: store.ErrNotAdmin},
					// Nobody acts on a non-member; a DM has no roles.
					{batch: []event.Envelope{change(t, "room-r", "u-alice", event.ChangeMuted, "u-olive", "", nil)}, wantErr: store.ErrNoSuchMember},
					{batch: []event.Envelope{change(t, "room-r", "u-alice", event.ChangeOwner, "u-olive", "owner", nil)}, wantErr: store.ErrNoSuchMember},
					{batch: []event.Envelope{change(t, "dm-alice-bob", "u-bob", event.ChangeMuted, "u-alice", "", nil)}, wantErr: store.ErrDMChange},
					// A refusal in a batch leaves nothing of the batch behind.
					{batch: []event.Envelope{change(t, "room-r", "u-max", event.ChangeMuted, "u-olive", "", nil),
						change(t, "room-r", "u-max", event.ChangeMuted, "u-mia", "", nil)}, wantErr: store.ErrNotOutranked},
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			chattest.Seed(t, pool, roomR)
			if _, err := pool.Exec(ctx, `UPDATE room_members SET role = 'owner' WHERE room_id = 'room-r' AND user_id = 'u-olive'`); err != nil {
				t.Fatal(err)
			}
			sent := runSteps(t, st, pool, tc.steps(t))
			if got := roomChanges(t, pool); !slices.Equal(got, tc.want) {
				t.Errorf("room changes:\n got %q\nwant %q", got, tc.want)
			}
			checkOutbox(t, pool, sent)
			checkStoredRoomChanges(t, pool)
			checkLastSeq(t, pool)
		})
	}
}

// roomChanges lists the room_change entries as "seq sender room_change".
func roomChanges(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT seq || ' ' || sender || ' ' || room_change::text FROM messages
		WHERE kind = 'room_change' ORDER BY room_id, seq`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkStoredRoomChanges wants each room_change entry's stored event to carry what its
// row records.
func checkStoredRoomChanges(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT event_id, room_change FROM messages WHERE kind = 'room_change'`)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]map[string]any{}
	for rows.Next() {
		var id string
		var c map[string]any
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		recorded[id] = c
	}
	rows.Close()
	payloads, err := pool.Query(ctx, `SELECT payload FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := pgx.CollectRows(payloads, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range bs {
		e, err := event.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := event.As[event.MessageStored](e)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != event.KindRoomChange {
			continue
		}
		n++
		fields, err := json.Marshal(struct {
			Change     string                    `json:"change"`
			Target     string                    `json:"target,omitempty"`
			TargetName string                    `json:"target_name,omitempty"`
			Role       string                    `json:"role,omitempty"`
			Settings   *event.RoomSettingsChange `json:"settings,omitempty"`
		}{p.Change, p.Target, p.TargetName, p.Role, p.Settings})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(fields, &got); err != nil {
			t.Fatal(err)
		}
		if want := recorded[p.MessageID]; !reflect.DeepEqual(got, want) {
			t.Errorf("stored event of %s carries %v, its row %v", p.MessageID, got, want)
		}
	}
	if n != len(recorded) {
		t.Errorf("%d room_change events for %d entries", n, len(recorded))
	}
}
