// Role changes and muting of room members.

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
)

// SetRole sets userID's role in roomID and reports whether it changed (false for a
// non-member or the role they have). announce (the room change's event) is written in the
// same transaction, only if the role changed.
func (s *Store) SetRole(ctx context.Context, roomID, userID, role string, announce ...outbox.Row) (bool, error) {
	return s.changeMember(ctx, `UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2 AND role <> $3`,
		[]any{roomID, userID, role}, announce)
}

// SetMuted mutes (by, at now) or unmutes userID in roomID and reports whether that
// changed anything; announce is written with the change, only if there is one.
func (s *Store) SetMuted(ctx context.Context, roomID, userID, by string, muted bool, now time.Time, announce ...outbox.Row) (bool, error) {
	q := `UPDATE room_members SET muted_at = NULL, muted_by = NULL WHERE room_id = $1 AND user_id = $2 AND muted_at IS NOT NULL`
	args := []any{roomID, userID}
	if muted {
		q = `UPDATE room_members SET muted_at = $4, muted_by = $3 WHERE room_id = $1 AND user_id = $2 AND muted_at IS NULL`
		args = append(args, by, now)
	}
	return s.changeMember(ctx, q, args, announce)
}

// changeMember runs update and, if it changed a row, inserts announce, in one transaction.
func (s *Store) changeMember(ctx context.Context, update string, args []any, announce []outbox.Row) (bool, error) {
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, update, args...)
		if err != nil {
			return fmt.Errorf("cannot change member: %w", err)
		}
		if changed = tag.RowsAffected() == 1; !changed {
			return nil
		}
		return outbox.Insert(ctx, tx, announce...)
	})
	return changed, err
}

// TransferOwnership makes to the owner of roomID and from, its owner, an admin, and
// writes announce, in one transaction. It reports false, changing nothing, when from is
// no longer the owner or to no longer a member.
func (s *Store) TransferOwnership(ctx context.Context, roomID, from, to string, announce ...outbox.Row) (bool, error) {
	return s.transfer(ctx, roomID, from, to, false, announce)
}

// TransferAndLeave is the owner's leave naming a successor: to becomes the owner, from
// (the owner) leaves, and announce (the transfer's event, then the leave's) is written,
// in one transaction. It reports false, changing nothing, when from is no longer the
// owner or to no longer a member.
func (s *Store) TransferAndLeave(ctx context.Context, roomID, from, to string, announce ...outbox.Row) (bool, error) {
	return s.transfer(ctx, roomID, from, to, true, announce)
}

func (s *Store) transfer(ctx context.Context, roomID, from, to string, leave bool, announce []outbox.Row) (bool, error) {
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
		if leave {
			if _, err := tx.Exec(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, from); err != nil {
				return fmt.Errorf("cannot remove member: %w", err)
			}
		}
		moved = true
		return outbox.Insert(ctx, tx, announce...)
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

// UpdateRoom sets the given (non-nil) settings of roomID and returns all of them, with
// the settings that differ from what the room had (nil when none does: then nothing is
// written). announce builds the change's event from that difference; it is written in
// the same transaction.
func (s *Store) UpdateRoom(ctx context.Context, roomID string, name, topic *string, private *bool,
	announce func(event.RoomSettingsChange) (outbox.Row, error)) (RoomSettings, *event.RoomSettingsChange, error) {
	var r RoomSettings
	var diff *event.RoomSettingsChange
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id, name, topic, private FROM rooms WHERE id = $1 FOR UPDATE`, roomID).
			Scan(&r.ID, &r.Name, &r.Topic, &r.Private)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("cannot read room: %w", err)
		}
		var d event.RoomSettingsChange
		if name != nil && *name != r.Name {
			d.Name, r.Name = name, *name
		}
		if topic != nil && *topic != r.Topic {
			d.Topic, r.Topic = topic, *topic
		}
		if private != nil && *private != r.Private {
			d.Private, r.Private = private, *private
		}
		if d.Empty() {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE rooms SET name = $2, topic = $3, private = $4 WHERE id = $1`, roomID, r.Name, r.Topic, r.Private); err != nil {
			return fmt.Errorf("cannot update room: %w", err)
		}
		row, err := announce(d)
		if err != nil {
			return err
		}
		diff = &d
		return outbox.Insert(ctx, tx, row)
	})
	if err != nil {
		return RoomSettings{}, nil, err
	}
	return r, diff, nil
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
