// Private rooms and their invitations (room_invites): creating a private room, inviting,
// listing, accepting (which adds the member and writes its join event to the outbox in
// one transaction, like a join), declining, revoking and an admin's direct add.

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/outbox"
)

// Invitation errors; callers map them to protocol codes.
var (
	ErrAlreadyMember  = errors.New("store: already a member")
	ErrAlreadyInvited = errors.New("store: already invited")
)

// Invite is a pending invitation as its invitee lists it.
type Invite struct {
	RoomID        string
	RoomName      string
	InvitedBy     string
	InvitedByName string
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// CreatePrivateRoomAnnounced is CreateRoomAnnounced for a private room.
func (s *Store) CreatePrivateRoomAnnounced(ctx context.Context, id, name, creator string, announce ...outbox.Row) error {
	return s.createRoom(ctx, id, name, "room", creator, true, announce)
}

// CreateInvite records a pending invitation of userID to roomID by by, usable until
// expiresAt. ErrAlreadyMember when userID is a member; ErrBanned when banned from the
// room; ErrAlreadyInvited when a pending
// invitation is still usable at now. An expired invitation, or one accepted by someone
// who has left since, is replaced.
func (s *Store) CreateInvite(ctx context.Context, roomID, userID, by string, now, expiresAt time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var member bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)`,
			roomID, userID).Scan(&member); err != nil {
			return fmt.Errorf("cannot read membership: %w", err)
		}
		if member {
			return ErrAlreadyMember
		}
		if err := checkNotBanned(ctx, tx, roomID, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO room_invites (room_id, user_id, invited_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (room_id, user_id) DO UPDATE
			SET invited_by = EXCLUDED.invited_by, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, accepted_at = NULL
			WHERE room_invites.accepted_at IS NOT NULL OR room_invites.expires_at <= $4`,
			roomID, userID, by, now, expiresAt)
		if err != nil {
			return fmt.Errorf("cannot insert invite: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrAlreadyInvited
		}
		return nil
	})
}

// PendingInvites lists userID's invitations that are neither accepted nor expired at
// now, oldest first.
func (s *Store) PendingInvites(ctx context.Context, userID string, now time.Time) ([]Invite, error) {
	rows, err := s.pool.Query(ctx, `SELECT i.room_id, r.name, i.invited_by, u.username, i.created_at, i.expires_at
		FROM room_invites i JOIN rooms r ON r.id = i.room_id JOIN users u ON u.id = i.invited_by
		WHERE i.user_id = $1 AND i.accepted_at IS NULL AND i.expires_at > $2
		ORDER BY i.created_at, i.room_id`, userID, now)
	if err != nil {
		return nil, fmt.Errorf("cannot list invites: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Invite, error) {
		var i Invite
		err := r.Scan(&i.RoomID, &i.RoomName, &i.InvitedBy, &i.InvitedByName, &i.CreatedAt, &i.ExpiresAt)
		return i, err
	})
}

// AcceptInviteAnnounced accepts userID's invitation to roomID at now: it marks the
// invitation accepted, adds the member and writes announce (the join event) to the
// outbox, all in one transaction. (Persistence deletes the accepted invitation when it
// stores the join entry.) It reports false, and writes nothing, when userID is a
// member already (a retried accept). ErrNotFound when there is no invitation usable at
// now: none, expired, revoked, declined, or accepted by someone who has left since.
func (s *Store) AcceptInviteAnnounced(ctx context.Context, roomID, userID string, now time.Time, announce ...outbox.Row) (bool, error) {
	added := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var accepted *time.Time
		var expires time.Time
		var member bool
		err := tx.QueryRow(ctx, `SELECT i.accepted_at, i.expires_at,
				EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = i.room_id AND m.user_id = i.user_id)
			FROM room_invites i WHERE i.room_id = $1 AND i.user_id = $2 FOR UPDATE`, roomID, userID).Scan(&accepted, &expires, &member)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return fmt.Errorf("cannot read invite: %w", err)
		case member:
			return nil
		case accepted != nil || !expires.After(now):
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `UPDATE room_invites SET accepted_at = $3 WHERE room_id = $1 AND user_id = $2`,
			roomID, userID, now); err != nil {
			return fmt.Errorf("cannot accept invite: %w", err)
		}
		added, err = addMember(ctx, tx, roomID, userID, announce)
		return err
	})
	return added, err
}

// DeletePendingInvite removes userID's pending invitation to roomID (a decline or a
// revocation) and reports whether there was one; an accepted one stays.
func (s *Store) DeletePendingInvite(ctx context.Context, roomID, userID string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM room_invites WHERE room_id = $1 AND user_id = $2 AND accepted_at IS NULL`, roomID, userID)
	if err != nil {
		return false, fmt.Errorf("cannot delete invite: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// AddMemberByAdmin is an admin's direct add of userID to a private room: it records an
// accepted invitation by by (what persistence checks the join entry against) and adds
// the member with announce, in one transaction. It reports false, and writes nothing,
// when userID is a member already.
func (s *Store) AddMemberByAdmin(ctx context.Context, roomID, userID, by string, now time.Time, announce ...outbox.Row) (bool, error) {
	added := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var member bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)`,
			roomID, userID).Scan(&member); err != nil {
			return fmt.Errorf("cannot read membership: %w", err)
		}
		if member {
			return nil
		}
		if err := checkNotBanned(ctx, tx, roomID, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO room_invites (room_id, user_id, invited_by, created_at, expires_at, accepted_at)
			VALUES ($1, $2, $3, $4, $4, $4)
			ON CONFLICT (room_id, user_id) DO UPDATE
			SET invited_by = EXCLUDED.invited_by, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, accepted_at = EXCLUDED.accepted_at`,
			roomID, userID, by, now); err != nil {
			return fmt.Errorf("cannot record admin add: %w", err)
		}
		var err error
		added, err = addMember(ctx, tx, roomID, userID, announce)
		return err
	})
	return added, err
}
