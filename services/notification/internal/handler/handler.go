// Package handler turns message.stored events into notifications. One PostgreSQL
// transaction per Kafka batch records each event in the inbox (processed_events), inserts
// the notifications of the recipients who are offline, and writes one notification.created
// event per new notification into the outbox, which persistence's relay publishes to
// chat.notifications. The consumer commits offsets only after the transaction commits,
// so a crash anywhere redelivers the batch and the inbox makes the redelivery a no-op.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/notifications/rules"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/tracing"
)

const (
	// DefaultConsumer is the inbox name under which processed event ids are recorded.
	DefaultConsumer = "notification"
	// DefaultSource is the CloudEvents source of the notification.created events.
	DefaultSource = "kchat/notification"
)

// Beginner starts transactions; *pgxpool.Pool satisfies it.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Presence says whether a user is connected anywhere; *presence.View satisfies it.
type Presence interface {
	Online(user string) bool
}

// Dispatcher takes committed notifications for outside channels without blocking;
// *sender.Dispatcher satisfies it.
type Dispatcher interface {
	Enqueue(n notifications.Notification) bool
}

// Config configures a Handler. Zero values mean the defaults given on each field.
type Config struct {
	// Topic is the real (possibly prefixed) name of chat.notifications, written into each
	// outbox row for the relay. Required.
	Topic    string
	Consumer string // inbox name (default DefaultConsumer)
	Source   string // default DefaultSource
	Logger   *slog.Logger
	Metrics  *Metrics   // optional
	Dispatch Dispatcher // optional: outside channels
	Now      func() time.Time
}

// Handler is the notification batch handler. It is safe for concurrent use.
type Handler struct {
	db       Beginner
	presence Presence
	cfg      Config
}

// New returns a Handler writing through db and asking presence who is online.
func New(db Beginner, presence Presence, cfg Config) (*Handler, error) {
	if db == nil || presence == nil {
		return nil, errors.New("handler: database and presence are required")
	}
	if cfg.Topic == "" {
		return nil, errors.New("handler: Config.Topic is required")
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{db: db, presence: presence, cfg: cfg}, nil
}

var _ consumer.BatchHandler = (*Handler)(nil).HandleBatch

// stored is one message.stored event of a batch.
type stored struct {
	env event.Envelope
	msg event.MessageStored
}

// HandleBatch handles decoded events (Message.Event set) in one transaction. Events other
// than message.stored of kind "message" create nothing and are not recorded in the inbox.
// An event whose payload does not decode fails the batch permanently, so that the runner
// retries the events one by one and dead-letters only that one. Other errors are
// transient. After the commit, new notifications are handed to the outside dispatcher.
func (h *Handler) HandleBatch(ctx context.Context, ms []*consumer.Message) error {
	start := time.Now()
	items, err := h.decode(ms)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	res, err := h.handle(ctx, items)
	if err != nil {
		return err
	}
	h.cfg.Metrics.observe(res, time.Since(start))
	for _, n := range res.created {
		if h.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
			h.cfg.Logger.Debug("notification created", "event_id", n.causeID, "notification_id", n.ID,
				"user", n.UserID, "room_id", n.RoomID, "seq", n.Seq, "reason", n.Reason)
		}
		if h.cfg.Dispatch != nil {
			h.cfg.Dispatch.Enqueue(n.Notification)
		}
	}
	return nil
}

func (h *Handler) decode(ms []*consumer.Message) ([]stored, error) {
	items := make([]stored, 0, len(ms))
	for _, m := range ms {
		if m.Event.Type != event.TypeMessageStored {
			continue // chat.stored carries nothing else today; later types are not ours
		}
		// The runner's Decode has decoded and validated the payload already.
		msg, ok := m.Payload.(event.MessageStored)
		if !ok {
			var err error
			if msg, err = event.As[event.MessageStored](m.Event); err != nil {
				return nil, consumer.Permanent(fmt.Errorf("event %s: %w", m.Event.ID, err))
			}
		}
		if msg.Kind != event.KindMessage {
			continue
		}
		env := m.Event
		// The notifications it causes (event.WithCausation) continue the message's trace
		// from this consumer's span rather than from persistence's (tracing on only).
		if tp := tracing.FormatTraceParent(m.Trace); tp != "" {
			env.TraceParent = tp
		}
		items = append(items, stored{env: env, msg: msg})
	}
	return items, nil
}

// created is a new notification and the id of the event that caused it.
type created struct {
	notifications.Notification
	causeID string
}

// result says what a batch did, for metrics.
type result struct {
	created          []created
	redelivered      int // events seen before
	existing         int // notifications that already existed (same user, room, seq, reason)
	suppressedOnline int // recipients not notified because they were online
}

func (h *Handler) handle(ctx context.Context, items []stored) (result, error) {
	var res result
	tx, err := h.db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return res, fmt.Errorf("cannot begin: %w", err)
	}
	// A no-op once committed; on any error it discards everything the batch wrote.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	fresh, err := h.inbox(ctx, tx, items)
	if err != nil {
		return res, err
	}
	res.redelivered = len(items) - len(fresh)
	if len(fresh) > 0 {
		rooms, err := loadRooms(ctx, tx, fresh)
		if err != nil {
			return res, err
		}
		set, err := loadPrefs(ctx, tx, fresh, rooms)
		if err != nil {
			return res, err
		}
		planned, skips, causes, err := h.plan(fresh, rooms, set, &res)
		if err != nil {
			return res, err
		}
		if err := notifications.InsertSkips(ctx, tx, skips); err != nil {
			return res, err
		}
		inserted, err := notifications.Insert(ctx, tx, planned)
		if err != nil {
			return res, err
		}
		res.existing = len(planned) - len(inserted)
		for _, n := range inserted {
			res.created = append(res.created, created{Notification: n, causeID: causes[n.ID].ID})
		}
		if err := h.writeOutbox(ctx, tx, res.created, causes); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return result{}, fmt.Errorf("cannot commit: %w", err)
	}
	return res, nil
}

// inbox records the events' ids and returns the events seen for the first time, in batch
// order. Kafka may hold the same event twice (a relay republishing after a crash), even
// within one batch, so only the first occurrence of an id counts.
func (h *Handler) inbox(ctx context.Context, tx pgx.Tx, items []stored) ([]stored, error) {
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.env.ID)
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO processed_events (consumer, event_id)
		SELECT $1, id FROM unnest($2::text[]) AS t(id)
		ON CONFLICT DO NOTHING
		RETURNING event_id`, h.cfg.Consumer, sortedSet(ids))
	if err != nil {
		return nil, fmt.Errorf("cannot record processed events: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cannot record processed events: %w", err)
	}
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	fresh := make([]stored, 0, len(inserted))
	for _, it := range items {
		if isNew[it.env.ID] {
			fresh = append(fresh, it)
			delete(isNew, it.env.ID) // a second copy in the same batch is a redelivery
		}
	}
	return fresh, nil
}

// loadRooms reads the kind and notify_all setting of the batch's rooms and those of their
// members whom one of its messages may notify. In a DM or a notify_all room that is every
// member. In any other room a member is notified only when mentioned, when taking part in
// the thread replied to, or when their own level for the room is all (prefs.Decide), so
// only those are read: reading every member of a room of a thousand for every message, and
// their preferences, found nobody to notify in nearly every batch. The rules still decide
// per message on what is read here, so a member read for another message of the batch
// changes no outcome. Usernames are read only where a mention can match them. Membership
// is read when the event is handled, not as of the message: someone who left in between
// is not notified.
func loadRooms(ctx context.Context, tx pgx.Tx, items []stored) (map[string]rules.Room, error) {
	var ids, names, participants []string
	for _, it := range items {
		ids = append(ids, it.msg.RoomID)
		names = append(names, rules.Mentions(it.msg.Text)...)
		participants = append(participants, it.msg.ThreadParticipants...)
	}
	rows, err := tx.Query(ctx, `SELECT id, kind, notify_all FROM rooms WHERE id = ANY($1::text[])`, sortedSet(ids))
	if err != nil {
		return nil, fmt.Errorf("cannot read rooms: %w", err)
	}
	rooms := map[string]rules.Room{}
	var everyone, others []string
	var id, kind string
	var notifyAll bool
	if _, err = pgx.ForEachRow(rows, []any{&id, &kind, &notifyAll}, func() error {
		rooms[id] = rules.Room{Kind: kind, NotifyAll: notifyAll}
		if kind == event.RoomKindDM || notifyAll {
			everyone = append(everyone, id)
		} else {
			others = append(others, id)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("cannot read rooms: %w", err)
	}
	if len(everyone) > 0 {
		query := `SELECT m.room_id, m.user_id, '' FROM room_members m WHERE m.room_id = ANY($1::text[]) ORDER BY 1, 2`
		if len(names) > 0 {
			query = `SELECT m.room_id, m.user_id, u.username FROM room_members m JOIN users u ON u.id = m.user_id
				WHERE m.room_id = ANY($1::text[]) ORDER BY 1, 2`
		}
		if err := addMembers(ctx, tx, rooms, query, everyone); err != nil {
			return nil, err
		}
	}
	if len(others) > 0 {
		// Three lookups by index, each as small as its answer.
		query := `
			SELECT m.room_id, m.user_id, u.username FROM users u JOIN room_members m ON m.user_id = u.id
			WHERE u.username = ANY($2::text[]) AND m.room_id = ANY($1::text[])
			UNION
			SELECT m.room_id, m.user_id, u.username FROM room_members m JOIN users u ON u.id = m.user_id
			WHERE m.user_id = ANY($3::text[]) AND m.room_id = ANY($1::text[])
			UNION
			SELECT m.room_id, m.user_id, u.username FROM room_notification_prefs p
			JOIN room_members m ON m.room_id = p.room_id AND m.user_id = p.user_id
			JOIN users u ON u.id = m.user_id
			WHERE p.room_id = ANY($1::text[]) AND p.level = 'all'
			ORDER BY 1, 2`
		if err := addMembers(ctx, tx, rooms, query, others, sortedSet(names), sortedSet(participants)); err != nil {
			return nil, err
		}
	}
	return rooms, nil
}

// addMembers appends the (room, user, username) rows of query to their rooms.
func addMembers(ctx context.Context, tx pgx.Tx, rooms map[string]rules.Room, query string, args ...any) error {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("cannot read room members: %w", err)
	}
	var room string
	var m rules.Member
	if _, err := pgx.ForEachRow(rows, []any{&room, &m.ID, &m.Username}, func() error {
		r := rooms[room]
		r.Members = append(r.Members, m)
		rooms[room] = r
		return nil
	}); err != nil {
		return fmt.Errorf("cannot read room members: %w", err)
	}
	return nil
}

func sortedSet(s []string) []string { return slices.Compact(slices.Sorted(slices.Values(s))) }

// loadPrefs reads the preferences of every member of the batch's rooms (and of the DMs'
// members named in the events) for those rooms, in the batch's transaction.
func loadPrefs(ctx context.Context, tx pgx.Tx, items []stored, rooms map[string]rules.Room) (prefs.Set, error) {
	var users, roomIDs []string
	for id, r := range rooms {
		roomIDs = append(roomIDs, id)
		for _, m := range r.Members {
			users = append(users, m.ID)
		}
	}
	for _, it := range items {
		users = append(users, it.msg.Members...)
	}
	return prefs.Load(ctx, tx, sortedSet(users), roomIDs)
}

// plan works out the notifications of the fresh events: the rules' recipients filtered
// by their preferences (prefs.Recipients, the function the rebuild calls too), minus
// those online right now, who are returned as skips. Presence is read when the event is
// handled; a consumer that lags therefore judges by who is online now, not when the
// message was sent (see README). The skips are stored because presence is not in the
// log: `chatctl rebuild notifications` replays the log through the same rules and needs
// these decisions to arrive at the same rows.
func (h *Handler) plan(items []stored, rooms map[string]rules.Room, set prefs.Set, res *result) ([]notifications.Notification, []notifications.Skip, map[string]event.Envelope, error) {
	// What timestamptz keeps, so the envelope and the row say the same time.
	now := h.cfg.Now().UTC().Truncate(time.Microsecond)
	var out []notifications.Notification
	var skips []notifications.Skip
	causes := map[string]event.Envelope{}
	for _, it := range items {
		room, ok := rooms[it.msg.RoomID]
		if !ok {
			// Persistence stores only messages of known rooms; a room deleted since has
			// nobody left to notify (and notifications must reference a room).
			h.cfg.Logger.Warn("message of an unknown room; nobody to notify", "event_id", it.env.ID, "room_id", it.msg.RoomID)
			continue
		}
		// The preferences' filter comes before presence: a recipient they exclude is
		// not notified whether online or not, so no skip is recorded for them.
		for _, r := range prefs.Recipients(it.msg, room, set, now) {
			if h.presence.Online(r.User) {
				res.suppressedOnline++
				skips = append(skips, notifications.Skip{UserID: r.User, RoomID: it.msg.RoomID, Seq: it.msg.Seq, Reason: r.Reason})
				continue
			}
			id, err := uuid.NewV7()
			if err != nil {
				return nil, nil, nil, fmt.Errorf("cannot mint notification id: %w", err)
			}
			n := notifications.Notification{ID: id.String(), UserID: r.User, RoomID: it.msg.RoomID, Seq: it.msg.Seq,
				Reason: r.Reason, Sender: it.msg.Sender, Preview: rules.Preview(it.msg.Text), CreatedAt: now, Quiet: r.Quiet}
			out = append(out, n)
			causes[n.ID] = it.env
		}
	}
	return out, skips, causes, nil
}

// writeOutbox inserts one outbox row per new notification. The events are keyed by the
// recipient's user id: one user's notifications then share a partition and arrive in the
// order they were created, and whichever gateway holds the user's connection can deliver
// them (fanout sends them to every gateway, which keeps those for its connected users).
func (h *Handler) writeOutbox(ctx context.Context, tx pgx.Tx, ns []created, causes map[string]event.Envelope) error {
	if len(ns) == 0 {
		return nil
	}
	rows := make([]outbox.Row, len(ns))
	for i, n := range ns {
		e, err := event.New(h.cfg.Source, event.NotificationCreated{
			NotificationID: n.ID, User: n.UserID, RoomID: n.RoomID, Seq: n.Seq, Reason: n.Reason,
			Sender: n.Sender, Preview: n.Preview, CreatedAt: n.CreatedAt,
		}, event.WithCausation(causes[n.ID]), event.WithTime(n.CreatedAt))
		if err != nil {
			return consumer.Permanent(fmt.Errorf("event %s: cannot build %s: %w", n.causeID, event.TypeNotificationCreated, err))
		}
		if rows[i], err = outbox.NewRow(h.cfg.Topic, n.UserID, e); err != nil {
			return consumer.Permanent(fmt.Errorf("event %s: %w", n.causeID, err))
		}
	}
	// Insert keeps the rows (and so the relay's publishing) in the order the
	// notifications were created.
	return outbox.Insert(ctx, tx, rows...)
}
