// Moderation by room admins: kicking a member, banning a user (a ban also removes them
// and keeps them out: joins, invitations and admin adds are refused until it is lifted)
// and lifting a ban. A removal and its membership event commit together, like a leave.

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/outbox"
)

// ErrBanned is the answer to adding or inviting a user banned from the room.
var ErrBanned = errors.New("store: banned from the room")

// checkNotBanned fails with ErrBanned when userID is banned from roomID.
func checkNotBanned(ctx context.Context, tx pgx.Tx, roomID, userID string) error {
	var banned bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_bans WHERE room_id = $1 AND user_id = $2)`, roomID, userID).Scan(&banned); err != nil {
		return fmt.Errorf("cannot read bans: %w", err)
	}
	if banned {
		return ErrBanned
	}
	return nil
}

// RemoveMemberByAdmin removes userID from roomID on an admin's (by's) behalf and, if ban,
// records the ban (and drops any invitation of theirs) in the same transaction. announce
// (the membership event) is written only if a membership was removed; it reports whether
// one was. Banning someone banned already changes nothing.
func (s *Store) RemoveMemberByAdmin(ctx context.Context, roomID, userID, by string, ban bool, now time.Time, announce ...outbox.Row) (bool, error) {
	removed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if ban {
			if _, err := tx.Exec(ctx, `INSERT INTO room_bans (room_id, user_id, banned_by, banned_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT DO NOTHING`, roomID, userID, by, now); err != nil {
				return fmt.Errorf("cannot ban: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM room_invites WHERE room_id = $1 AND user_id = $2`, roomID, userID); err != nil {
				return fmt.Errorf("cannot drop invitations: %w", err)
			}
		}
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

// Unban lifts userID's ban from roomID and reports whether there was one.
func (s *Store) Unban(ctx context.Context, roomID, userID string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	if err != nil {
		return false, fmt.Errorf("cannot unban: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
