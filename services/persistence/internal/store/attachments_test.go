package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// withAttachments builds a message carrying upload ids.
func withAttachments(t *testing.T, room, sender, cmid string, ids ...string) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MessageSubmitted{
		RoomID: room, Sender: sender, SenderName: "Name of " + sender, ClientMsgID: cmid,
		Text: "files " + cmid, Kind: event.KindMessage, SubmittedAt: time.Now().UTC(), Attachments: ids,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// seedUpload inserts an upload row as the gateway does after writing its blob.
func seedUpload(t *testing.T, pool *pgxpool.Pool, id, room, uploader string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO attachments (id, room_id, uploader, filename, content_type, size, width, height, blob_key, thumb_key)
		VALUES ($1, $2, $3, $1 || '.png', 'image/png', 100, 64, 32, 'f/' || $1, 't/' || $1)`, id, room, uploader)
	if err != nil {
		t.Fatal(err)
	}
}

func TestHandleBatch_attachments(t *testing.T) {
	del := func(t *testing.T, cmid string, target int64) event.Envelope {
		return chattest.Submitted(t, "room-a", "u-alice", cmid, event.KindDelete, "", target)
	}
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// want lists each upload as "id room/seq [deleted]" ("id -" when not attached).
		want []string
	}{
		{
			name: "a message links its uploads; its delete marks them deleted",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "1", "up-1", "up-2")}},
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "2", "up-3")}},
					{batch: []event.Envelope{del(t, "3", 1)}},
				}
			},
			want: []string{"up-1 room-a/1 deleted", "up-2 room-a/1 deleted", "up-3 room-a/2", "up-4 -", "up-5 -", "up-6 -"},
		},
		{
			name: "an upload already attached is refused, also within one batch",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "1", "up-1"), withAttachments(t, "room-a", "u-alice", "2", "up-1")},
						wantErr: store.ErrBadAttachment},
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "1", "up-1")}},
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "2", "up-1")}, wantErr: store.ErrBadAttachment},
				}
			},
			want: []string{"up-1 room-a/1", "up-2 -", "up-3 -", "up-4 -", "up-5 -", "up-6 -"},
		},
		{
			name: "unknown, another user's and another room's uploads are refused",
			steps: func(t *testing.T) []step {
				return []step{
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "1", "up-x")}, wantErr: store.ErrBadAttachment},
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "2", "up-4")}, wantErr: store.ErrBadAttachment},
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "3", "up-5")}, wantErr: store.ErrBadAttachment},
					// up-6 is in room-a by alice but marked deleted (a swept upload).
					{batch: []event.Envelope{withAttachments(t, "room-a", "u-alice", "4", "up-6")}, wantErr: store.ErrBadAttachment},
				}
			},
			want: []string{"up-1 -", "up-2 -", "up-3 -", "up-4 -", "up-5 -", "up-6 -"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, pool := newStore(t)
			ctx := context.Background()
			for _, id := range []string{"up-1", "up-2", "up-3"} {
				seedUpload(t, pool, id, "room-a", "u-alice")
			}
			seedUpload(t, pool, "up-4", "room-a", "u-bob")
			seedUpload(t, pool, "up-5", "room-b", "u-alice")
			seedUpload(t, pool, "up-6", "room-a", "u-alice")
			if _, err := pool.Exec(ctx, `UPDATE attachments SET deleted_at = now() WHERE id = 'up-6'`); err != nil {
				t.Fatal(err)
			}
			sent := runSteps(t, st, pool, tc.steps(t))
			rows, err := pool.Query(ctx, `
				SELECT id || ' ' || coalesce(room_id || '/' || message_seq, '-') || CASE WHEN deleted_at IS NOT NULL AND id <> 'up-6' THEN ' deleted' ELSE '' END
				FROM attachments ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("attachments:\n got %q\nwant %q", got, tc.want)
			}
			checkOutbox(t, pool, sent)
			checkStoredAttachments(t, pool)
		})
	}
}

// checkStoredAttachments wants every stored message's outbox event to carry exactly
// the metadata of the uploads linked to it, in the order the message named them.
func checkStoredAttachments(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		e, err := event.Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		p, err := event.DecodePayload(e)
		if err != nil {
			t.Fatal(err)
		}
		m := p.(event.MessageStored)
		var linked []string
		err = pool.QueryRow(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM attachments WHERE room_id = $1 AND message_seq = $2`,
			m.RoomID, m.Seq).Scan(&linked)
		if err != nil {
			t.Fatal(err)
		}
		var carried []string
		for _, a := range m.Attachments {
			if a.Filename != a.ID+".png" || a.ContentType != "image/png" || a.Size != 100 || a.Width != 64 || a.Height != 32 || !a.Thumbnail {
				t.Errorf("seq %d: attachment metadata %+v", m.Seq, a)
			}
			carried = append(carried, a.ID)
		}
		slices.Sort(carried)
		if !slices.Equal(carried, linked) && !(len(carried) == 0 && len(linked) == 0) {
			t.Errorf("%s/%d carries %q, linked %q", m.RoomID, m.Seq, carried, linked)
		}
	}
}
