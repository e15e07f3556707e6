// A room's details as one user sees them: settings, member count and their own role and
// mute (GET /api/rooms/{id}).

package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RoomDetails are a room's settings, its member count and the asking user's role ("" when
// not a member) and mute.
type RoomDetails struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Topic   string `json:"topic"`
	Private bool   `json:"private"`
	Members int    `json:"members"`
	Role    string `json:"role"`
	Muted   bool   `json:"muted"`
}

// RoomDetails reads roomID's details for userID. ErrNotFound when there is no such room.
func (s *Store) RoomDetails(ctx context.Context, roomID, userID string) (RoomDetails, error) {
	var d RoomDetails
	var role *string
	err := s.pool.QueryRow(ctx, `SELECT r.id, r.name, r.kind, r.topic, r.private,
			(SELECT count(*) FROM room_members c WHERE c.room_id = r.id), m.role, coalesce(m.muted_at IS NOT NULL, false)
		FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $2
		WHERE r.id = $1`, roomID, userID).Scan(&d.ID, &d.Name, &d.Kind, &d.Topic, &d.Private, &d.Members, &role, &d.Muted)
	if errors.Is(err, pgx.ErrNoRows) {
		return RoomDetails{}, ErrNotFound
	}
	if err != nil {
		return RoomDetails{}, fmt.Errorf("cannot read room details: %w", err)
	}
	if role != nil {
		d.Role = *role
	}
	return d, nil
}
