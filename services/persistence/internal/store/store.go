// Package store turns submitted chat events into the rooms' timelines. One PostgreSQL
// transaction per Kafka batch records each event in the inbox (processed_events), drops
// client retries, hands out the room's next sequence number, writes the messages row and
// writes the message.stored event into the outbox. Nothing is visible until the whole
// batch commits, and the consumer commits its offsets only after that.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
)

const (
	// DefaultConsumer is the inbox name under which processed event ids are recorded.
	DefaultConsumer = "persistence"
	// DefaultSource is the CloudEvents source of the message.stored events.
	DefaultSource = "kchat/persistence"

	// roomLockNamespace is the first key of the two-key advisory locks taken per room
	// ("kcht"). The outbox relay's lock uses the one-key bigint form, which PostgreSQL
	// keeps in a separate key space, so the two can never collide.
	roomLockNamespace int32 = 0x6b636874
)

// Errors that make an event permanently unstorable; the handler wraps them with
// consumer.Permanent so that the runner dead-letters the event instead of retrying.
var (
	ErrUnknownRoom      = errors.New("store: unknown room")
	ErrUnsupportedEvent = errors.New("store: event type is not stored")
	ErrTargetNotFound   = errors.New("store: target message not found")
	ErrTargetNotMessage = errors.New("store: target is not a message")
	ErrTargetDeleted    = errors.New("store: target message is deleted")
	ErrNotAuthor        = errors.New("store: only the original sender or a room admin may edit or delete a message")
	ErrNoMembers        = errors.New("store: dm room has no members")
)

// Beginner starts transactions; *pgxpool.Pool and *pgx.Conn satisfy it.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Config configures a Store. Zero values mean the defaults given on each field.
type Config struct {
	// Topic is the real (possibly prefixed) name of chat.stored, recorded in each outbox
	// row for the relay. Required.
	Topic string
	// Consumer is the inbox name (default DefaultConsumer).
	Consumer string
	// Source is the source of the message.stored events (default DefaultSource).
	Source  string
	Logger  *slog.Logger
	Metrics *Metrics // optional
	// Direct, if set, publishes each committed batch's stored events right away (see
	// outbox.Direct); the outbox rows are then written with relay_after = now +
	// RelayGrace so that the relay stays off them unless Direct fails or dies. Without
	// it the relay publishes everything.
	Direct     DirectPublisher
	RelayGrace time.Duration // default 5s
	// BeforeCommit, if set, runs inside every batch transaction after all of its rows
	// were written and before COMMIT, with the 1-based number of the batch. Fault
	// injection uses it to crash in the middle of a transaction.
	BeforeCommit func(batch int64)
}

// DirectPublisher publishes a committed transaction's outbox rows without waiting
// (*outbox.Direct). Publish is called in commit order.
type DirectPublisher interface {
	Publish(ctx context.Context, txid string, msgs []kafka.Message)
}

// Store is the persistence batch handler. It is safe for concurrent use: concurrent
// batches touching the same room serialise on a per-room lock.
type Store struct {
	db      Beginner
	cfg     Config
	batches atomic.Int64
}

// New returns a Store writing through db.
func New(db Beginner, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("store: nil database")
	}
	if cfg.Topic == "" {
		return nil, errors.New("store: Config.Topic is required")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	if cfg.Source == "" {
		cfg.Source = DefaultSource
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RelayGrace <= 0 {
		cfg.RelayGrace = 5 * time.Second
	}
	return &Store{db: db, cfg: cfg}, nil
}

var _ consumer.BatchHandler = (*Store)(nil).HandleBatch

// item is one event of a batch with its payload decoded.
type item struct {
	env  event.Envelope
	sub  *event.MessageSubmitted  // set for message.submitted
	mem  *event.MembershipChanged // set for membership.changed
	room string
	// trace is the event's consumer span; traceParent, set when tracing is on, names
	// the span of its transaction, which the stored event continues (see tracing.go).
	trace       trace.SpanContext
	traceParent string
}

type room struct {
	id      string
	readSeq int64 // last_seq as read; rooms whose lastSeq moved past it are updated
	lastSeq int64
	kind    string
	private bool     // entered by invitation only (private.go)
	members []string // user ids, for DMs and private rooms
}

type msgKey struct{ room, sender, clientMsgID string }

// memberKey names a member of a room.
type memberKey struct{ room, user string }

// memberKeys collects distinct (room, user) pairs as the two arrays a query unnests.
type memberKeys struct {
	seen         map[memberKey]bool
	rooms, users []string
}

func (m *memberKeys) add(k memberKey) {
	if m.seen == nil {
		m.seen = map[memberKey]bool{}
	}
	if !m.seen[k] {
		m.seen[k] = true
		m.rooms, m.users = append(m.rooms, k.room), append(m.users, k.user)
	}
}

type seqKey struct {
	room string
	seq  int64
}

// reactionKey names one user's reaction with one emoji on one message.
type reactionKey struct {
	room      string
	targetSeq int64
	user      string
	emoji     string
}

// target is what an edit, delete or reaction needs to know about the entry it applies to.
type target struct {
	kind       string
	sender     string
	deleted    bool
	threadRoot int64 // the entry is a reply in this root's thread (threads.go)
}

// HandleBatch stores a batch of decoded events (Message.Event set) in one transaction,
// in batch order. A redelivered event id or a repeated (room, sender, client_msg_id)
// stores nothing. An event that can never be stored (unknown room, edit by someone
// other than the author...) fails the whole batch with an error wrapping
// consumer.ErrPermanent and leaves nothing behind; the runner then retries the events
// one by one and dead-letters only the culprit. Other errors are transient.
func (s *Store) HandleBatch(ctx context.Context, ms []*consumer.Message) error {
	batchNo := s.batches.Add(1)
	start := time.Now()
	items, err := decode(ms)
	if err != nil {
		return err
	}
	res, err := s.store(ctx, batchNo, items)
	if err != nil {
		return err
	}
	s.cfg.Metrics.observe(len(ms), res, time.Since(start))
	if s.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
		for _, e := range res.stored {
			s.cfg.Logger.Debug("stored", "event_id", e.eventID, "room_id", e.room, "seq", e.seq, "kind", e.kind)
		}
	}
	return nil
}

func decode(ms []*consumer.Message) ([]item, error) {
	items := make([]item, 0, len(ms))
	for _, m := range ms {
		p := m.Payload
		if p == nil {
			var err error
			if p, err = event.DecodePayload(m.Event); err != nil {
				return nil, consumer.Permanent(fmt.Errorf("event %s: %w", m.Event.ID, err))
			}
		}
		it := item{env: m.Event, trace: m.Trace}
		switch p := p.(type) {
		case event.MessageSubmitted:
			it.sub, it.room = &p, p.RoomID
		case event.MembershipChanged:
			it.mem, it.room = &p, p.RoomID
		default:
			return nil, consumer.Permanent(fmt.Errorf("event %s of type %s: %w", m.Event.ID, m.Event.Type, ErrUnsupportedEvent))
		}
		items = append(items, it)
	}
	return items, nil
}

// result says what a batch did, for metrics and logs.
type result struct {
	stored         []storedEntry
	redelivered    int
	retried        int
	alreadyDeleted int
	unchanged      int // reaction toggles that changed nothing
}

type storedEntry struct {
	eventID, room, kind string
	seq                 int64
}

func (s *Store) store(ctx context.Context, batchNo int64, items []item) (res result, err error) {
	spans := startTxSpans(ctx, items)
	defer func() { spans.end(res, err) }()
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return res, fmt.Errorf("cannot begin: %w", err)
	}
	// A no-op once committed; on any error it discards everything the batch wrote.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// The room locks, the inbox insert and every read the batch depends on go out in one
	// pipelined round trip; PostgreSQL runs them in order. The room locks come first,
	// before any write gives the transaction its xid: a transaction that waits for a room
	// therefore gets an xid larger than the one it waited for. The relay publishes in xid
	// order, so each room's events reach Kafka in seq order even when two instances
	// briefly handle the same room (a rebalance). The reads follow the locks, so they see
	// what the previous holder of each room committed.
	b := &pgx.Batch{}
	queueLocks(b, items)
	inserted := s.queueInbox(b, items)
	st := queueReads(b, items)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return res, fmt.Errorf("cannot lock rooms, record processed events and read rooms and messages: %w", err)
	}
	fresh := freshItems(items, *inserted)
	res.redelivered = len(items) - len(fresh)
	if err := readTimelineMembers(ctx, tx, fresh, st); err != nil {
		return res, err
	}
	var w *writes
	if len(fresh) > 0 {
		if w, err = s.plan(st, fresh); err != nil {
			return res, err
		}
		if err := w.write(ctx, tx); err != nil {
			return res, err
		}
		res.stored, res.retried, res.alreadyDeleted, res.unchanged = w.stored, w.retried, w.alreadyDeleted, w.unchanged
	}
	if s.cfg.BeforeCommit != nil {
		s.cfg.BeforeCommit(batchNo)
	}
	if err := tx.Commit(ctx); err != nil {
		return result{}, fmt.Errorf("cannot commit: %w", err)
	}
	if w != nil && s.cfg.Direct != nil && len(w.outbox) > 0 {
		s.cfg.Direct.Publish(ctx, w.txid, w.msgs)
	}
	return res, nil
}

// queueLocks takes a transaction-scoped advisory lock per room of the batch, in key order
// so that concurrent batches cannot deadlock. Advisory locks do not assign an xid.
func queueLocks(b *pgx.Batch, items []item) {
	keys := make([]int32, 0, len(items))
	for _, it := range items {
		keys = append(keys, roomLockKey(it.room))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		b.Queue("SELECT pg_advisory_xact_lock($1, $2)", roomLockNamespace, k)
	}
}

// roomLockKey maps a room id to its advisory lock key. Two rooms sharing a key merely
// serialise with each other.
func roomLockKey(roomID string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(roomID))
	return int32(h.Sum32())
}

// queueInbox records the batch's event ids; the returned slice holds the ids inserted
// (seen for the first time) once the batch ran.
func (s *Store) queueInbox(b *pgx.Batch, items []item) *[]string {
	ids := make([]string, 0, len(items))
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if !seen[it.env.ID] {
			seen[it.env.ID] = true
			ids = append(ids, it.env.ID)
		}
	}
	inserted := new([]string)
	b.Queue(`
		INSERT INTO processed_events (consumer, event_id)
		SELECT $1, id FROM unnest($2::text[]) AS t(id)
		ON CONFLICT DO NOTHING
		RETURNING event_id`, s.cfg.Consumer, ids).
		Query(func(rows pgx.Rows) error {
			var err error
			if *inserted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return fmt.Errorf("cannot record processed events: %w", err)
			}
			return nil
		})
	return inserted
}

// freshItems returns the items whose event id the inbox insert recorded, in batch order.
// Kafka may hold the same event twice (a producer retry), possibly within one batch, so
// only the first occurrence of an id counts.
func freshItems(items []item, inserted []string) []item {
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	fresh := make([]item, 0, len(inserted))
	for _, it := range items {
		if isNew[it.env.ID] {
			fresh = append(fresh, it)
			delete(isNew, it.env.ID) // a second copy in the same batch is a redelivery
		}
	}
	return fresh
}

// dbState is what a batch's events depend on, as the database held it once the batch's
// room locks were taken.
type dbState struct {
	rooms     map[string]*room
	existing  map[msgKey]bool
	targets   map[seqKey]*target
	admins    map[memberKey]bool
	reactions map[reactionKey]bool // the batch's reactions that are on
	access    map[memberKey]access // private rooms' rules, bans and admins (private.go, moderation.go)
	// attachments are the uploads the batch's messages name, by id (attachments.go).
	attachments map[string]*attachmentRow
	// threads are the threads the batch's replies and deletes of replies touch (threads.go).
	threads map[seqKey]*thread
	// muted are the batch's senders muted in their rooms (moderation.go).
	muted map[memberKey]bool
	// roles are the roles of room changes' authors and targets (roomchange.go).
	roles map[memberKey]string
	// timeline are the batch's authors, targets and senders as the stored timeline has
	// them (those it has a row for); it follows the batch's own entries (timelinemembers.go).
	timeline map[memberKey]timelineMember
}

// queueReads reads what the batch's events depend on (rooms, earlier client_msg_ids,
// edit targets, admins). It reads for every event, redelivered ones included: which are
// redelivered is known only once the inbox insert queued before it ran.
func queueReads(b *pgx.Batch, items []item) *dbState {
	var roomIDs []string
	var keyRooms, keySenders, keyIDs []string
	var tgtRooms, tgtSenders []string
	var tgtSeqs []int64
	// Entries read as targets: those of edits, deletes and reactions, and replies' roots.
	var readRooms []string
	var readSeqs []int64
	var rk []reactionKey
	seenRoom := map[string]bool{}
	for _, it := range items {
		if !seenRoom[it.room] {
			seenRoom[it.room] = true
			roomIDs = append(roomIDs, it.room)
		}
		if it.sub != nil {
			keyRooms = append(keyRooms, it.room)
			keySenders = append(keySenders, it.sub.Sender)
			keyIDs = append(keyIDs, it.sub.ClientMsgID)
			if it.sub.TargetSeq > 0 {
				tgtRooms = append(tgtRooms, it.room)
				tgtSeqs = append(tgtSeqs, it.sub.TargetSeq)
				tgtSenders = append(tgtSenders, it.sub.Sender)
				readRooms, readSeqs = append(readRooms, it.room), append(readSeqs, it.sub.TargetSeq)
			}
			if it.sub.ThreadRoot > 0 {
				readRooms, readSeqs = append(readRooms, it.room), append(readSeqs, it.sub.ThreadRoot)
			}
			if it.sub.Kind == event.KindReaction {
				rk = append(rk, reactionKey{it.room, it.sub.TargetSeq, it.sub.Sender, it.sub.Emoji})
			}
		}
	}

	st := &dbState{rooms: map[string]*room{}, existing: map[msgKey]bool{}, targets: map[seqKey]*target{}, admins: map[memberKey]bool{},
		reactions: map[reactionKey]bool{}, access: map[memberKey]access{}, attachments: map[string]*attachmentRow{},
		threads: map[seqKey]*thread{}, muted: map[memberKey]bool{}, roles: map[memberKey]string{}, timeline: map[memberKey]timelineMember{}}
	rooms, existing, targets, admins := st.rooms, st.existing, st.targets, st.admins
	// FOR NO KEY UPDATE is the lock the final UPDATE takes anyway; it makes last_seq
	// read here the value that UPDATE will overwrite.
	b.Queue(`
		SELECT r.id, r.last_seq, r.kind, r.private,
		       CASE WHEN r.kind = 'dm' OR r.private THEN
		           ARRAY(SELECT m.user_id FROM room_members m WHERE m.room_id = r.id ORDER BY m.user_id)
		       END
		FROM rooms r WHERE r.id = ANY($1::text[])
		FOR NO KEY UPDATE OF r`, roomIDs).
		Query(func(rows pgx.Rows) error {
			var r room
			_, err := pgx.ForEachRow(rows, []any{&r.id, &r.readSeq, &r.kind, &r.private, &r.members}, func() error {
				rr := r
				rr.lastSeq = rr.readSeq
				rr.members = slices.Clone(r.members) // the scan may reuse the slice
				rooms[rr.id] = &rr
				return nil
			})
			return err
		})
	if len(keyRooms) > 0 {
		b.Queue(`
			SELECT m.room_id, m.sender, m.client_msg_id
			FROM messages m
			JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(room_id, sender, client_msg_id)
			  ON m.room_id = k.room_id AND m.sender = k.sender AND m.client_msg_id = k.client_msg_id
			WHERE m.client_msg_id IS NOT NULL`, keyRooms, keySenders, keyIDs).
			Query(func(rows pgx.Rows) error {
				var k msgKey
				_, err := pgx.ForEachRow(rows, []any{&k.room, &k.sender, &k.clientMsgID}, func() error {
					existing[k] = true
					return nil
				})
				return err
			})
	}
	if len(readRooms) > 0 {
		b.Queue(`
			SELECT m.room_id, m.seq, m.kind, m.sender, m.deleted_at IS NOT NULL, coalesce(m.thread_root, 0)
			FROM messages m
			JOIN unnest($1::text[], $2::bigint[]) AS t(room_id, seq)
			  ON m.room_id = t.room_id AND m.seq = t.seq`, readRooms, readSeqs).
			Query(func(rows pgx.Rows) error {
				var k seqKey
				var tg target
				_, err := pgx.ForEachRow(rows, []any{&k.room, &k.seq, &tg.kind, &tg.sender, &tg.deleted, &tg.threadRoot}, func() error {
					t := tg
					targets[k] = &t
					return nil
				})
				return err
			})
	}
	if len(tgtRooms) > 0 {
		// Admins may edit and delete anyone's messages: admins now, or as of the edit's or
		// delete's place in the timeline (timelinemembers.go).
		b.Queue(`
			SELECT m.room_id, m.user_id
			FROM room_members m
			JOIN unnest($1::text[], $2::text[]) AS k(room_id, user_id)
			  ON m.room_id = k.room_id AND m.user_id = k.user_id
			WHERE m.role IN ('owner', 'admin')`, tgtRooms, tgtSenders).
			Query(func(rows pgx.Rows) error {
				var k memberKey
				_, err := pgx.ForEachRow(rows, []any{&k.room, &k.user}, func() error {
					admins[k] = true
					return nil
				})
				return err
			})
	}
	if len(rk) > 0 {
		// Whether each toggled reaction is on now: a toggle to the state it is in stores
		// nothing.
		rRooms, rSeqs, rUsers, rEmoji := make([]string, len(rk)), make([]int64, len(rk)), make([]string, len(rk)), make([]string, len(rk))
		for i, k := range rk {
			rRooms[i], rSeqs[i], rUsers[i], rEmoji[i] = k.room, k.targetSeq, k.user, k.emoji
		}
		reactions := st.reactions
		b.Queue(`
			SELECT r.room_id, r.target_seq, r.user_id, r.emoji
			FROM reactions r
			JOIN unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS k(room_id, target_seq, user_id, emoji)
			  ON r.room_id = k.room_id AND r.target_seq = k.target_seq AND r.user_id = k.user_id AND r.emoji = k.emoji`,
			rRooms, rSeqs, rUsers, rEmoji).
			Query(func(rows pgx.Rows) error {
				var k reactionKey
				_, err := pgx.ForEachRow(rows, []any{&k.room, &k.targetSeq, &k.user, &k.emoji}, func() error {
					reactions[k] = true
					return nil
				})
				return err
			})
	}
	queuePrivateReads(b, items, st)
	queueModerationReads(b, items, st)
	queueMuteReads(b, items, st)
	queueRoleReads(b, items, st)
	queueTimelineReads(b, items, st)
	queueAttachmentReads(b, items, st)
	queueThreadReads(b, items, st)
	return st
}

// plan works out, event by event in batch order, the rows the fresh events become.
func (s *Store) plan(st *dbState, items []item) (*writes, error) {
	w := &writes{
		topic:    s.cfg.Topic,
		direct:   s.cfg.Direct != nil,
		storedAt: time.Now().UTC().Truncate(time.Microsecond), // what timestamptz keeps
		rooms:    st.rooms,
		threads:  st.threads,
	}
	if w.direct {
		w.relayAfter = time.Now().Add(s.cfg.RelayGrace)
	}
	for _, it := range items {
		if err := s.planOne(w, it, st); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// planOne applies one fresh event to the in-memory state of the batch. existing and
// targets start as what the database held and grow with the batch's own rows, so an
// event sees every earlier event of the same batch.
func (s *Store) planOne(w *writes, it item, st *dbState) error {
	existing, targets, admins := st.existing, st.targets, st.admins
	r, ok := w.rooms[it.room]
	if !ok {
		return consumer.Permanent(fmt.Errorf("event %s: room %q: %w", it.env.ID, it.room, ErrUnknownRoom))
	}
	if err := checkPrivate(w, it, r, st); err != nil {
		return err
	}
	if err := checkModeration(it, st); err != nil {
		return err
	}
	row := messageRow{room: it.room, eventID: it.env.ID}
	switch {
	case it.sub != nil:
		sub := it.sub
		k := msgKey{it.room, sub.Sender, sub.ClientMsgID}
		if existing[k] {
			w.retried++
			return nil
		}
		if sub.Kind == event.KindReaction {
			skip, err := s.checkReaction(w, it, st)
			if err != nil || skip {
				return err
			}
		}
		if sub.Kind == event.KindEdit || sub.Kind == event.KindDelete {
			sender := memberKey{it.room, sub.Sender}
			err := checkTarget(targets[seqKey{it.room, sub.TargetSeq}], sub, admins[sender] || wasAdmin(sender, st))
			if sub.Kind == event.KindDelete && errors.Is(err, ErrTargetDeleted) {
				// Two devices (or an author and an admin) deleted the same message at
				// once: both were accepted, the first did it. The second is a no-op, not a
				// poison event: what it asked for is true.
				w.alreadyDeleted++
				s.cfg.Logger.Info("delete of a deleted message skipped", "event_id", it.env.ID, "room_id", it.room, "target_seq", sub.TargetSeq)
				return nil
			}
			if err != nil {
				return consumer.Permanent(fmt.Errorf("event %s: %s of %s/%d: %w", it.env.ID, sub.Kind, it.room, sub.TargetSeq, err))
			}
		}
		if sub.ThreadRoot > 0 {
			participants, err := planReply(it, st)
			if err != nil {
				return err
			}
			row.threadRoot, row.participants = sub.ThreadRoot, participants
		}
		atts, err := checkAttachments(it, st)
		if err != nil {
			return err
		}
		row.attachments = atts
		existing[k] = true
		row.kind, row.sender, row.senderName = sub.Kind, sub.Sender, sub.SenderName
		row.clientMsgID, row.text, row.targetSeq = &sub.ClientMsgID, sub.Text, sub.TargetSeq
		row.sentAt = sub.SubmittedAt
		if sub.Kind == event.KindDelete || sub.Kind == event.KindReaction {
			row.text = "" // a delete carries no content; a reaction's is its emoji
		}
		if sub.Kind == event.KindReaction {
			row.emoji, row.on = sub.Emoji, sub.On
			st.reactions[reactionKey{it.room, sub.TargetSeq, sub.Sender, sub.Emoji}] = sub.On
		}
	case it.mem != nil && event.IsRoomChange(it.mem.Change):
		if err := checkRoomChange(it, r, st); err != nil {
			return err
		}
		row.kind, row.change = event.KindRoomChange, roomChangeOf(it.mem)
		row.sender, row.senderName, row.sentAt = it.mem.By, it.mem.ByName, it.mem.ChangedAt
		if row.senderName == "" { // By is User: a settings change names its author as user
			row.senderName = it.mem.UserName
		}
	case it.mem != nil:
		row.kind = event.KindJoin
		if it.mem.Change != event.ChangeJoined {
			row.kind, row.text = event.KindLeave, removalText(it.mem)
		}
		row.sender, row.senderName, row.sentAt = it.mem.User, it.mem.UserName, it.mem.ChangedAt
	}

	r.lastSeq++
	row.seq = r.lastSeq
	if err := w.addOutbox(s.cfg, it.env, it.traceParent, r, row); err != nil {
		return err
	}
	w.messages = append(w.messages, row)
	if it.mem != nil && r.kind != event.RoomKindDM {
		noteTimeline(w, it, st)
	}
	switch row.kind {
	case event.KindMessage:
		targets[seqKey{row.room, row.seq}] = &target{kind: row.kind, sender: row.sender, threadRoot: row.threadRoot}
	case event.KindEdit, event.KindDelete:
		t := targets[seqKey{row.room, row.targetSeq}]
		t.deleted = t.deleted || row.kind == event.KindDelete
		if row.kind == event.KindDelete {
			noteReplyDeleted(row.room, t, st)
		}
		w.updates = append(w.updates, row)
	case event.KindReaction:
		w.updates = append(w.updates, row)
	}
	w.stored = append(w.stored, storedEntry{eventID: row.eventID, room: row.room, kind: row.kind, seq: row.seq})
	return nil
}

// checkReaction decides whether a reaction toggle is stored. Its target must be a message
// (an unknown seq or a join is a permanent error, like an edit's); a deleted target or a
// toggle to the state the reaction is already in is skipped (skip true, no entry): the
// gateway checked the target when it accepted the toggle, so these are races with a
// delete or with the user's other device, and what the toggle asked for is already true
// or moot.
func (s *Store) checkReaction(w *writes, it item, st *dbState) (skip bool, err error) {
	sub := it.sub
	t := st.targets[seqKey{it.room, sub.TargetSeq}]
	switch {
	case t == nil:
		err = ErrTargetNotFound
	case t.kind != event.KindMessage:
		err = ErrTargetNotMessage
	}
	if err != nil {
		return false, consumer.Permanent(fmt.Errorf("event %s: reaction to %s/%d: %w", it.env.ID, it.room, sub.TargetSeq, err))
	}
	if t.deleted {
		w.alreadyDeleted++
		s.cfg.Logger.Info("reaction to a deleted message skipped", "event_id", it.env.ID, "room_id", it.room, "target_seq", sub.TargetSeq)
		return true, nil
	}
	if st.reactions[reactionKey{it.room, sub.TargetSeq, sub.Sender, sub.Emoji}] == sub.On {
		w.unchanged++
		return true, nil
	}
	return false, nil
}

func checkTarget(t *target, sub *event.MessageSubmitted, admin bool) error {
	switch {
	case t == nil:
		return ErrTargetNotFound
	case t.kind != event.KindMessage:
		return ErrTargetNotMessage
	case t.sender != sub.Sender && !admin:
		return ErrNotAuthor
	case t.deleted:
		return ErrTargetDeleted
	}
	return nil
}

type messageRow struct {
	room         string
	seq          int64
	eventID      string
	kind         string
	sender       string
	senderName   string
	clientMsgID  *string
	text         string
	targetSeq    int64
	sentAt       time.Time
	emoji        string // reaction entries
	on           bool   // reaction entries
	attachments  []event.Attachment
	threadRoot   int64       // replies: their thread's root
	participants []string    // replies: the thread's participants before them
	change       *roomChange // room_change entries
}

// writes collects a batch's rows so that they go to the database together.
type writes struct {
	topic  string
	direct bool // rows are published by Direct after the commit
	// relayAfter is the outbox rows' relay_after when direct: the relay leaves them to
	// Direct until then.
	relayAfter time.Time
	txid       string // the transaction's xid8, read by write
	storedAt   time.Time
	rooms      map[string]*room
	messages   []messageRow
	updates    []messageRow // edits, deletes and reaction toggles, in batch order
	outbox     []outbox.Row
	msgs       []kafka.Message // the outbox rows' records, for Direct (when direct)
	stored     []storedEntry
	retried    int
	// alreadyDeleted counts deletes of (and reactions to) messages deleted before (no
	// entry stored).
	alreadyDeleted int
	unchanged      int // reaction toggles to the state the reaction was in (no entry)
	// joined are the private rooms' joins stored, whose accepted invitations the batch
	// deletes (private.go).
	joined []memberKey
	// threads are the threads whose summaries the batch brings up to date (threads.go).
	threads map[seqKey]*thread
	// timeline is what the batch's entries changed of the timeline's members
	// (timelinemembers.go).
	timeline map[memberKey]*timelineChange
}

// addOutbox writes the message.stored of row, caused by cause; traceParent, if set,
// replaces the trace position cause had (the transaction's span continues it).
func (w *writes) addOutbox(cfg Config, cause event.Envelope, traceParent string, r *room, row messageRow) error {
	p := event.MessageStored{
		RoomID:      row.room,
		Seq:         row.seq,
		Kind:        row.kind,
		MessageID:   row.eventID,
		Sender:      row.sender,
		SenderName:  row.senderName,
		Text:        row.text,
		TargetSeq:   row.targetSeq,
		Emoji:       row.emoji,
		On:          row.on,
		RoomKind:    r.kind,
		SentAt:      row.sentAt,
		StoredAt:    w.storedAt,
		Attachments: row.attachments,
		ThreadRoot:  row.threadRoot,
	}
	if row.threadRoot > 0 {
		p.ThreadParticipants = row.participants
	}
	if c := row.change; c != nil {
		p.Change, p.Target, p.TargetName, p.Role, p.Settings = c.Change, c.Target, c.TargetName, c.Role, c.Settings
	}
	if row.clientMsgID != nil {
		p.ClientMsgID = *row.clientMsgID
	}
	if r.kind == event.RoomKindDM {
		if len(r.members) == 0 {
			return consumer.Permanent(fmt.Errorf("event %s: room %q: %w", row.eventID, r.id, ErrNoMembers))
		}
		p.Members = r.members
	}
	var continueTrace event.Option // nil options are skipped
	if traceParent != "" {
		continueTrace = event.WithTraceParent(traceParent)
	}
	e, err := event.New(cfg.Source, p, event.WithCausation(cause), continueTrace)
	if err != nil {
		return consumer.Permanent(fmt.Errorf("event %s: cannot build %s: %w", row.eventID, event.TypeMessageStored, err))
	}
	// Gateways read chat.stored whole and skip, by key and this header, what none of
	// their connections needs without decoding it: the users whose room set this entry
	// changes (who joined or left; a DM's members, whose gateways subscribe them).
	var users []kafka.Header
	switch {
	case row.kind == event.KindJoin || row.kind == event.KindLeave:
		users = []kafka.Header{{Key: event.HeaderUsers, Value: []byte(row.sender)}}
	case r.kind == event.RoomKindDM:
		users = []kafka.Header{{Key: event.HeaderUsers, Value: []byte(strings.Join(r.members, ","))}}
	}
	o, err := outbox.NewRow(w.topic, row.room, e, users...)
	if err != nil {
		return consumer.Permanent(fmt.Errorf("event %s: %w", row.eventID, err))
	}
	if w.direct {
		o.RelayAfter = w.relayAfter
		m, err := o.Message()
		if err != nil {
			return consumer.Permanent(fmt.Errorf("event %s: %w", row.eventID, err))
		}
		w.msgs = append(w.msgs, m)
	}
	w.outbox = append(w.outbox, o)
	return nil
}

// write stores the batch's rows: timeline rows, then the outbox rows (in seq order, which
// is the order the relay publishes a transaction's rows in), both with COPY, which costs
// PostgreSQL much less per row than INSERT ... SELECT FROM unnest; then, in one pipelined
// round trip, the edits and deletes (which may refer to rows copied just before) and the
// rooms' new last_seq. Nothing conflicts: every row was checked against the database
// under the rooms' locks. COPY fires the outbox's statement trigger like INSERT does.
func (w *writes) write(ctx context.Context, tx pgx.Tx) error {
	if len(w.messages) == 0 {
		return nil
	}
	if err := w.copyRows(ctx, tx); err != nil {
		return classify(err)
	}
	b := &pgx.Batch{}
	for _, u := range w.updates {
		switch {
		case u.kind == event.KindReaction && u.on:
			b.Queue(`INSERT INTO reactions (room_id, target_seq, user_id, emoji, user_name, seq) VALUES ($1, $2, $3, $4, $5, $6)`,
				u.room, u.targetSeq, u.sender, u.emoji, u.senderName, u.seq)
		case u.kind == event.KindReaction:
			b.Queue(`DELETE FROM reactions WHERE room_id = $1 AND target_seq = $2 AND user_id = $3 AND emoji = $4`,
				u.room, u.targetSeq, u.sender, u.emoji)
		case u.kind == event.KindEdit:
			b.Queue(`UPDATE messages SET text = $3, edited_at = $4 WHERE room_id = $1 AND seq = $2`,
				u.room, u.targetSeq, u.text, u.sentAt)
		default:
			// A deleted message keeps its place in the timeline but loses its text, and so do
			// the edits that carried later versions of it. (The log keeps what it was sent;
			// retention removes it from there.)
			b.Queue(`UPDATE messages SET deleted_at = $3, text = NULL WHERE room_id = $1 AND seq = $2`,
				u.room, u.targetSeq, u.sentAt)
			b.Queue(`UPDATE messages SET text = NULL WHERE room_id = $1 AND kind = 'edit' AND target_seq = $2`,
				u.room, u.targetSeq)
			// Its reactions go with it; the reaction entries stay in the timeline.
			b.Queue(`DELETE FROM reactions WHERE room_id = $1 AND target_seq = $2`, u.room, u.targetSeq)
		}
	}
	queueInvitesUsed(b, w.joined)
	queueAttachmentWrites(b, w)
	queueThreadWrites(b, w.threads)
	queueTimelineWrites(b, w.timeline)
	var ids []string
	var last []int64
	for _, r := range sortedRooms(w.rooms) {
		if r.lastSeq != r.readSeq {
			ids = append(ids, r.id)
			last = append(last, r.lastSeq)
		}
	}
	b.Queue(`UPDATE rooms SET last_seq = u.last_seq FROM unnest($1::text[], $2::bigint[]) AS u(id, last_seq)
		WHERE rooms.id = u.id`, ids, last)
	b.Queue(`SELECT pg_current_xact_id()::text`).QueryRow(func(row pgx.Row) error { return row.Scan(&w.txid) })
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return classify(err)
	}
	return nil
}

var (
	messageColumns = []string{"room_id", "seq", "event_id", "kind", "sender", "sender_name", "client_msg_id",
		"text", "target_seq", "sent_at", "stored_at", "emoji", "reaction_on", "thread_root", "room_change"}
)

func (w *writes) copyRows(ctx context.Context, tx pgx.Tx) error {
	i := 0
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"}, messageColumns, pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(w.messages) {
			return nil, nil
		}
		m := &w.messages[i]
		i++
		var text *string
		if m.text != "" {
			text = &m.text
		}
		var targetSeq *int64
		if m.targetSeq > 0 {
			targetSeq = &m.targetSeq
		}
		var emoji *string
		var on *bool
		if m.kind == event.KindReaction {
			emoji, on = &m.emoji, &m.on
		}
		var threadRoot *int64
		if m.threadRoot > 0 {
			threadRoot = &m.threadRoot
		}
		change, err := roomChangeColumn(m.change)
		if err != nil {
			return nil, err
		}
		return []any{m.room, m.seq, m.eventID, m.kind, m.sender, m.senderName, m.clientMsgID,
			text, targetSeq, m.sentAt, w.storedAt, emoji, on, threadRoot, change}, nil
	}))
	if err != nil {
		return fmt.Errorf("cannot write messages: %w", err)
	}
	return outbox.CopyFrom(ctx, tx, w.outbox...)
}

// classify wraps a write error. A data exception (class 22: a NUL byte in a text, a value
// out of range) fails the same way on every retry; the runner isolates and dead-letters
// the event.
func classify(err error) error {
	err = fmt.Errorf("cannot write batch: %w", err)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && strings.HasPrefix(pgErr.Code, "22") {
		return consumer.Permanent(err)
	}
	return err
}

func sortedRooms(m map[string]*room) []*room {
	rs := make([]*room, 0, len(m))
	for _, r := range m {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b *room) int { return cmp.Compare(a.id, b.id) })
	return rs
}
