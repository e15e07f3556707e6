// Role changes and muting of room members.

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// SetRole sets userID's role in roomID and reports whether it changed (false for a
// non-member or the role they have).
func (s *Store) SetRole(ctx context.Context, roomID, userID, role string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2 AND role <> $3`, roomID, userID, role)
	if err != nil {
		return false, fmt.Errorf("cannot set role: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// SetMuted mutes (by, at now) or unmutes userID in roomID and reports whether that
// changed anything.
func (s *Store) SetMuted(ctx context.Context, roomID, userID, by string, muted bool, now time.Time) (bool, error) {
	q := `UPDATE room_members SET muted_at = NULL, muted_by = NULL WHERE room_id = $1 AND user_id = $2 AND muted_at IS NOT NULL`
	args := []any{roomID, userID}
	if muted {
		q = `UPDATE room_members SET muted_at = $4, muted_by = $3 WHERE room_id = $1 AND user_id = $2 AND muted_at IS NULL`
		args = append(args, by, now)
	}
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("cannot mute: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// TransferOwnership makes to the owner of roomID and from, its owner, an admin, in one
// transaction. It reports false, changing nothing, when from is no longer the owner or to
// no longer a member.
func (s *Store) TransferOwnership(ctx context.Context, roomID, from, to string) (bool, error) {
	moved := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE room_members SET role = 'admin' WHERE room_id = $1 AND user_id = $2 AND role = 'owner'`, roomID, from)
		if err != nil {
			return fmt.Errorf("cannot demote owner: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		tag, err = tx.Exec(ctx, `UPDATE room_members SET role = 'owner', muted_at = NULL, muted_by = NULL WHERE room_id = $1 AND user_id = $2`, roomID, to)
		if err != nil {
			return fmt.Errorf("cannot promote owner: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errNoSuccessor
		}
		moved = true
		return nil
	})
	if err == errNoSuccessor {
		return false, nil
	}
	return moved, err
}

// errNoSuccessor rolls back a transfer to someone who left.
var errNoSuccessor = errors.New("store: transfer to a non-member")

// RoomSettings are a room's name, topic and privacy.
type RoomSettings struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Topic   string `json:"topic"`
	Private bool   `json:"private"`
}

// UpdateRoom sets the given (non-nil) settings of roomID and returns all of them.
func (s *Store) UpdateRoom(ctx context.Context, roomID string, name, topic *string, private *bool) (RoomSettings, error) {
	var r RoomSettings
	err := s.pool.QueryRow(ctx, `UPDATE rooms SET name = coalesce($2, name), topic = coalesce($3, topic), private = coalesce($4, private)
		WHERE id = $1 RETURNING id, name, topic, private`, roomID, name, topic, private).Scan(&r.ID, &r.Name, &r.Topic, &r.Private)
	if errors.Is(err, pgx.ErrNoRows) {
		return RoomSettings{}, ErrNotFound
	}
	if err != nil {
		return RoomSettings{}, fmt.Errorf("cannot update room: %w", err)
	}
	return r, nil
}

// DirectoryRoom is one public room of the directory.
type DirectoryRoom struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Topic   string `json:"topic"`
	Members int    `json:"members"`
}

// Directory lists public rooms (never private rooms or DMs) whose id, name or topic
// contains q (case-insensitively; "" matches all), by id after the id after, at most limit.
func (s *Store) Directory(ctx context.Context, q, after string, limit int) ([]DirectoryRoom, error) {
	pattern := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q) + "%"
	rows, err := s.pool.Query(ctx, `SELECT r.id, r.name, r.topic, (SELECT count(*) FROM room_members m WHERE m.room_id = r.id)
		FROM rooms r
		WHERE r.kind = 'room' AND NOT r.private AND r.id > $2
		  AND (r.id ILIKE $1 OR r.name ILIKE $1 OR r.topic ILIKE $1)
		ORDER BY r.id LIMIT $3`, pattern, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list the directory: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (DirectoryRoom, error) {
		var d DirectoryRoom
		err := row.Scan(&d.ID, &d.Name, &d.Topic, &d.Members)
		return d, err
	})
}
