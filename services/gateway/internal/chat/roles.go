// Roles: owner > admin > member. Owners and admins moderate; each acts only on members
// whose role is below their own, so an admin can never undo an owner's decision and two
// admins cannot remove each other. A muted member reads but may not post.

package chat

import (
	"context"
	"time"

	"github.com/kchat/kchat/pkg/protocol"
)

// Room roles, as stored in room_members.role.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// rank orders roles; a non-member ("") ranks below every member.
func rank(role string) int {
	switch role {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// isModerator reports whether role may kick, ban, mute and invite.
func isModerator(role string) bool { return rank(role) >= rank(RoleAdmin) }

// errMuted answers a muted member's message, reply, edit or reaction.
func errMuted() *protocol.Error {
	return protocol.NewError(protocol.CodeForbidden, "you are muted in this room")
}

// errOwnerLeaves answers the owner's leave: ownership must be handed on first.
func errOwnerLeaves() *protocol.Error {
	return protocol.NewError(protocol.CodeConflict, "you own this room: transfer ownership first (POST /api/rooms/{id}/transfer)")
}

// RoleStore is the part of *store.Store that role changes and muting use.
type RoleStore interface {
	SetRole(ctx context.Context, roomID, userID, role string) (bool, error)
	SetMuted(ctx context.Context, roomID, userID, by string, muted bool, now time.Time) (bool, error)
	TransferOwnership(ctx context.Context, roomID, from, to string) (bool, error)
}

func (s *Service) roles() (RoleStore, error) {
	rs, ok := s.store.(RoleStore)
	if !ok {
		return nil, protocol.NewError(protocol.CodeUnavailable, "roles are not available").Retry()
	}
	return rs, nil
}

// SetRole makes the member named username of roomID an admin or a member. u must rank
// above both the target's current role and the new one: an admin changes nobody's role
// (members are below them, but admin is not), an owner promotes members and demotes
// admins. Ownership moves only by a transfer. It reports whether the role changed.
func (s *Service) SetRole(ctx context.Context, u User, roomID, username, role string) (User, bool, error) {
	if role != RoleAdmin && role != RoleMember {
		return User{}, false, protocol.NewError(protocol.CodeBadRequest, "role: must be admin or member (ownership moves by a transfer)")
	}
	rs, err := s.roles()
	if err != nil {
		return User{}, false, err
	}
	to, mine, theirs, err := s.modTargetRoles(ctx, u, roomID, username)
	if err != nil {
		return User{}, false, err
	}
	switch {
	case theirs == "":
		return User{}, false, protocol.NewError(protocol.CodeNotFound, username+" is not a member of this room")
	case rank(role) >= rank(mine):
		return User{}, false, protocol.NewError(protocol.CodeForbidden, "you may only give roles below yours ("+mine+")")
	}
	changed, err := rs.SetRole(ctx, roomID, to.ID, role)
	if err != nil {
		return User{}, false, s.internal(ctx, "cannot set role", err)
	}
	return to, changed, nil
}

// Mute stops the member named username of roomID from posting (muted true) or lets them
// again; u must rank above them. It reports whether anything changed, so a retry is no
// error.
func (s *Service) Mute(ctx context.Context, u User, roomID, username string, muted bool) (User, bool, error) {
	rs, err := s.roles()
	if err != nil {
		return User{}, false, err
	}
	to, _, theirs, err := s.modTargetRoles(ctx, u, roomID, username)
	if err != nil {
		return User{}, false, err
	}
	if theirs == "" {
		return User{}, false, protocol.NewError(protocol.CodeNotFound, username+" is not a member of this room")
	}
	changed, err := rs.SetMuted(ctx, roomID, to.ID, u.ID, muted, s.cfg.Now().UTC())
	if err != nil {
		return User{}, false, s.internal(ctx, "cannot mute", err)
	}
	return to, changed, nil
}

// Transfer makes the member named username the owner of roomID; u, its owner, becomes an
// admin. Transferring to oneself is refused like any self-moderation.
func (s *Service) Transfer(ctx context.Context, u User, roomID, username string) (User, error) {
	rs, err := s.roles()
	if err != nil {
		return User{}, err
	}
	to, mine, theirs, err := s.modTargetRoles(ctx, u, roomID, username)
	if err != nil {
		return User{}, err
	}
	switch {
	case mine != RoleOwner:
		return User{}, protocol.NewError(protocol.CodeForbidden, "only the room owner may transfer ownership")
	case theirs == "":
		return User{}, protocol.NewError(protocol.CodeNotFound, username+" is not a member of this room")
	}
	moved, err := rs.TransferOwnership(ctx, roomID, u.ID, to.ID)
	if err != nil {
		return User{}, s.internal(ctx, "cannot transfer ownership", err)
	}
	if !moved {
		// u lost ownership, or the target left, since the checks above.
		return User{}, protocol.NewError(protocol.CodeConflict, "ownership changed meanwhile; reload the members and try again")
	}
	return to, nil
}
