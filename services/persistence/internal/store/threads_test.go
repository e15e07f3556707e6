package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// TestHandleBatch_threads: replies are timeline entries of their own (own seq, thread_root
// set), the thread's summary is kept in the same transaction (count and last reply of
// the replies not deleted, participants first first), each stored reply carries the
// participants before it, and a bad root is a permanent error that stores nothing.
func TestHandleBatch_threads(t *testing.T) {
	msg := func(t *testing.T, room, sender, cmid string) event.Envelope {
		return chattest.Message(t, room, sender, cmid, "text "+cmid)
	}
	reply := func(t *testing.T, sender, cmid string, root int64) event.Envelope {
		return chattest.Reply(t, "room-a", sender, cmid, "re "+cmid, root)
	}
	del := func(t *testing.T, sender, cmid string, target int64) event.Envelope {
		return chattest.Submitted(t, "room-a", sender, cmid, event.KindDelete, "", target)
	}
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// wantReplies lists the replies as "seq->root sender [deleted]".
		wantReplies []string
		// wantThreads lists threads rows as "root count last_seq participants".
		wantThreads []string
		// wantParticipants are the stored replies' thread_participants, by seq.
		wantParticipants map[int64]string
	}{
		{
			name: "replies in one batch and the next, across senders",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), reply(t, "u-bob", "2", 1), msg(t, "room-a", "u-carol", "3")}},
					{batch: []event.Envelope{reply(t, "u-carol", "4", 1), reply(t, "u-bob", "5", 1), reply(t, "u-alice", "6", 3)}},
				}
			},
			wantReplies:      []string{"2->1 u-bob", "4->1 u-carol", "5->1 u-bob", "6->3 u-alice"},
			wantThreads:      []string{"1 3 5 u-alice,u-bob,u-carol", "3 1 6 u-carol,u-alice"},
			wantParticipants: map[int64]string{2: "u-alice", 4: "u-alice,u-bob", 5: "u-alice,u-bob,u-carol", 6: "u-carol"},
		},
		{
			name: "deleting a reply lowers the count; its author stays a participant",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), reply(t, "u-bob", "2", 1), reply(t, "u-carol", "3", 1)}},
					{batch: []event.Envelope{del(t, "u-carol", "d", 3)}},
					// A reply and the delete of another in one batch: counted once, after both.
					{batch: []event.Envelope{reply(t, "u-alice", "5", 1), del(t, "u-bob", "d2", 2)}},
				}
			},
			wantReplies: []string{"2->1 u-bob deleted", "3->1 u-carol deleted", "5->1 u-alice"},
			wantThreads: []string{"1 1 5 u-alice,u-bob,u-carol"},
		},
		{
			name: "a retried reply is stored once",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), reply(t, "u-bob", "2", 1)}},
					{batch: []event.Envelope{reply(t, "u-bob", "2", 1)}},
				}
			},
			wantReplies: []string{"2->1 u-bob"},
			wantThreads: []string{"1 1 2 u-alice,u-bob"},
		},
		{
			name: "a reply to a root deleted since the gateway's check is stored",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), del(t, "u-alice", "d", 1), reply(t, "u-bob", "3", 1)}},
				}
			},
			wantReplies: []string{"3->1 u-bob"},
			wantThreads: []string{"1 1 3 u-alice,u-bob"},
		},
		{
			name: "bad roots are refused and store nothing",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), reply(t, "u-bob", "2", 1),
						chattest.Membership(t, "room-a", "u-dave", event.ChangeJoined)}},
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "x"), reply(t, "u-carol", "r", 2)}, wantErr: store.ErrRootIsReply},
					{batch: []event.Envelope{reply(t, "u-carol", "r", 3)}, wantErr: store.ErrTargetNotMessage},
					{batch: []event.Envelope{reply(t, "u-carol", "r", 99)}, wantErr: store.ErrTargetNotFound},
					// Another room's message is no root here: room-b has no seq 1 yet.
					{batch: []event.Envelope{chattest.Reply(t, "room-b", "u-bob", "r", "re", 1)}, wantErr: store.ErrTargetNotFound},
				}
			},
			wantReplies: []string{"2->1 u-bob"},
			wantThreads: []string{"1 1 2 u-alice,u-bob"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			runSteps(t, st, pool, tc.steps(t))
			if got := queryStrings(t, pool, `SELECT seq || '->' || thread_root || ' ' || sender || CASE WHEN deleted_at IS NULL THEN '' ELSE ' deleted' END
				FROM messages WHERE thread_root IS NOT NULL ORDER BY room_id, seq`); !slices.Equal(got, tc.wantReplies) {
				t.Errorf("replies:\n got %q\nwant %q", got, tc.wantReplies)
			}
			// last_reply_at is the newest live reply's sent_at (checked as a relation).
			if got := queryStrings(t, pool, `SELECT t.root_seq || ' ' || t.reply_count || ' ' || t.last_seq || ' ' || array_to_string(t.participants, ',')
				|| CASE WHEN t.last_reply_at IS NOT DISTINCT FROM (SELECT max(m.sent_at) FROM messages m
				        WHERE m.room_id = t.room_id AND m.thread_root = t.root_seq AND m.deleted_at IS NULL) THEN '' ELSE ' bad last_reply_at' END
				FROM threads t ORDER BY t.root_seq`); !slices.Equal(got, tc.wantThreads) {
				t.Errorf("threads:\n got %q\nwant %q", got, tc.wantThreads)
			}
			if tc.wantParticipants != nil {
				if got := storedParticipants(t, pool); fmt.Sprint(got) != fmt.Sprint(tc.wantParticipants) {
					t.Errorf("stored participants:\n got %v\nwant %v", got, tc.wantParticipants)
				}
			}
		})
	}
}

func queryStrings(t *testing.T, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// storedParticipants reads the outbox's stored replies: seq -> thread_participants.
func storedParticipants(t *testing.T, pool *pgxpool.Pool) map[int64]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		e, err := event.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		p, err := event.As[event.MessageStored](e)
		if err != nil {
			t.Fatal(err)
		}
		if p.ThreadRoot > 0 {
			out[p.Seq] = strings.Join(p.ThreadParticipants, ",")
		}
	}
	return out
}
