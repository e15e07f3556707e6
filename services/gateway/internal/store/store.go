// Package store is the gateway's access to PostgreSQL: accounts and sessions, rooms and
// memberships, and reads of the room timelines that persistence writes. The gateway never
// writes messages itself; it reads them for history, resume and catch-up.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
)

// Sentinel errors; callers map them to protocol codes.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrUsernameTaken = errors.New("store: username taken")
	ErrRoomExists    = errors.New("store: room exists")
	ErrNotMember     = errors.New("store: not a member")
	ErrPastEnd       = errors.New("store: seq is past the room's last seq")
)

// PastEndError is MarkRead's answer to a seq beyond the room's last_seq; it matches
// ErrPastEnd with errors.Is and says where the room ends.
type PastEndError struct{ LastSeq int64 }

func (e *PastEndError) Error() string { return fmt.Sprintf("%v (%d)", ErrPastEnd, e.LastSeq) }

// Is makes errors.Is(err, ErrPastEnd) hold.
func (e *PastEndError) Is(target error) bool { return target == ErrPastEnd }

// MaxUnread is where unread counting stops (see protocol.MaxUnread).
const MaxUnread = 999

// Store runs the gateway's queries on a pool. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	checks sendChecks
}

// New wraps a pool. The batched send checks get a small pool of their own (see
// newCheckPool), opened on first use; Close closes it.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool, checks: sendChecks{main: pool}} }

// Close closes what New opened, not the pool it was given.
func (s *Store) Close() { s.checks.close() }

// User is an account.
type User struct {
	ID           string
	Username     string
	PasswordHash string
}

// Message is one timeline row.
type Message struct {
	RoomID      string
	Seq         int64
	EventID     string
	Kind        string
	Sender      string
	SenderName  string
	ClientMsgID string
	Text        string
	TargetSeq   int64
	SentAt      time.Time
	StoredAt    time.Time
	EditedAt    *time.Time
	DeletedAt   *time.Time
	Emoji       string // reaction entries
	On          *bool  // reaction entries: added (true) or removed
	ThreadRoot  int64  // replies: their thread's root (threads.go)
	// RoomChange is what a room_change entry records (nil for other kinds).
	RoomChange *RoomChange
}

// RoomChange is the messages.room_change column persistence writes: the fields of a
// room_change entry besides its author.
type RoomChange struct {
	Change     string                    `json:"change"`
	Target     string                    `json:"target,omitempty"`
	TargetName string                    `json:"target_name,omitempty"`
	Role       string                    `json:"role,omitempty"`
	Settings   *event.RoomSettingsChange `json:"settings,omitempty"`
}

// Room is a room with the asking user's relation to it.
type Room struct {
	ID      string
	Name    string
	Kind    string
	Private bool // invisible to non-members, entered by invitation (see invites.go)
	LastSeq int64
	MinSeq  int64  // lowest stored seq; 0 when the timeline is empty
	Role    string // "" when the user is not a member
	Banned  bool   // the user is banned from the room (moderation.go)
	Members []string
	// LastReadSeq and Unread are the asking user's read marker and unread count (RoomsOf).
	LastReadSeq int64
	Unread      int64
}

// Member reports whether Role is set.
func (r Room) Member() bool { return r.Role != "" }

// SendCheck is everything a send needs to know in one round trip.
type SendCheck struct {
	Kind      string
	Private   bool
	Member    bool
	Role      string // the sender's role when Member
	Muted     bool   // the sender is muted in the room (roles.go)
	DupSeq    int64  // > 0 when (room, sender, client_msg_id) is already stored
	DupID     string
	Name      string
	RoomFound bool
}

// Membership is one room_members row.
type Membership struct {
	RoomID   string
	UserID   string
	Username string
	Role     string
	Muted    bool
	JoinedAt time.Time
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Ping checks the connection, for readiness.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// CreateUser inserts an account.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)`,
		u.ID, u.Username, u.PasswordHash)
	if isUnique(err) {
		return ErrUsernameTaken
	}
	if err != nil {
		return fmt.Errorf("cannot insert user: %w", err)
	}
	return nil
}

// UserByName finds an account by username (case-sensitive, as registered).
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, `SELECT id, username, password_hash FROM users WHERE username = $1`, name).
		Scan(&u.ID, &u.Username, &u.PasswordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("cannot read user: %w", err)
	}
	return u, nil
}

// CreateSession stores a token hash for a user.
func (s *Store) CreateSession(ctx context.Context, userID string, hash []byte, kind string, expiresAt time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (token_hash, user_id, kind, expires_at) VALUES ($1, $2, $3, $4)`,
		hash, userID, kind, expiresAt)
	if err != nil {
		return fmt.Errorf("cannot insert session: %w", err)
	}
	return nil
}

// SessionUser resolves a token hash to its user, kind and expiry. It does not judge
// expiry: the caller does, with its own clock (see auth.Usable).
func (s *Store) SessionUser(ctx context.Context, hash []byte) (User, string, time.Time, error) {
	var u User
	var kind string
	var exp time.Time
	err := s.pool.QueryRow(ctx, `SELECT u.id, u.username, s.kind, s.expires_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`, hash).
		Scan(&u.ID, &u.Username, &kind, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", time.Time{}, ErrNotFound
	}
	if err != nil {
		return User{}, "", time.Time{}, fmt.Errorf("cannot read session: %w", err)
	}
	return u, kind, exp, nil
}

// DeleteExpiredSessions removes dead tokens; it is housekeeping, not security (expired
// tokens are rejected either way).
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("cannot delete sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// CreateRoom inserts a room with its creator as admin, in one transaction.
func (s *Store) CreateRoom(ctx context.Context, id, name, kind, creator string) error {
	return s.CreateRoomAnnounced(ctx, id, name, kind, creator)
}

// SettleOutbox records the outcome of the gateway's own publish of outbox rows it wrote
// with RelayAfter (outbox.Settle).
func (s *Store) SettleOutbox(ctx context.Context, published bool, eventIDs ...string) error {
	return outbox.Settle(ctx, s.pool, published, eventIDs...)
}

// CreateRoomAnnounced is CreateRoom that also writes announce (the creator's join event)
// to the outbox in the same transaction: the room exists if and only if its announcement
// will be published.
func (s *Store) CreateRoomAnnounced(ctx context.Context, id, name, kind, creator string, announce ...outbox.Row) error {
	return s.createRoom(ctx, id, name, kind, creator, false, announce)
}

func (s *Store) createRoom(ctx context.Context, id, name, kind, creator string, private bool, announce []outbox.Row) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rooms (id, name, kind, created_by, private) VALUES ($1, $2, $3, $4, $5)`, id, name, kind, creator, private)
		if isUnique(err) {
			return ErrRoomExists
		}
		if err != nil {
			return fmt.Errorf("cannot insert room: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO room_members (room_id, user_id, role) VALUES ($1, $2, 'owner')`, id, creator); err != nil {
			return fmt.Errorf("cannot insert member: %w", err)
		}
		if private {
			// The creator's join entry, like every join of a private room, must match an
			// accepted invitation when persistence stores it.
			if _, err := tx.Exec(ctx, `INSERT INTO room_invites (room_id, user_id, invited_by, created_at, expires_at, accepted_at)
				VALUES ($1, $2, $2, now(), now(), now())`, id, creator); err != nil {
				return fmt.Errorf("cannot record the creator's invitation: %w", err)
			}
		}
		return outbox.Insert(ctx, tx, announce...)
	})
}

// EnsureDM creates the DM room of two users if it does not exist; both are members.
// It reports whether it created the room.
func (s *Store) EnsureDM(ctx context.Context, id, name, a, b string) (bool, error) {
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO rooms (id, name, kind, created_by) VALUES ($1, $2, 'dm', $3) ON CONFLICT (id) DO NOTHING`, id, name, a)
		if err != nil {
			return fmt.Errorf("cannot insert dm room: %w", err)
		}
		created = tag.RowsAffected() == 1
		_, err = tx.Exec(ctx, `INSERT INTO room_members (room_id, user_id) VALUES ($1, $2), ($1, $3) ON CONFLICT DO NOTHING`, id, a, b)
		if err != nil {
			return fmt.Errorf("cannot insert dm members: %w", err)
		}
		return nil
	})
	return created, err
}

// Room reads a room and userID's role in it. ErrNotFound when the room does not exist.
func (s *Store) Room(ctx context.Context, roomID, userID string) (Room, error) {
	var r Room
	var role *string
	var minSeq *int64
	err := s.pool.QueryRow(ctx, `SELECT r.id, r.name, r.kind, r.private, r.last_seq, m.role,
			(SELECT min(seq) FROM messages WHERE room_id = r.id),
			EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = r.id AND b.user_id = $2)
		FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $2
		WHERE r.id = $1`, roomID, userID).Scan(&r.ID, &r.Name, &r.Kind, &r.Private, &r.LastSeq, &role, &minSeq, &r.Banned)
	if errors.Is(err, pgx.ErrNoRows) {
		return Room{}, ErrNotFound
	}
	if err != nil {
		return Room{}, fmt.Errorf("cannot read room: %w", err)
	}
	if role != nil {
		r.Role = *role
	}
	if minSeq != nil {
		r.MinSeq = *minSeq
	}
	return r, nil
}

// MessageAt reads one timeline entry. ErrNotFound when there is none.
func (s *Store) MessageAt(ctx context.Context, roomID string, seq int64) (Message, error) {
	rows, err := s.pool.Query(ctx, selectMessages+` WHERE room_id = $1 AND seq = $2`, roomID, seq)
	if err != nil {
		return Message{}, fmt.Errorf("cannot read message: %w", err)
	}
	ms, err := scanMessages(rows)
	if err != nil {
		return Message{}, err
	}
	if len(ms) == 0 {
		return Message{}, ErrNotFound
	}
	return ms[0], nil
}

// AddMember makes userID a member; it reports false if they already were. A new member's
// read marker starts at the room's current last_seq: what was said before they joined is
// history, not unread. (Someone who leaves and rejoins keeps the higher of the two.)
func (s *Store) AddMember(ctx context.Context, roomID, userID string) (bool, error) {
	return s.AddMemberAnnounced(ctx, roomID, userID)
}

// AddMemberAnnounced is AddMember that also writes announce (the membership.changed
// event) to the outbox in the same transaction, only if it added the member: a
// membership and its timeline entry commit together or not at all, and a repeated call
// writes neither again.
func (s *Store) AddMemberAnnounced(ctx context.Context, roomID, userID string, announce ...outbox.Row) (bool, error) {
	added := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		added, err = addMember(ctx, tx, roomID, userID, announce)
		return err
	})
	return added, err
}

// addMember is AddMemberAnnounced inside the caller's transaction. ErrBanned when userID
// is banned from the room.
func addMember(ctx context.Context, tx pgx.Tx, roomID, userID string, announce []outbox.Row) (bool, error) {
	if err := checkNotBanned(ctx, tx, roomID, userID); err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO room_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, roomID, userID)
	if err != nil {
		return false, fmt.Errorf("cannot add member: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return false, nil
	}
	_, err = tx.Exec(ctx, `INSERT INTO room_reads (user_id, room_id, last_read_seq)
		SELECT $2, id, last_seq FROM rooms WHERE id = $1
		ON CONFLICT (user_id, room_id) DO UPDATE SET last_read_seq = greatest(room_reads.last_read_seq, EXCLUDED.last_read_seq)`,
		roomID, userID)
	if err != nil {
		return false, fmt.Errorf("cannot start read marker: %w", err)
	}
	return true, outbox.Insert(ctx, tx, announce...)
}

// unreadCount is the SQL of an unread count for the user $1: the messages of room after
// marker of kind message (joins, edits and deletes are nothing to read), not deleted and
// not the user's own. The LIMIT bounds the scan of a room read long ago.
func unreadCount(room, marker string) string {
	return `(SELECT count(*) FROM (SELECT 1 FROM messages x
		WHERE x.room_id = ` + room + ` AND x.seq > ` + marker + ` AND x.kind = 'message'
		  AND x.sender <> $1 AND x.deleted_at IS NULL
		LIMIT ` + strconv.Itoa(MaxUnread) + `) unread)`
}

// MarkRead moves userID's read marker of roomID forward to seq (never back) and returns
// the marker after the update and the room's unread count from there. ErrNotFound: no
// such room, or a private room userID is not a member of (it must not learn that it
// exists); ErrNotMember: userID is not a member; ErrPastEnd: seq > the room's last_seq.
func (s *Store) MarkRead(ctx context.Context, userID, roomID string, seq int64) (int64, int64, error) {
	var found, member bool
	var lastSeq int64
	var marker, unread *int64
	err := s.pool.QueryRow(ctx, `
		WITH r AS (
			SELECT ro.id, ro.last_seq, m.user_id IS NOT NULL AS member
			FROM rooms ro LEFT JOIN room_members m ON m.room_id = ro.id AND m.user_id = $1
			WHERE ro.id = $2 AND (NOT ro.private OR m.user_id IS NOT NULL)
		), rr AS (
			INSERT INTO room_reads (user_id, room_id, last_read_seq)
			SELECT $1, r.id, $3 FROM r WHERE r.member AND $3 <= r.last_seq
			ON CONFLICT (user_id, room_id) DO UPDATE
			SET last_read_seq = greatest(room_reads.last_read_seq, EXCLUDED.last_read_seq),
			    updated_at = CASE WHEN EXCLUDED.last_read_seq > room_reads.last_read_seq THEN now() ELSE room_reads.updated_at END
			RETURNING last_read_seq
		)
		SELECT EXISTS (SELECT 1 FROM r), coalesce((SELECT member FROM r), false), coalesce((SELECT last_seq FROM r), 0),
		       (SELECT last_read_seq FROM rr), (SELECT `+unreadCount("$2", "rr.last_read_seq")+` FROM rr)`,
		userID, roomID, seq).Scan(&found, &member, &lastSeq, &marker, &unread)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("cannot mark read: %w", err)
	case !found:
		return 0, 0, ErrNotFound
	case !member:
		return 0, 0, ErrNotMember
	case seq > lastSeq || marker == nil || unread == nil:
		return 0, 0, &PastEndError{LastSeq: lastSeq}
	}
	return *marker, *unread, nil
}

// RemoveMember ends a membership; it reports false if there was none.
func (s *Store) RemoveMember(ctx context.Context, roomID, userID string) (bool, error) {
	return s.RemoveMemberAnnounced(ctx, roomID, userID)
}

// RemoveMemberAnnounced is RemoveMember that also writes announce (the membership.changed
// event) to the outbox in the same transaction, only if it removed the member.
func (s *Store) RemoveMemberAnnounced(ctx context.Context, roomID, userID string, announce ...outbox.Row) (bool, error) {
	removed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID)
		if err != nil {
			return fmt.Errorf("cannot remove member: %w", err)
		}
		if removed = tag.RowsAffected() == 1; !removed {
			return nil
		}
		return outbox.Insert(ctx, tx, announce...)
	})
	return removed, err
}

// Members lists a room's members, oldest first.
func (s *Store) Members(ctx context.Context, roomID string) ([]Membership, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.room_id, m.user_id, u.username, m.role, m.muted_at IS NOT NULL, m.joined_at
		FROM room_members m JOIN users u ON u.id = m.user_id WHERE m.room_id = $1 ORDER BY m.joined_at, u.username`, roomID)
	if err != nil {
		return nil, fmt.Errorf("cannot list members: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Membership, error) {
		var m Membership
		err := r.Scan(&m.RoomID, &m.UserID, &m.Username, &m.Role, &m.Muted, &m.JoinedAt)
		return m, err
	})
}

// RoomsOf lists the rooms userID belongs to, with DM members' usernames, the user's read
// marker and unread count. The count is computed here, from the timeline, rather than
// kept as a counter: then it is right on every gateway and device by construction, and a
// read on one is seen by all on their next fetch.
func (s *Store) RoomsOf(ctx context.Context, userID string) ([]Room, error) {
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.name, r.kind, r.private, r.last_seq, m.role,
			CASE WHEN r.kind = 'dm' THEN ARRAY(SELECT u.username FROM room_members x JOIN users u ON u.id = x.user_id
				WHERE x.room_id = r.id ORDER BY u.username) END,
			coalesce(rr.last_read_seq, 0), `+unreadCount("r.id", "coalesce(rr.last_read_seq, 0)")+`
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		LEFT JOIN room_reads rr ON rr.user_id = m.user_id AND rr.room_id = r.id
		WHERE m.user_id = $1 ORDER BY r.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("cannot list rooms: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Room, error) {
		var r Room
		err := row.Scan(&r.ID, &r.Name, &r.Kind, &r.Private, &r.LastSeq, &r.Role, &r.Members, &r.LastReadSeq, &r.Unread)
		return r, err
	})
}

// PublicRooms lists rooms anyone may join (not DMs, not private rooms), by id.
func (s *Store) PublicRooms(ctx context.Context, limit int) ([]Room, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, kind, last_seq FROM rooms WHERE kind = 'room' AND NOT private ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list rooms: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Room, error) {
		var r Room
		err := row.Scan(&r.ID, &r.Name, &r.Kind, &r.LastSeq)
		return r, err
	})
}

// LastSeqs reads rooms.last_seq for several rooms at once (the periodic tail check).
func (s *Store) LastSeqs(ctx context.Context, roomIDs []string) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, last_seq FROM rooms WHERE id = ANY($1)`, roomIDs)
	if err != nil {
		return nil, fmt.Errorf("cannot read last seqs: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int64, len(roomIDs))
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, err
		}
		out[id] = seq
	}
	return out, rows.Err()
}

// Usernames maps user ids to usernames; unknown ids are left out.
func (s *Store) Usernames(ctx context.Context, userIDs []string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, username FROM users WHERE id = ANY($1)`, userIDs)
	if err != nil {
		return nil, fmt.Errorf("cannot read usernames: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string, len(userIDs))
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = name
	}
	return out, rows.Err()
}

// MembershipsSince lists memberships of the given users that started after since, and the
// database's current time to use as the next since (the gateway's clock may differ).
func (s *Store) MembershipsSince(ctx context.Context, userIDs []string, since time.Time) ([]Membership, time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, time.Time{}, fmt.Errorf("cannot read time: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT room_id, user_id, role, joined_at FROM room_members
		WHERE user_id = ANY($1) AND joined_at > $2`, userIDs, since)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("cannot list memberships: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Membership, error) {
		var m Membership
		err := r.Scan(&m.RoomID, &m.UserID, &m.Role, &m.JoinedAt)
		return m, err
	})
	return ms, now, err
}

const selectMessages = `SELECT room_id, seq, event_id, kind, sender, sender_name, coalesce(client_msg_id, ''),
	coalesce(text, ''), coalesce(target_seq, 0), sent_at, stored_at, edited_at, deleted_at, coalesce(emoji, ''), reaction_on,
	coalesce(thread_root, 0), room_change
	FROM messages`

func scanMessages(rows pgx.Rows) ([]Message, error) {
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Message, error) {
		var m Message
		err := r.Scan(&m.RoomID, &m.Seq, &m.EventID, &m.Kind, &m.Sender, &m.SenderName, &m.ClientMsgID,
			&m.Text, &m.TargetSeq, &m.SentAt, &m.StoredAt, &m.EditedAt, &m.DeletedAt, &m.Emoji, &m.On, &m.ThreadRoot, &m.RoomChange)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read messages: %w", err)
	}
	return ms, nil
}

// MessagesAfter returns up to limit entries with seq > after, oldest first: the resume and
// catch-up read.
func (s *Store) MessagesAfter(ctx context.Context, roomID string, after int64, limit int) ([]Message, error) {
	rows, err := s.pool.Query(ctx, selectMessages+` WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, roomID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read messages: %w", err)
	}
	return scanMessages(rows)
}

// MessagesBefore returns up to limit entries with seq < before, newest first: the history read.
func (s *Store) MessagesBefore(ctx context.Context, roomID string, before int64, limit int) ([]Message, error) {
	rows, err := s.pool.Query(ctx, selectMessages+` WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`, roomID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot read messages: %w", err)
	}
	return scanMessages(rows)
}

// Reaction is one emoji's current reactions on one message.
type Reaction struct {
	TargetSeq int64
	Emoji     string
	Count     int
	Me        bool     // userID is among them
	Users     []string // usernames, first reacted first, at most maxNames
}

// Reactions returns the current reactions on the messages seqs of roomID, for a history
// page: one query for the whole page, grouped per message and emoji, ordered by message
// and then by when each emoji was first added. Usernames are returned only for emoji
// with at most maxNames reactions (a client shows the count alone past that).
func (s *Store) Reactions(ctx context.Context, roomID, userID string, seqs []int64, maxNames int) ([]Reaction, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT target_seq, emoji, count(*), bool_or(user_id = $3),
			CASE WHEN count(*) <= $4 THEN array_agg(user_name ORDER BY seq) END
		FROM reactions WHERE room_id = $1 AND target_seq = ANY($2::bigint[])
		GROUP BY target_seq, emoji
		ORDER BY target_seq, min(seq)`, roomID, seqs, userID, maxNames)
	if err != nil {
		return nil, fmt.Errorf("cannot read reactions: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Reaction, error) {
		var x Reaction
		err := r.Scan(&x.TargetSeq, &x.Emoji, &x.Count, &x.Me, &x.Users)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read reactions: %w", err)
	}
	return rs, nil
}
