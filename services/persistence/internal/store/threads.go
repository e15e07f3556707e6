// Threads, kept as replies are stored. A reply is a message naming its thread's root (a
// message of the same room that is not itself a reply); it gets its own seq like any
// message, and its transaction keeps the root's summary in threads (reply count, last
// reply, participants). The gateway checked the root when it accepted the reply; it is
// checked again here because an event in chat.submitted is only as trustworthy as
// whoever wrote it: an unknown root, a root that is not a message or is itself a reply is
// a permanent error (dead-lettered alone). A root deleted since the gateway's check keeps
// its replies: the reply is stored (it was accepted; the root keeps its place as a
// deleted message), as Slack and Matrix do with a deleted thread root.

package store

import (
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
)

// ErrRootIsReply refuses a reply to a reply: threads are one level deep.
var ErrRootIsReply = errors.New("store: thread root is itself a reply")

// thread is a thread's state as the batch starts, updated by the batch's replies.
type thread struct {
	participants []string // the root's author, then repliers, first first
	replied      bool     // a reply of this batch changed it: its row is upserted
	deletes      bool     // a delete of this batch removed one of its replies
}

// queueThreadReads reads the threads the batch's replies go to (their participants).
// Roots themselves are read with the other targets (queueReads).
func queueThreadReads(b *pgx.Batch, items []item, st *dbState) {
	var rooms []string
	var seqs []int64
	for _, it := range items {
		if it.sub != nil && it.sub.ThreadRoot > 0 {
			rooms, seqs = append(rooms, it.room), append(seqs, it.sub.ThreadRoot)
		}
	}
	if len(rooms) == 0 {
		return
	}
	b.Queue(`
		SELECT t.room_id, t.root_seq, t.participants
		FROM threads t
		JOIN unnest($1::text[], $2::bigint[]) AS k(room_id, root_seq)
		  ON t.room_id = k.room_id AND t.root_seq = k.root_seq`, rooms, seqs).
		Query(func(rows pgx.Rows) error {
			var k seqKey
			var ps []string
			_, err := pgx.ForEachRow(rows, []any{&k.room, &k.seq, &ps}, func() error {
				st.threads[k] = &thread{participants: slices.Clone(ps)}
				return nil
			})
			return err
		})
}

// planReply checks a reply's root and returns the participants before it, recording the
// reply's sender as one for the rest of the batch.
func planReply(it item, st *dbState) ([]string, error) {
	sub := it.sub
	k := seqKey{it.room, sub.ThreadRoot}
	t := st.targets[k]
	var err error
	switch {
	case t == nil:
		err = ErrTargetNotFound
	case t.kind != event.KindMessage:
		err = ErrTargetNotMessage
	case t.threadRoot != 0:
		err = ErrRootIsReply
	}
	if err != nil {
		return nil, consumer.Permanent(fmt.Errorf("event %s: reply in thread %s/%d: %w", it.env.ID, it.room, sub.ThreadRoot, err))
	}
	th := st.threads[k]
	if th == nil {
		th = &thread{participants: []string{t.sender}}
		st.threads[k] = th
	}
	before := slices.Clone(th.participants)
	if !slices.Contains(th.participants, sub.Sender) {
		th.participants = append(th.participants, sub.Sender)
	}
	th.replied = true
	return before, nil
}

// noteReplyDeleted marks the thread of a deleted reply for a recount.
func noteReplyDeleted(room string, t *target, st *dbState) {
	if t == nil || t.threadRoot == 0 {
		return
	}
	k := seqKey{room, t.threadRoot}
	th := st.threads[k]
	if th == nil {
		th = &thread{}
		st.threads[k] = th
	}
	th.deletes = true
}

// queueThreadWrites brings the summaries of the threads the batch touched up to date.
// They are counted from the timeline after the batch's rows and deletes were written
// (this runs after both), not incremented: one statement per thread whatever mix of
// replies and deletes of replies the batch held. A delete of a reply lowers the count;
// its author stays a participant.
func queueThreadWrites(b *pgx.Batch, threads map[seqKey]*thread) {
	const summary = `SELECT count(*) FILTER (WHERE deleted_at IS NULL), max(sent_at) FILTER (WHERE deleted_at IS NULL), coalesce(max(seq), 0)
		FROM messages WHERE room_id = $1 AND thread_root = $2 AND kind = 'message'`
	for k, th := range threads {
		switch {
		case th.replied:
			b.Queue(`
				INSERT INTO threads (room_id, root_seq, reply_count, last_reply_at, last_seq, participants)
				SELECT $1, $2, s.* , $3::text[] FROM (`+summary+`) s
				ON CONFLICT (room_id, root_seq) DO UPDATE SET reply_count = EXCLUDED.reply_count,
				    last_reply_at = EXCLUDED.last_reply_at, last_seq = EXCLUDED.last_seq, participants = EXCLUDED.participants`,
				k.room, k.seq, th.participants)
		case th.deletes:
			b.Queue(`UPDATE threads SET (reply_count, last_reply_at, last_seq) = (`+summary+`)
				WHERE room_id = $1 AND root_seq = $2`, k.room, k.seq)
		}
	}
}
