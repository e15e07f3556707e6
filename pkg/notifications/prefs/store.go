package prefs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what the store needs from PostgreSQL; *pgxpool.Pool and pgx.Tx satisfy it.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Reader is what Load needs: a pool, a connection or a transaction.
type Reader interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Load reads the preferences of users, and their settings for rooms, in two queries.
// Users and rooms without a row are left out (the defaults).
func Load(ctx context.Context, q Reader, users, rooms []string) (Set, error) {
	set := Set{Users: map[string]User{}, Rooms: map[RoomKey]Room{}}
	if len(users) == 0 {
		return set, nil
	}
	rows, err := q.Query(ctx, `SELECT user_id, level, dnd_start, dnd_end, dnd_zone FROM notification_prefs WHERE user_id = ANY($1::text[])`, users)
	if err != nil {
		return set, fmt.Errorf("cannot read notification preferences: %w", err)
	}
	var id, level string
	var start, end *int16
	var zone *string
	if _, err := pgx.ForEachRow(rows, []any{&id, &level, &start, &end, &zone}, func() error {
		u, err := user(level, start, end, zone)
		if err != nil {
			return fmt.Errorf("user %s: %w", id, err)
		}
		set.Users[id] = u
		return nil
	}); err != nil {
		return set, fmt.Errorf("cannot read notification preferences: %w", err)
	}
	if len(rooms) == 0 {
		return set, nil
	}
	rows, err = q.Query(ctx, `SELECT user_id, room_id, coalesce(level, ''), muted_until FROM room_notification_prefs
		WHERE room_id = ANY($1::text[]) AND user_id = ANY($2::text[])`, rooms, users)
	if err != nil {
		return set, fmt.Errorf("cannot read room notification preferences: %w", err)
	}
	var room string
	var muted *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&id, &room, &level, &muted}, func() error {
		r := Room{Level: Level(level)}
		if muted != nil {
			r.MutedUntil = *muted
		}
		set.Rooms[RoomKey{id, room}] = r
		return nil
	}); err != nil {
		return set, fmt.Errorf("cannot read room notification preferences: %w", err)
	}
	return set, nil
}

func user(level string, start, end *int16, zone *string) (User, error) {
	u := User{Level: Level(level)}
	if start != nil && end != nil && zone != nil {
		d, err := NewDND(int(*start), int(*end), *zone)
		if err != nil {
			return User{}, err
		}
		u.DND = d
	}
	return u, nil
}

// RoomSetting is one room's setting of a user, as the API lists it.
type RoomSetting struct {
	Room       string     `json:"room"`
	Level      *Level     `json:"level"`       // null: the user's default
	MutedUntil *time.Time `json:"muted_until"` // null: not muted
}

// Get returns userID's defaults and every room setting (rooms in id order). A user
// without a row gets the defaults.
func Get(ctx context.Context, q Querier, userID string) (User, []RoomSetting, error) {
	u := User{Level: LevelAll}
	var level string
	var start, end *int16
	var zone *string
	err := q.QueryRow(ctx, `SELECT level, dnd_start, dnd_end, dnd_zone FROM notification_prefs WHERE user_id = $1`, userID).
		Scan(&level, &start, &end, &zone)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return User{}, nil, fmt.Errorf("cannot read notification preferences: %w", err)
	default:
		if u, err = user(level, start, end, zone); err != nil {
			return User{}, nil, err
		}
	}
	rows, err := q.Query(ctx, `SELECT room_id, level, muted_until FROM room_notification_prefs WHERE user_id = $1 ORDER BY room_id`, userID)
	if err != nil {
		return User{}, nil, fmt.Errorf("cannot read room notification preferences: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RoomSetting, error) {
		var s RoomSetting
		err := r.Scan(&s.Room, &s.Level, &s.MutedUntil)
		return s, err
	})
	if err != nil {
		return User{}, nil, fmt.Errorf("cannot read room notification preferences: %w", err)
	}
	return u, rs, nil
}

// SetUser replaces userID's defaults (level, and DND or none). u must come from the
// Parse functions; Level "" is stored as all.
func SetUser(ctx context.Context, q Querier, userID string, u User) error {
	if u.Level == "" {
		u.Level = LevelAll
	}
	var start, end *int
	var zone *string
	if u.DND != nil {
		start, end, zone = &u.DND.Start, &u.DND.End, &u.DND.Zone
	}
	if _, err := q.Exec(ctx, `
		INSERT INTO notification_prefs (user_id, level, dnd_start, dnd_end, dnd_zone) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET level = EXCLUDED.level, dnd_start = EXCLUDED.dnd_start,
		    dnd_end = EXCLUDED.dnd_end, dnd_zone = EXCLUDED.dnd_zone, updated_at = now()`,
		userID, string(u.Level), start, end, zone); err != nil {
		return fmt.Errorf("cannot write notification preferences: %w", err)
	}
	return nil
}

// SetRoom replaces userID's setting for roomID (the caller checked membership).
func SetRoom(ctx context.Context, q Querier, userID, roomID string, r Room) error {
	var level *string
	if r.Level != "" {
		l := string(r.Level)
		level = &l
	}
	var muted *time.Time
	if !r.MutedUntil.IsZero() {
		muted = &r.MutedUntil
	}
	if _, err := q.Exec(ctx, `
		INSERT INTO room_notification_prefs (user_id, room_id, level, muted_until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_id) DO UPDATE SET level = EXCLUDED.level, muted_until = EXCLUDED.muted_until, updated_at = now()`,
		userID, roomID, level, muted); err != nil {
		return fmt.Errorf("cannot write room notification preferences: %w", err)
	}
	return nil
}

// DeleteRoom removes userID's setting for roomID (back to the defaults). Deleting what
// is not there is no error.
func DeleteRoom(ctx context.Context, q Querier, userID, roomID string) error {
	if _, err := q.Exec(ctx, `DELETE FROM room_notification_prefs WHERE user_id = $1 AND room_id = $2`, userID, roomID); err != nil {
		return fmt.Errorf("cannot delete room notification preferences: %w", err)
	}
	return nil
}
