// Invitations to private rooms: an admin invites a user by name, the invitee lists,
// accepts (a membership change with its join entry, exactly like a join) or declines,
// the admin revokes or adds someone directly. Someone outside a private room gets the
// answer of a room that does not exist (errNoRoom) for everything about it.

package chat

import (
	"context"
	"errors"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// errNoInvite answers an accept without an invitation usable now: none, expired,
// revoked, declined, or a room that does not exist, all alike (404), so that the answer
// tells nobody whether a private room exists.
func errNoInvite() *protocol.Error {
	return protocol.NewError(protocol.CodeNotFound, "no such invitation")
}

func (s *Service) invites() (InviteStore, error) {
	if s.cfg.Invites == nil {
		return nil, protocol.NewError(protocol.CodeUnavailable, "private rooms are not available").Retry()
	}
	return s.cfg.Invites, nil
}

// adminRoom reads roomID for an invitation change by u: it must be a private room u is
// an admin of. Outsiders get errNoRoom; members who are not admins, forbidden; a public
// room or a DM, bad_request (they take no invitations).
func (s *Service) adminRoom(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, errNoRoom()
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	switch {
	case (r.Private || r.Kind == event.RoomKindDM) && !r.Member():
		return store.Room{}, errNoRoom()
	case !r.Private:
		return store.Room{}, protocol.NewError(protocol.CodeBadRequest, "only private rooms take invitations; anyone may join a public room")
	case !isModerator(r.Role):
		return store.Room{}, protocol.NewError(protocol.CodeForbidden, "only a room admin may do this")
	}
	return r, nil
}

// userNamed finds the account named username: 404 for none.
func (s *Service) userNamed(ctx context.Context, username string) (User, error) {
	if !protocol.ValidUsername(username) {
		return User{}, protocol.NewError(protocol.CodeBadRequest, "not a valid username")
	}
	su, err := s.store.UserByName(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		return User{}, protocol.NewError(protocol.CodeNotFound, "no such user")
	}
	if err != nil {
		return User{}, s.internal(ctx, "cannot read user", err)
	}
	return User{ID: su.ID, Username: su.Username}, nil
}

// Invite invites the user named username to the private room roomID, of which u must be
// an admin. The invitation can be accepted until Config.InviteTTL from now. Conflict when
// they are a member already or have a pending invitation (a retried invite: the first
// one stands).
func (s *Service) Invite(ctx context.Context, u User, roomID, username string) (protocol.Invite, error) {
	is, err := s.invites()
	if err != nil {
		return protocol.Invite{}, err
	}
	r, err := s.adminRoom(ctx, u, roomID)
	if err != nil {
		return protocol.Invite{}, err
	}
	to, err := s.userNamed(ctx, username)
	if err != nil {
		return protocol.Invite{}, err
	}
	now := s.cfg.Now().UTC()
	exp := now.Add(s.cfg.InviteTTL)
	err = is.CreateInvite(ctx, roomID, to.ID, u.ID, now, exp)
	switch {
	case errors.Is(err, store.ErrAlreadyMember):
		return protocol.Invite{}, protocol.NewError(protocol.CodeConflict, username+" is a member already")
	case errors.Is(err, store.ErrAlreadyInvited):
		return protocol.Invite{}, protocol.NewError(protocol.CodeConflict, username+" is invited already")
	case errors.Is(err, store.ErrBanned):
		return protocol.Invite{}, protocol.NewError(protocol.CodeConflict, username+" is banned from this room; lift the ban first")
	case err != nil:
		return protocol.Invite{}, s.internal(ctx, "cannot invite", err)
	}
	return protocol.Invite{Room: roomID, RoomName: r.Name, Username: to.Username, InvitedBy: u.Username, CreatedAt: now, ExpiresAt: exp}, nil
}

// Invites lists u's pending invitations that have not expired, oldest first.
func (s *Service) Invites(ctx context.Context, u User) ([]protocol.Invite, error) {
	is, err := s.invites()
	if err != nil {
		return nil, err
	}
	list, err := is.PendingInvites(ctx, u.ID, s.cfg.Now().UTC())
	if err != nil {
		return nil, s.internal(ctx, "cannot list invites", err)
	}
	out := make([]protocol.Invite, len(list))
	for i, v := range list {
		out[i] = protocol.Invite{Room: v.RoomID, RoomName: v.RoomName, InvitedBy: v.InvitedByName, CreatedAt: v.CreatedAt, ExpiresAt: v.ExpiresAt}
	}
	return out, nil
}

// AcceptInvite makes u a member of the private room roomID through u's pending
// invitation and announces the join in the room's timeline, like Join (one transaction
// with the outbox; it returns after the commit, with the room's last_seq read before).
// Accepting a room u is a member of already returns it and writes nothing, so a retried
// accept succeeds. Without a usable invitation: not_found, "no such invitation".
func (s *Service) AcceptInvite(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, errNoInvite()
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	if r.Member() {
		return r, nil
	}
	if !r.Private {
		return store.Room{}, errNoInvite()
	}
	if err := s.accept(ctx, u, r); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeNotFound {
			return store.Room{}, errNoInvite()
		}
		return store.Room{}, err
	}
	r.Role = "member"
	return r, nil
}

// accept adds u to the private room r through u's invitation, with its join event;
// errNoRoom when u has no invitation usable now (Join's answer to an outsider).
func (s *Service) accept(ctx context.Context, u User, r store.Room) error {
	is, err := s.invites()
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	_, err = s.announce(ctx, u, u, r.ID, event.ChangeJoined, func(row outbox.Row) (bool, error) {
		return is.AcceptInviteAnnounced(ctx, r.ID, u.ID, now, row)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errNoRoom()
	}
	if err != nil {
		return s.internal(ctx, "cannot accept invite", err)
	}
	return nil
}

// DeclineInvite drops u's pending invitation to roomID. Declining what is not pending
// (declined already, revoked, expired, never sent) changes nothing and is no error, so a
// retried decline succeeds and the answer tells nothing about the room.
func (s *Service) DeclineInvite(ctx context.Context, u User, roomID string) error {
	is, err := s.invites()
	if err != nil {
		return err
	}
	if _, err := is.DeletePendingInvite(ctx, roomID, u.ID); err != nil {
		return s.internal(ctx, "cannot decline invite", err)
	}
	return nil
}

// RevokeInvite withdraws the pending invitation of the user named username to the
// private room roomID, of which u must be an admin. It reports whether one was pending;
// revoking what is not pending is no error (a retried revoke succeeds).
func (s *Service) RevokeInvite(ctx context.Context, u User, roomID, username string) (bool, error) {
	is, err := s.invites()
	if err != nil {
		return false, err
	}
	if _, err := s.adminRoom(ctx, u, roomID); err != nil {
		return false, err
	}
	to, err := s.userNamed(ctx, username)
	if err != nil {
		return false, err
	}
	revoked, err := is.DeletePendingInvite(ctx, roomID, to.ID)
	if err != nil {
		return false, s.internal(ctx, "cannot revoke invite", err)
	}
	return revoked, nil
}

// AddMember is an admin's direct add of the user named username to the private room
// roomID: no invitation to accept; the join entry names u as the one who made it. Adding
// a member changes nothing and is no error. It returns the room (last_seq read before
// the change) and the added user, whose connections the caller subscribes.
func (s *Service) AddMember(ctx context.Context, u User, roomID, username string) (store.Room, User, error) {
	is, err := s.invites()
	if err != nil {
		return store.Room{}, User{}, err
	}
	r, err := s.adminRoom(ctx, u, roomID)
	if err != nil {
		return store.Room{}, User{}, err
	}
	to, err := s.userNamed(ctx, username)
	if err != nil {
		return store.Room{}, User{}, err
	}
	now := s.cfg.Now().UTC()
	_, err = s.announce(ctx, to, u, roomID, event.ChangeJoined, func(row outbox.Row) (bool, error) {
		return is.AddMemberByAdmin(ctx, roomID, to.ID, u.ID, now, row)
	})
	if errors.Is(err, store.ErrBanned) {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeConflict, username+" is banned from this room; lift the ban first")
	}
	if err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot add member", err)
	}
	return r, to, nil
}

// announce writes the membership change of who in room (made by by) with write, which
// must commit the membership change and the outbox row together and report whether
// anything changed; then it publishes the event itself (publishOwn), as changeMembership
// does.
func (s *Service) announce(ctx context.Context, who, by User, room, change string, write func(outbox.Row) (bool, error)) (bool, error) {
	m := event.MembershipChanged{RoomID: room, User: who.ID, UserName: who.Username, Change: change, By: by.ID, ChangedAt: s.cfg.Now().UTC()}
	if by.ID != who.ID {
		m.ByName = by.Username
	}
	e, err := event.New(s.source(), m)
	if err != nil {
		return false, err
	}
	row, err := s.ownRow(room, e)
	if err != nil {
		return false, err
	}
	changed, err := write(row)
	if err == nil && changed {
		s.publishOwn(ctx, room, e)
	}
	return changed, err
}
