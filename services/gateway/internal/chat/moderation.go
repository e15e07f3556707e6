// Moderation by room admins: kick a member, ban a user (removing them if they are a
// member, and keeping them out until the ban is lifted), lift a ban. A removal is a
// membership change with its timeline entry (a leave naming who did it), committed
// through the outbox like a leave, so every gateway stops delivering the room to the
// removed user's connections when the entry arrives; the caller unsubscribes this
// gateway's connections at once.

package chat

import (
	"context"
	"errors"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// errBanned answers a banned user's join of a public room. (A private room does not
// exist for them: errNoRoom.)
func errBanned() *protocol.Error {
	return protocol.NewError(protocol.CodeForbidden, "you are banned from this room")
}

// ModerationStore is the part of *store.Store that moderation uses; New takes it from the
// Store when it has it (see InviteStore).
type ModerationStore interface {
	RemoveMemberByAdmin(ctx context.Context, roomID, userID, by string, ban bool, now time.Time, announce ...outbox.Row) (bool, error)
	Unban(ctx context.Context, roomID, userID string) (bool, error)
}

var _ ModerationStore = (*store.Store)(nil)

func (s *Service) moderation() (ModerationStore, error) {
	ms, ok := s.store.(ModerationStore)
	if !ok {
		return nil, protocol.NewError(protocol.CodeUnavailable, "moderation is not available").Retry()
	}
	return ms, nil
}

// modTarget checks a moderation request by u about the user named username in roomID:
// u must be an owner or admin of the room (public or private; DMs have none), the target
// someone else whose role is below u's (an admin acts on members only, an owner on admins
// and members).
func (s *Service) modTarget(ctx context.Context, u User, roomID, username string) (User, error) {
	to, _, _, err := s.modTargetRoles(ctx, u, roomID, username)
	return to, err
}

// modTargetRoles is modTarget that also returns u's role and the target's ("" for a
// non-member).
func (s *Service) modTargetRoles(ctx context.Context, u User, roomID, username string) (User, string, string, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return User{}, "", "", errNoRoom()
	}
	if err != nil {
		return User{}, "", "", s.internal(ctx, "cannot read room", err)
	}
	switch {
	case !r.Member():
		return User{}, "", "", notMember(roomID, r.Private)
	case r.Kind == event.RoomKindDM:
		return User{}, "", "", protocol.NewError(protocol.CodeBadRequest, "direct message rooms have no admins")
	case !isModerator(r.Role):
		return User{}, "", "", protocol.NewError(protocol.CodeForbidden, "only a room owner or admin may do this")
	}
	to, err := s.userNamed(ctx, username)
	if err != nil {
		return User{}, "", "", err
	}
	if to.ID == u.ID {
		return User{}, "", "", protocol.NewError(protocol.CodeBadRequest, "you cannot kick or ban yourself")
	}
	tr, err := s.store.Room(ctx, roomID, to.ID)
	if err != nil {
		return User{}, "", "", s.internal(ctx, "cannot read room", err)
	}
	if rank(tr.Role) >= rank(r.Role) {
		return User{}, "", "", protocol.NewError(protocol.CodeForbidden, "you may only act on members whose role is below yours ("+r.Role+")")
	}
	return to, r.Role, tr.Role, nil
}

// Kick removes the member named username from roomID (u must be its admin) and announces
// it in the timeline. It returns the user and whether they were a member: kicking someone
// who is not (any more) changes nothing and is no error, so a retry succeeds.
func (s *Service) Kick(ctx context.Context, u User, roomID, username string) (User, bool, error) {
	return s.remove(ctx, u, roomID, username, false)
}

// Ban bans the user named username from roomID (u must be its admin), removing them with
// a timeline entry if they are a member (the bool), and dropping any invitation of theirs.
// Until Unban they cannot join, be invited or be added. Banning twice changes nothing.
func (s *Service) Ban(ctx context.Context, u User, roomID, username string) (User, bool, error) {
	return s.remove(ctx, u, roomID, username, true)
}

func (s *Service) remove(ctx context.Context, u User, roomID, username string, ban bool) (User, bool, error) {
	ms, err := s.moderation()
	if err != nil {
		return User{}, false, err
	}
	to, err := s.modTarget(ctx, u, roomID, username)
	if err != nil {
		return User{}, false, err
	}
	change := event.ChangeKicked
	if ban {
		change = event.ChangeBanned
	}
	now := s.cfg.Now().UTC()
	removed, err := s.announce(ctx, to, u, roomID, change, func(row outbox.Row) (bool, error) {
		return ms.RemoveMemberByAdmin(ctx, roomID, to.ID, u.ID, ban, now, row)
	})
	if err != nil {
		return User{}, false, s.internal(ctx, "cannot remove member", err)
	}
	return to, removed, nil
}

// Unban lifts the ban of the user named username from roomID (u must be its admin) and
// reports whether there was one; lifting what is not there is no error.
func (s *Service) Unban(ctx context.Context, u User, roomID, username string) (bool, error) {
	ms, err := s.moderation()
	if err != nil {
		return false, err
	}
	to, err := s.modTarget(ctx, u, roomID, username)
	if err != nil {
		return false, err
	}
	lifted, err := ms.Unban(ctx, roomID, to.ID)
	if err != nil {
		return false, s.internal(ctx, "cannot unban", err)
	}
	return lifted, nil
}
