// A room's details for the asking user (GET /api/rooms/{id}).

package chat

import (
	"context"
	"errors"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// RoomDetails returns roomID's name, topic, privacy, member count and u's role and mute.
// Like its member list, a public room's details are public; a DM's or a private room's are
// for their members only (to anyone else, no such room).
func (s *Service) RoomDetails(ctx context.Context, u User, roomID string) (store.RoomDetails, error) {
	ds, ok := s.store.(interface {
		RoomDetails(ctx context.Context, roomID, userID string) (store.RoomDetails, error)
	})
	if !ok {
		return store.RoomDetails{}, protocol.NewError(protocol.CodeUnavailable, "room details are not available").Retry()
	}
	d, err := ds.RoomDetails(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.RoomDetails{}, errNoRoom()
	}
	if err != nil {
		return store.RoomDetails{}, s.internal(ctx, "cannot read room", err)
	}
	if (d.Kind == event.RoomKindDM || d.Private) && d.Role == "" {
		return store.RoomDetails{}, notMember(roomID, d.Private)
	}
	return d, nil
}
