package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/stacktest"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

const storedTopic = "test.chat.stored"

var (
	roomA = chattest.Room{ID: "room-a", Members: []string{"u-alice", "u-bob", "u-carol"}, Admins: []string{"u-carol"}}
	roomB = chattest.Room{ID: "room-b", Members: []string{"u-alice", "u-bob"}}
	dm    = chattest.Room{ID: "dm-alice-bob", Kind: event.RoomKindDM, Members: []string{"u-bob", "u-alice"}}
)

// step is one HandleBatch call and the error it must fail with (nil: success, else a
// permanent error wrapping it).
type step struct {
	// applied, if set, runs before the batch: what a gateway committed to the database
	// before the batch's events reached persistence.
	applied string
	batch   []event.Envelope
	wantErr error
}

// runSteps runs steps through st in order and returns the events of the batches that
// succeeded, by id.
func runSteps(t *testing.T, st *store.Store, pool *pgxpool.Pool, steps []step) map[string]event.Envelope {
	t.Helper()
	ctx := context.Background()
	sent := map[string]event.Envelope{}
	for i, s := range steps {
		if s.applied != "" {
			if _, err := pool.Exec(ctx, s.applied); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		err := st.HandleBatch(ctx, chattest.Consumed(t, s.batch...))
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("step %d: %v", i, err)
		case s.wantErr != nil && !errors.Is(err, s.wantErr):
			t.Fatalf("step %d: error %v, want %v", i, err, s.wantErr)
		case s.wantErr != nil && !errors.Is(err, consumer.ErrPermanent):
			t.Fatalf("step %d: error %v is not permanent", i, err)
		}
		if err == nil {
			for _, e := range s.batch {
				sent[e.ID] = e
			}
		}
	}
	return sent
}

func newStore(t *testing.T) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	env := stacktest.Get(t)
	pool := chattest.Pool(t, env.NewDatabase(t))
	chattest.Seed(t, pool, roomA, roomB, dm)
	st, err := store.New(pool, store.Config{Topic: storedTopic})
	if err != nil {
		t.Fatal(err)
	}
	return st, pool
}

func TestHandleBatch(t *testing.T) {
	msg := func(t *testing.T, room, sender, cmid string) event.Envelope {
		return chattest.Message(t, room, sender, cmid, "text "+cmid)
	}
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// want lists the timeline as "room/seq kind sender text [edited] [deleted]".
		want []string
	}{
		{
			name: "sequences are gap-free and per room",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), msg(t, "room-b", "u-bob", "2"), msg(t, "room-a", "u-bob", "3")}},
					{batch: []event.Envelope{msg(t, "room-b", "u-alice", "4"), msg(t, "room-a", "u-alice", "5")}},
				}
			},
			want: []string{
				"room-a/1 message u-alice text 1", "room-a/2 message u-bob text 3", "room-a/3 message u-alice text 5",
				"room-b/1 message u-bob text 2", "room-b/2 message u-alice text 4",
			},
		},
		{
			name: "a redelivered event id stores nothing",
			steps: func(t *testing.T) []step {
				e1, e2 := msg(t, "room-a", "u-alice", "1"), msg(t, "room-a", "u-alice", "2")
				return []step{
					{batch: []event.Envelope{e1}},
					{batch: []event.Envelope{e1, e2, e2}}, // redelivered, then duplicated within a batch
					{batch: []event.Envelope{e2, e1}},
				}
			},
			want: []string{"room-a/1 message u-alice text 1", "room-a/2 message u-alice text 2"},
		},
		{
			name: "the same client_msg_id twice stores one row",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "c-1"), msg(t, "room-a", "u-alice", "c-1")}},
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "c-1")}},
					// Another sender or another room may reuse the id.
					{batch: []event.Envelope{msg(t, "room-a", "u-bob", "c-1"), msg(t, "room-b", "u-alice", "c-1")}},
				}
			},
			want: []string{"room-a/1 message u-alice text c-1", "room-a/2 message u-bob text c-1", "room-b/1 message u-alice text c-1"},
		},
		{
			name: "the author edits and deletes",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), msg(t, "room-a", "u-alice", "2")}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "3", event.KindEdit, "fixed", 1)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "4", event.KindDelete, "", 2)}},
				}
			},
			want: []string{
				"room-a/1 message u-alice fixed edited", "room-a/2 message u-alice deleted",
				"room-a/3 edit u-alice fixed ->1", "room-a/4 delete u-alice ->2",
			},
		},
		{
			name: "a room admin edits and deletes someone else's message",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), msg(t, "room-a", "u-alice", "2")}},
					{batch: []event.Envelope{
						chattest.Submitted(t, "room-a", "u-carol", "3", event.KindEdit, "moderated", 1),
						chattest.Submitted(t, "room-a", "u-carol", "4", event.KindDelete, "", 2),
					}},
				}
			},
			want: []string{
				"room-a/1 message u-alice moderated edited", "room-a/2 message u-alice deleted",
				"room-a/3 edit u-carol moderated ->1", "room-a/4 delete u-carol ->2",
			},
		},
		{
			name: "a delete removes the text of the message and of its edits",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), chattest.Submitted(t, "room-a", "u-alice", "2", event.KindEdit, "v2", 1)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "3", event.KindDelete, "", 1)}},
				}
			},
			want: []string{"room-a/1 message u-alice edited deleted", "room-a/2 edit u-alice ->1", "room-a/3 delete u-alice ->1"},
		},
		{
			name: "a second delete of the same message stores nothing and fails nothing",
			steps: func(t *testing.T) []step {
				return []step{
					// The author and an admin deleting at once: both accepted by gateways.
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"),
						chattest.Submitted(t, "room-a", "u-alice", "2", event.KindDelete, "", 1),
						chattest.Submitted(t, "room-a", "u-carol", "3", event.KindDelete, "", 1)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "4", event.KindDelete, "", 1)}},
					// Someone with no right to delete it still gets the permanent refusal.
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-bob", "5", event.KindDelete, "", 1)}, wantErr: store.ErrNotAuthor},
				}
			},
			want: []string{"room-a/1 message u-alice deleted", "room-a/2 delete u-alice ->1"},
		},
		{
			name: "an edit may follow its target in the same batch",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{
					msg(t, "room-a", "u-alice", "1"),
					chattest.Submitted(t, "room-a", "u-alice", "2", event.KindEdit, "v2", 1),
					chattest.Submitted(t, "room-a", "u-alice", "3", event.KindEdit, "v3", 1),
				}}}
			},
			want: []string{"room-a/1 message u-alice v3 edited", "room-a/2 edit u-alice v2 ->1", "room-a/3 edit u-alice v3 ->1"},
		},
		{
			name: "an edit by someone else is refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1")}},
					{batch: []event.Envelope{msg(t, "room-a", "u-bob", "2"), chattest.Submitted(t, "room-a", "u-bob", "3", event.KindEdit, "mine now", 1)},
						wantErr: store.ErrNotAuthor},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-bob", "4", event.KindDelete, "", 1)}, wantErr: store.ErrNotAuthor},
				}
			},
			want: []string{"room-a/1 message u-alice text 1"},
		},
		{
			name: "edits of missing, deleted or non-message entries are refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), chattest.Submitted(t, "room-a", "u-alice", "2", event.KindDelete, "", 1)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "3", event.KindEdit, "x", 1)}, wantErr: store.ErrTargetDeleted},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "4", event.KindEdit, "x", 2)}, wantErr: store.ErrTargetNotMessage},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "5", event.KindEdit, "x", 99)}, wantErr: store.ErrTargetNotFound},
				}
			},
			want: []string{"room-a/1 message u-alice deleted", "room-a/2 delete u-alice ->1"},
		},
		{
			name: "an unknown room rolls back the whole batch",
			steps: func(t *testing.T) []step {
				return []step{{
					batch:   []event.Envelope{msg(t, "room-a", "u-alice", "1"), msg(t, "room-nowhere", "u-alice", "2")},
					wantErr: store.ErrUnknownRoom,
				}}
			},
			want: nil,
		},
		{
			name: "text PostgreSQL cannot hold is a permanent error",
			steps: func(t *testing.T) []step {
				return []step{{
					batch:   []event.Envelope{msg(t, "room-a", "u-alice", "1"), chattest.Message(t, "room-a", "u-alice", "2", "nul \x00 byte")},
					wantErr: consumer.ErrPermanent,
				}}
			},
			want: nil,
		},
		{
			name: "membership changes are join and leave entries",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{
					chattest.Membership(t, "room-a", "u-bob", event.ChangeJoined),
					msg(t, "room-a", "u-bob", "1"),
					chattest.Membership(t, "room-a", "u-bob", event.ChangeLeft),
				}}}
			},
			want: []string{"room-a/1 join u-bob", "room-a/2 message u-bob text 1", "room-a/3 leave u-bob"},
		},
		{
			name: "direct messages carry their members",
			steps: func(t *testing.T) []step {
				return []step{{batch: []event.Envelope{msg(t, "dm-alice-bob", "u-alice", "1")}}}
			},
			want: []string{"dm-alice-bob/1 message u-alice text 1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			sent := runSteps(t, st, pool, tc.steps(t))
			if got := timeline(t, pool); !slices.Equal(got, tc.want) {
				t.Errorf("timeline:\n got %q\nwant %q", got, tc.want)
			}
			checkOutbox(t, pool, sent)
			checkLastSeq(t, pool)
		})
	}
}

// TestHandleBatch_reactions: toggles are timeline entries; the reactions table follows
// them in the same transaction; toggles that change nothing, and reactions to deleted
// messages, store nothing; reactions to missing or non-message entries are permanent
// errors, like edits.
func TestHandleBatch_reactions(t *testing.T) {
	msg := func(t *testing.T, room, sender, cmid string) event.Envelope {
		return chattest.Message(t, room, sender, cmid, "text "+cmid)
	}
	react := chattest.Reaction
	tests := []struct {
		name          string
		steps         func(t *testing.T) []step
		want          []string
		wantReactions []string // "room/target user emoji", in seq order
	}{
		{
			name: "on, twice on, another user, off",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), react(t, "room-a", "u-bob", "r1", 1, "👍", true)}},
					// Another device of bob's adds the same: already on, nothing stored.
					{batch: []event.Envelope{react(t, "room-a", "u-bob", "r2", 1, "👍", true), react(t, "room-a", "u-carol", "r3", 1, "👍", true),
						react(t, "room-a", "u-alice", "r4", 1, "🎉", true)}},
					{batch: []event.Envelope{react(t, "room-a", "u-carol", "r5", 1, "👍", false),
						// Removing what is not there is a no-op too.
						react(t, "room-a", "u-carol", "r6", 1, "🎉", false)}},
				}
			},
			want: []string{"room-a/1 message u-alice text 1", "room-a/2 reaction u-bob +👍 ->1", "room-a/3 reaction u-carol +👍 ->1",
				"room-a/4 reaction u-alice +🎉 ->1", "room-a/5 reaction u-carol -👍 ->1"},
			wantReactions: []string{"room-a/1 u-bob 👍", "room-a/1 u-alice 🎉"},
		},
		{
			name: "a retried toggle with the same client_msg_id is one toggle",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), react(t, "room-a", "u-bob", "r1", 1, "👍", true),
						react(t, "room-a", "u-bob", "r2", 1, "👍", false)}},
					// A retry of r1 after r2 removed it must not add it back.
					{batch: []event.Envelope{react(t, "room-a", "u-bob", "r1", 1, "👍", true)}},
				}
			},
			want:          []string{"room-a/1 message u-alice text 1", "room-a/2 reaction u-bob +👍 ->1", "room-a/3 reaction u-bob -👍 ->1"},
			wantReactions: nil,
		},
		{
			name: "a delete removes the reactions; later toggles on it store nothing",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{msg(t, "room-a", "u-alice", "1"), msg(t, "room-a", "u-alice", "2"),
						react(t, "room-a", "u-bob", "r1", 1, "👍", true), react(t, "room-a", "u-bob", "r2", 2, "👍", true)}},
					{batch: []event.Envelope{chattest.Submitted(t, "room-a", "u-alice", "d", event.KindDelete, "", 1),
						react(t, "room-a", "u-carol", "r3", 1, "👍", true)}},
				}
			},
			want: []string{"room-a/1 message u-alice deleted", "room-a/2 message u-alice text 2", "room-a/3 reaction u-bob +👍 ->1",
				"room-a/4 reaction u-bob +👍 ->2", "room-a/5 delete u-alice ->1"},
			wantReactions: []string{"room-a/2 u-bob 👍"},
		},
		{
			name: "reactions to missing or non-message entries are refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{chattest.Membership(t, "room-a", "u-bob", event.ChangeJoined)}},
					{batch: []event.Envelope{react(t, "room-a", "u-bob", "r1", 1, "👍", true)}, wantErr: store.ErrTargetNotMessage},
					{batch: []event.Envelope{react(t, "room-a", "u-bob", "r2", 9, "👍", true)}, wantErr: store.ErrTargetNotFound},
				}
			},
			want: []string{"room-a/1 join u-bob"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			sent := runSteps(t, st, pool, tc.steps(t))
			if got := timeline(t, pool); !slices.Equal(got, tc.want) {
				t.Errorf("timeline:\n got %q\nwant %q", got, tc.want)
			}
			rows, err := pool.Query(ctx, `SELECT room_id || '/' || target_seq || ' ' || user_id || ' ' || emoji FROM reactions ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.wantReactions) {
				t.Errorf("reactions:\n got %q\nwant %q", got, tc.wantReactions)
			}
			checkOutbox(t, pool, sent)
			checkLastSeq(t, pool)
		})
	}
}

func timeline(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT room_id, seq, kind, sender, coalesce(text, ''), coalesce(target_seq, 0),
		       edited_at IS NOT NULL, deleted_at IS NOT NULL,
		       CASE reaction_on WHEN true THEN '+' WHEN false THEN '-' ELSE '' END || coalesce(emoji, '')
		FROM messages ORDER BY room_id, seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var room, kind, sender, text string
		var seq, target int64
		var edited, deleted bool
		var reaction string
		if err := rows.Scan(&room, &seq, &kind, &sender, &text, &target, &edited, &deleted, &reaction); err != nil {
			t.Fatal(err)
		}
		s := strings.Join(strings.Fields(fmt.Sprintf("%s/%d %s %s %s %s", room, seq, kind, sender, text, reaction)), " ")
		if target > 0 {
			s += fmt.Sprintf(" ->%d", target)
		}
		if edited {
			s += " edited"
		}
		if deleted {
			s += " deleted"
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkOutbox asserts one outbox row per timeline entry, carrying the message.stored
// event of that entry, caused by the submitted event (sent holds the submitted events
// of successful batches).
func checkOutbox(t *testing.T, pool *pgxpool.Pool, sent map[string]event.Envelope) {
	t.Helper()
	ctx := context.Background()
	type entry struct {
		room, kind, sender, text, emoji string
		seq, target                     int64
		on                              bool
	}
	entries := map[string]entry{}
	rows, err := pool.Query(ctx, `SELECT event_id, room_id, seq, kind, sender, coalesce(text, ''), coalesce(target_seq, 0),
		coalesce(emoji, ''), coalesce(reaction_on, false) FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var e entry
		if err := rows.Scan(&id, &e.room, &e.seq, &e.kind, &e.sender, &e.text, &e.target, &e.emoji, &e.on); err != nil {
			t.Fatal(err)
		}
		entries[id] = e
	}
	rows.Close()

	rows, err = pool.Query(ctx, `SELECT topic, key, payload, headers FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		var topic, key string
		var payload []byte
		var headers map[string]string
		if err := rows.Scan(&topic, &key, &payload, &headers); err != nil {
			t.Fatal(err)
		}
		e, err := event.Decode(payload)
		if err != nil {
			t.Fatalf("outbox payload: %v", err)
		}
		p, err := event.As[event.MessageStored](e)
		if err != nil {
			t.Fatalf("outbox payload: %v", err)
		}
		want, ok := entries[p.MessageID]
		if !ok {
			t.Errorf("outbox event %s for message %s has no timeline entry", e.ID, p.MessageID)
			continue
		}
		got := entry{room: p.RoomID, kind: p.Kind, sender: p.Sender, text: p.Text, seq: p.Seq, target: p.TargetSeq, emoji: p.Emoji, on: p.On}
		if want.kind == event.KindMessage || (want.kind == event.KindEdit && want.text == "") {
			// The row's text may have been edited since, or cleared by a delete of the
			// message (the log keeps what was sent).
			got.text = want.text
		}
		if got != want || topic != storedTopic || key != p.RoomID {
			t.Errorf("outbox row (%s, %s) %+v, want (%s, %s) %+v", topic, key, got, storedTopic, p.RoomID, want)
		}
		cause := sent[p.MessageID]
		if e.Source != store.DefaultSource || e.CausationID != cause.ID || e.CorrelationID != cause.ID || e.TraceParent != cause.TraceParent {
			t.Errorf("stored event %s: source %q causation %q correlation %q traceparent %q; want %q, %s, %s, %q",
				e.ID, e.Source, e.CausationID, e.CorrelationID, e.TraceParent, store.DefaultSource, cause.ID, cause.ID, cause.TraceParent)
		}
		if headers[event.HeaderID] != e.ID || headers[event.HeaderType] != event.TypeMessageStored {
			t.Errorf("outbox headers %v do not describe event %s", headers, e.ID)
		}
		if p.RoomID == dm.ID && (p.RoomKind != event.RoomKindDM || !slices.Equal(p.Members, []string{"u-alice", "u-bob"})) {
			t.Errorf("dm event: room_kind %q members %v", p.RoomKind, p.Members)
		}
	}
	if n != len(entries) {
		t.Errorf("%d outbox rows for %d timeline entries", n, len(entries))
	}
}

func checkLastSeq(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if n := chattest.Count(t, pool, `
		SELECT count(*) FROM rooms r
		WHERE r.last_seq <> coalesce((SELECT max(seq) FROM messages m WHERE m.room_id = r.id), 0)
		   OR r.last_seq <> (SELECT count(*) FROM messages m WHERE m.room_id = r.id)`); n != 0 {
		t.Errorf("%d rooms whose last_seq disagrees with a gap-free timeline", n)
	}
}

// A rollback must leave neither timeline rows nor outbox rows nor inbox entries.
func TestHandleBatch_failure_leaves_nothing(t *testing.T) {
	st, pool := newStore(t)
	ctx := context.Background()
	good := chattest.Message(t, "room-a", "u-alice", "1", "hello")
	err := st.HandleBatch(ctx, chattest.Consumed(t, good, chattest.Message(t, "room-nowhere", "u-alice", "2", "lost")))
	if !errors.Is(err, store.ErrUnknownRoom) {
		t.Fatalf("error %v, want ErrUnknownRoom", err)
	}
	for _, table := range []string{"messages", "outbox", "processed_events"} {
		if n := chattest.Count(t, pool, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after a failed batch", table, n)
		}
	}
	// The good event alone (as the runner retries it after isolating the failure) stores.
	if err := st.HandleBatch(ctx, chattest.Consumed(t, good)); err != nil {
		t.Fatal(err)
	}
	if n := chattest.Count(t, pool, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("outbox has %d rows, want 1", n)
	}
}

// A crash before commit (here: a cancelled context inside the transaction) is a rollback.
func TestHandleBatch_abort_before_commit(t *testing.T) {
	env := stacktest.Get(t)
	pool := chattest.Pool(t, env.NewDatabase(t))
	chattest.Seed(t, pool, roomA)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.New(pool, store.Config{Topic: storedTopic, BeforeCommit: func(int64) { cancel() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.HandleBatch(ctx, chattest.Consumed(t, chattest.Message(t, "room-a", "u-alice", "1", "x"))); err == nil {
		t.Fatal("batch committed although its context ended before commit")
	}
	for _, table := range []string{"messages", "outbox", "processed_events"} {
		if n := chattest.Count(t, pool, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after an aborted batch", table, n)
		}
	}
	if n := chattest.Count(t, pool, "SELECT last_seq FROM rooms WHERE id = 'room-a'"); n != 0 {
		t.Errorf("last_seq %d after an aborted batch", n)
	}
}

// Batches for the same rooms handled concurrently (two instances during a rebalance)
// still give gap-free sequences, and the outbox order (txid, id) follows each room's seq.
func TestHandleBatch_concurrent_batches(t *testing.T) {
	st, pool := newStore(t)
	const workers, batches, size = 6, 15, 10
	rooms := []string{"room-a", "room-b", "dm-alice-bob"}
	work := make([][][]*consumer.Message, workers)
	for w := range workers {
		for b := range batches {
			es := make([]event.Envelope, size)
			for i := range es {
				es[i] = chattest.Message(t, rooms[(w+b+i)%len(rooms)], "u-alice", fmt.Sprintf("w%d-b%d-%d", w, b, i), "x")
			}
			work[w] = append(work[w], chattest.Consumed(t, es...))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ms := range work[w] {
				if err := st.HandleBatch(context.Background(), ms); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := chattest.Count(t, pool, "SELECT count(*) FROM messages"); n != workers*batches*size {
		t.Fatalf("%d rows, want %d", n, workers*batches*size)
	}
	checkLastSeq(t, pool)

	// Reading the outbox the way the relay does must give each room's seqs in order.
	rows, err := pool.Query(context.Background(), `SELECT payload FROM outbox ORDER BY txid, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	last := map[string]int64{}
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
		if p.Seq != last[p.RoomID]+1 {
			t.Fatalf("outbox order: %s seq %d after %d", p.RoomID, p.Seq, last[p.RoomID])
		}
		last[p.RoomID] = p.Seq
	}
}

// How fast the handler stores, one transaction per batch, by batch size: a measurement,
// not a test (go test -run '^$' -bench HandleBatch ./internal/store/). Each size stores a
// fixed number of events once, however large b.N: the point is the events/s per size.
func BenchmarkHandleBatch_throughput(b *testing.B) {
	t := b
	env := stacktest.Get(t)
	pool := chattest.Pool(t, env.NewDatabase(t))
	var rooms []chattest.Room
	for i := range 20 {
		rooms = append(rooms, chattest.Room{ID: fmt.Sprintf("room-%02d", i), Members: []string{"u-alice"}})
	}
	chattest.Seed(t, pool, rooms...)
	st, err := store.New(pool, store.Config{Topic: storedTopic})
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 10, 100, 500} {
		total := 5000
		if size == 1 {
			total = 1000 // one commit per event: slow, and the point is made
		}
		var batches [][]*consumer.Message
		for b := 0; b < total/size; b++ {
			es := make([]event.Envelope, size)
			for i := range es {
				n := b*size + i
				es[i] = chattest.Message(t, rooms[n%len(rooms)].ID, "u-alice", fmt.Sprintf("s%d-%d", size, n), "hello")
			}
			batches = append(batches, chattest.Consumed(t, es...))
		}
		start := time.Now()
		for _, ms := range batches {
			if err := st.HandleBatch(context.Background(), ms); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(start)
		t.Logf("batch size %3d: %d events in %s = %.0f events/s", size, total, took.Round(time.Millisecond), float64(total)/took.Seconds())
		b.ReportMetric(float64(total)/took.Seconds(), fmt.Sprintf("events/s@batch%d", size))
	}
	checkLastSeq(t, pool)
}
