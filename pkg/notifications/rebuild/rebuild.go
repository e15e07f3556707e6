// Package rebuild recomputes the notifications read model from the log and compares it
// with the live table: `chatctl rebuild notifications` reads chat.stored from the
// beginning, hands the message.stored events to Run, and prints the differences.
//
// The live service decides with three inputs the log does not hold, so Run takes each
// from where it is kept:
//
//   - Presence: the live service records every recipient it skipped because they were
//     online (notification_skips, in the same transaction as the notifications). Run
//     applies those decisions; it cannot know who was online back then.
//   - Membership of a room at the time of a message: the live service reads the members
//     when it handles the event, i.e. just after the message. Run starts from today's
//     members and walks the room's timeline backwards, undoing each later join and leave
//     entry, which gives the members as of each message without needing the log to reach
//     back to the room's creation (DMs carry their members in the event).
//   - Which events were handled at all: the live consumer starts at the end of the topic
//     on a fresh deployment and may lag. Only events in its inbox (processed_events) are
//     compared; the others are counted as unhandled.
//
// notify_all, usernames and notification preferences are read as they are now (none has
// a history); preferences are applied by prefs.Recipients, the live service's function,
// at each message's stored time, so a mute or do-not-disturb window is judged as it was
// then, and only a preference changed since shows up as a difference.
package rebuild

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/notifications/rules"
)

// DefaultConsumer is the live service's inbox name.
const DefaultConsumer = "notification"

// lockKey serialises rebuilds (they share notifications_rebuild): "kcrbld".
const lockKey int64 = 0x6b6372626c64

// Entry is one message.stored event read from the log.
type Entry struct {
	EventID string
	Msg     event.MessageStored
}

// Row is one notification, rebuilt or live, as compared: ids and times are minted at
// creation and do not take part.
type Row struct {
	User, Room string
	Seq        int64
	Reason     string
	Sender     string
	Preview    string
	Quiet      bool // created during do-not-disturb hours: in the app only
}

func (r Row) key() string { return fmt.Sprintf("%s|%s|%d|%s", r.User, r.Room, r.Seq, r.Reason) }

// Result is what a rebuild found.
type Result struct {
	Entries      int // message.stored events given
	Duplicates   int // the same (room, seq) again (the relay republishes after a crash)
	Messages     int // entries of kind message, the only kind that notifies
	Unhandled    int // message entries the live service has not handled (left out)
	UnknownRooms int // entries of rooms that no longer exist
	Rebuilt      int // rows written to notifications_rebuild
	Live         int // live rows of the handled entries
	// Missing are rebuilt rows absent from the live table; Extra live rows the rebuild did
	// not produce; Changed live rows whose sender or preview differ (rebuilt values).
	Missing, Extra, Changed []Row
}

// Equal reports whether the rebuild agrees with the live table.
func (r Result) Equal() bool { return len(r.Missing)+len(r.Extra)+len(r.Changed) == 0 }

// DB is what Run needs from PostgreSQL; *pgxpool.Pool satisfies it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Config configures Run.
type Config struct {
	Consumer string // the live service's inbox name (default DefaultConsumer)
}

// Run rebuilds the rows of entries into notifications_rebuild (emptied first) and compares
// them with notifications, in one transaction holding a lock that keeps two rebuilds from
// mixing their rows.
func Run(ctx context.Context, db DB, entries []Entry, cfg Config) (Result, error) {
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	var res Result
	res.Entries = len(entries)
	byRoom, dups := group(entries)
	res.Duplicates = dups

	tx, err := db.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("cannot begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
		return res, fmt.Errorf("cannot lock the rebuild table: %w", err)
	}
	in, err := load(ctx, tx, byRoom, cfg.Consumer)
	if err != nil {
		return res, err
	}

	var rows []Row
	var handledRooms []string
	var handledSeqs []int64
	for _, room := range slices.Sorted(maps.Keys(byRoom)) {
		es := byRoom[room]
		info, ok := in.rooms[room]
		if !ok {
			res.UnknownRooms += len(es)
			continue
		}
		members := in.members[room] // user id -> username, today
		if members == nil {
			members = map[string]string{}
		}
		// Newest first: undo every membership change after a message before judging it.
		for i := len(es) - 1; i >= 0; i-- {
			m := es[i].Msg
			switch m.Kind {
			case event.KindJoin:
				delete(members, m.Sender)
				continue
			case event.KindLeave:
				members[m.Sender] = m.SenderName
				continue
			case event.KindMessage:
			default:
				continue
			}
			res.Messages++
			if !in.handled[es[i].EventID] {
				res.Unhandled++
				continue
			}
			handledRooms, handledSeqs = append(handledRooms, room), append(handledSeqs, m.Seq)
			r := rules.Room{Kind: info.kind, NotifyAll: info.notifyAll, Members: make([]rules.Member, 0, len(members))}
			for id, name := range members {
				r.Members = append(r.Members, rules.Member{ID: id, Username: name})
			}
			for _, rc := range prefs.Recipients(m, r, in.prefs, m.StoredAt) {
				if in.skipped[skipKey{room, m.Seq, rc.User}] {
					continue
				}
				rows = append(rows, Row{User: rc.User, Room: room, Seq: m.Seq, Reason: rc.Reason, Sender: m.Sender,
					Preview: rules.Preview(m.Text), Quiet: rc.Quiet})
			}
		}
	}
	res.Rebuilt = len(rows)

	if _, err := tx.Exec(ctx, `TRUNCATE notifications_rebuild`); err != nil {
		return res, fmt.Errorf("cannot empty notifications_rebuild: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"notifications_rebuild"}, []string{"user_id", "room_id", "seq", "reason", "sender", "preview", "quiet"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.User, r.Room, r.Seq, r.Reason, r.Sender, r.Preview, r.Quiet}, nil
		})); err != nil {
		return res, fmt.Errorf("cannot write notifications_rebuild: %w", err)
	}
	if err := compare(ctx, tx, handledRooms, handledSeqs, &res); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("cannot commit: %w", err)
	}
	return res, nil
}

// group sorts entries by room and seq, keeping the first copy of each (room, seq).
func group(entries []Entry) (map[string][]Entry, int) {
	byRoom := map[string][]Entry{}
	for _, e := range entries {
		byRoom[e.Msg.RoomID] = append(byRoom[e.Msg.RoomID], e)
	}
	dups := 0
	for room, es := range byRoom {
		slices.SortStableFunc(es, func(a, b Entry) int { return cmp.Compare(a.Msg.Seq, b.Msg.Seq) })
		n := len(es)
		es = slices.CompactFunc(es, func(a, b Entry) bool { return a.Msg.Seq == b.Msg.Seq })
		dups += n - len(es)
		byRoom[room] = es
	}
	return byRoom, dups
}

type roomInfo struct {
	kind      string
	notifyAll bool
}

type skipKey struct {
	room string
	seq  int64
	user string
}

// inputs is what Run reads from PostgreSQL.
type inputs struct {
	rooms   map[string]roomInfo
	members map[string]map[string]string
	skipped map[skipKey]bool
	handled map[string]bool
	prefs   prefs.Set
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func load(ctx context.Context, q querier, byRoom map[string][]Entry, consumer string) (inputs, error) {
	in := inputs{rooms: map[string]roomInfo{}, members: map[string]map[string]string{}, skipped: map[skipKey]bool{}, handled: map[string]bool{}}
	rooms := slices.Sorted(maps.Keys(byRoom))
	var ids []string
	for _, es := range byRoom {
		for _, e := range es {
			if e.Msg.Kind == event.KindMessage {
				ids = append(ids, e.EventID)
			}
		}
	}
	rows, err := q.Query(ctx, `SELECT id, kind, notify_all FROM rooms WHERE id = ANY($1::text[])`, rooms)
	if err != nil {
		return in, fmt.Errorf("cannot read rooms: %w", err)
	}
	var id, kind string
	var all bool
	if _, err := pgx.ForEachRow(rows, []any{&id, &kind, &all}, func() error {
		in.rooms[id] = roomInfo{kind: kind, notifyAll: all}
		return nil
	}); err != nil {
		return in, fmt.Errorf("cannot read rooms: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT m.room_id, m.user_id, u.username FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = ANY($1::text[])`, rooms)
	if err != nil {
		return in, fmt.Errorf("cannot read members: %w", err)
	}
	var room, user, name string
	if _, err := pgx.ForEachRow(rows, []any{&room, &user, &name}, func() error {
		if in.members[room] == nil {
			in.members[room] = map[string]string{}
		}
		in.members[room][user] = name
		return nil
	}); err != nil {
		return in, fmt.Errorf("cannot read members: %w", err)
	}
	rows, err = q.Query(ctx, `SELECT room_id, seq, user_id FROM notification_skips WHERE room_id = ANY($1::text[])`, rooms)
	if err != nil {
		return in, fmt.Errorf("cannot read skip decisions: %w", err)
	}
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&room, &seq, &user}, func() error {
		in.skipped[skipKey{room, seq, user}] = true
		return nil
	}); err != nil {
		return in, fmt.Errorf("cannot read skip decisions: %w", err)
	}
	// Everyone who could be a recipient: today's members, the members of the past found
	// by undoing joins and leaves (their senders), and the DMs' members.
	users := map[string]bool{}
	for _, ms := range in.members {
		for u := range ms {
			users[u] = true
		}
	}
	for _, es := range byRoom {
		for _, e := range es {
			users[e.Msg.Sender] = true
			for _, u := range e.Msg.Members {
				users[u] = true
			}
		}
	}
	if in.prefs, err = prefs.Load(ctx, q, slices.Sorted(maps.Keys(users)), rooms); err != nil {
		return in, err
	}
	rows, err = q.Query(ctx, `SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id = ANY($2::text[])`, consumer, ids)
	if err != nil {
		return in, fmt.Errorf("cannot read the live service's inbox: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		in.handled[id] = true
		return nil
	}); err != nil {
		return in, fmt.Errorf("cannot read the live service's inbox: %w", err)
	}
	return in, nil
}

// compare fills res.Live, Missing, Extra and Changed. Live rows count only for the
// handled entries: rows of entries no longer in the log (retention) are not judged.
func compare(ctx context.Context, q querier, rooms []string, seqs []int64, res *Result) error {
	scan := func(sql string, args ...any) ([]Row, error) {
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
			var x Row
			err := r.Scan(&x.User, &x.Room, &x.Seq, &x.Reason, &x.Sender, &x.Preview, &x.Quiet)
			return x, err
		})
	}
	live, err := scan(`
		SELECT n.user_id, n.room_id, n.seq, n.reason, n.sender, n.preview, n.quiet
		FROM notifications n JOIN unnest($1::text[], $2::bigint[]) AS h(room_id, seq) USING (room_id, seq)
		ORDER BY 1, 2, 3, 4`, rooms, seqs)
	if err != nil {
		return fmt.Errorf("cannot read live notifications: %w", err)
	}
	rebuilt, err := scan(`SELECT user_id, room_id, seq, reason, sender, preview, quiet FROM notifications_rebuild ORDER BY 1, 2, 3, 4`)
	if err != nil {
		return fmt.Errorf("cannot read notifications_rebuild: %w", err)
	}
	res.Live = len(live)
	byKey := make(map[string]Row, len(live))
	for _, r := range live {
		byKey[r.key()] = r
	}
	for _, r := range rebuilt {
		l, ok := byKey[r.key()]
		switch {
		case !ok:
			res.Missing = append(res.Missing, r)
		case l != r:
			res.Changed = append(res.Changed, r)
		}
		delete(byKey, r.key())
	}
	for _, r := range live {
		if _, left := byKey[r.key()]; left {
			res.Extra = append(res.Extra, r)
		}
	}
	return nil
}
