// Roles: owner > admin > member. Owners and admins moderate; each acts only on members
// whose role is below their own, so an admin can never undo an owner's decision and two
// admins cannot remove each other. A muted member reads but may not post.

package chat

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Room roles, as stored in room_members.role.
const (
	RoleOwner  = event.RoleOwner
	RoleAdmin  = event.RoleAdmin
	RoleMember = event.RoleMember
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

// errOwnerLeaves answers the owner's leave without a successor: ownership must be handed
// on first, or with the leave.
func errOwnerLeaves() *protocol.Error {
	return protocol.NewError(protocol.CodeConflict,
		"you own this room: name a successor (the leave's successor, a member's username) or transfer ownership first (POST /api/rooms/{id}/transfer)")
}

// RoleStore is the part of *store.Store that role changes and muting use.
type RoleStore interface {
	SetRole(ctx context.Context, roomID, userID, role string, announce ...outbox.Row) (bool, error)
	SetMuted(ctx context.Context, roomID, userID, by string, muted bool, now time.Time, announce ...outbox.Row) (bool, error)
	TransferOwnership(ctx context.Context, roomID, from, to string, announce ...outbox.Row) (bool, error)
	TransferAndLeave(ctx context.Context, roomID, from, to string, announce ...outbox.Row) (bool, error)
}

var _ RoleStore = (*store.Store)(nil)

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
	m := s.roomChange(to, u, roomID, event.ChangeRole)
	m.Role = role
	changed, err := s.announceAll(ctx, roomID, []event.MembershipChanged{m}, func(rows ...outbox.Row) (bool, error) {
		return rs.SetRole(ctx, roomID, to.ID, role, rows...)
	})
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
	change := event.ChangeUnmuted
	if muted {
		change = event.ChangeMuted
	}
	now := s.cfg.Now().UTC()
	m := s.roomChange(to, u, roomID, change)
	changed, err := s.announceAll(ctx, roomID, []event.MembershipChanged{m}, func(rows ...outbox.Row) (bool, error) {
		return rs.SetMuted(ctx, roomID, to.ID, u.ID, muted, now, rows...)
	})
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
	m := s.roomChange(to, u, roomID, event.ChangeOwner)
	m.Role = RoleOwner
	moved, err := s.announceAll(ctx, roomID, []event.MembershipChanged{m}, func(rows ...outbox.Row) (bool, error) {
		return rs.TransferOwnership(ctx, roomID, u.ID, to.ID, rows...)
	})
	if err != nil {
		return User{}, s.internal(ctx, "cannot transfer ownership", err)
	}
	if !moved {
		// u lost ownership, or the target left, since the checks above.
		return User{}, protocol.NewError(protocol.CodeConflict, "ownership changed meanwhile; reload the members and try again")
	}
	return to, nil
}

// MaxTopicBytes bounds a room's topic.
const MaxTopicBytes = 500

// RoomSettings are the fields of a settings change; nil fields stay as they are.
type RoomSettings struct {
	Name    *string `json:"name"`
	Topic   *string `json:"topic"`
	Private *bool   `json:"private"`
}

// validate refuses what cannot be stored rather than altering it.
func (rs RoomSettings) validate() *protocol.Error {
	switch {
	case rs.Name == nil && rs.Topic == nil && rs.Private == nil:
		return protocol.NewError(protocol.CodeBadRequest, "give at least one of name, topic, private")
	case rs.Name != nil && strings.TrimSpace(*rs.Name) == "":
		return protocol.NewError(protocol.CodeBadRequest, "name: must not be empty")
	case rs.Name != nil && len(*rs.Name) > 100:
		return protocol.NewError(protocol.CodeBadRequest, "name: is longer than 100 bytes")
	case rs.Topic != nil && len(*rs.Topic) > MaxTopicBytes:
		return protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("topic: is longer than %d bytes", MaxTopicBytes))
	case rs.Name != nil && strings.ContainsRune(*rs.Name, 0), rs.Topic != nil && strings.ContainsRune(*rs.Topic, 0):
		return protocol.NewError(protocol.CodeBadRequest, "name and topic must not contain NUL characters")
	}
	return nil
}

// SettingsStore is the part of *store.Store that room settings use.
type SettingsStore interface {
	UpdateRoom(ctx context.Context, roomID string, name, topic *string, private *bool,
		announce func(event.RoomSettingsChange) (outbox.Row, error)) (store.RoomSettings, *event.RoomSettingsChange, error)
}

var _ SettingsStore = (*store.Store)(nil)

// UpdatedRoom answers a settings change: the room's settings afterwards, and whether the
// request changed any of them (setting what is set already writes no timeline entry).
type UpdatedRoom struct {
	store.RoomSettings
	Changed bool `json:"changed"`
}

// UpdateRoom renames roomID, sets its topic or its privacy; u must be its owner or an
// admin. It returns the settings as they are afterwards. The settings that changed are a
// room_change entry of the timeline (see roomchanges.go).
func (s *Service) UpdateRoom(ctx context.Context, u User, roomID string, rs RoomSettings) (UpdatedRoom, error) {
	if e := rs.validate(); e != nil {
		return UpdatedRoom{}, e
	}
	ss, ok := s.store.(SettingsStore)
	if !ok {
		return UpdatedRoom{}, protocol.NewError(protocol.CodeUnavailable, "room settings are not available").Retry()
	}
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return UpdatedRoom{}, errNoRoom()
	}
	if err != nil {
		return UpdatedRoom{}, s.internal(ctx, "cannot read room", err)
	}
	switch {
	case !r.Member():
		return UpdatedRoom{}, notMember(roomID, r.Private)
	case r.Kind == event.RoomKindDM:
		return UpdatedRoom{}, protocol.NewError(protocol.CodeBadRequest, "direct message rooms have no settings")
	case !isModerator(r.Role):
		return UpdatedRoom{}, protocol.NewError(protocol.CodeForbidden, "only a room owner or admin may do this")
	}
	var e event.Envelope
	out, diff, err := ss.UpdateRoom(ctx, roomID, rs.Name, rs.Topic, rs.Private, func(d event.RoomSettingsChange) (outbox.Row, error) {
		m := s.roomChange(u, u, roomID, event.ChangeSettings)
		m.Settings = &d
		var err error
		if e, err = event.New(s.source(), m); err != nil {
			return outbox.Row{}, err
		}
		return s.ownRow(roomID, e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return UpdatedRoom{}, errNoRoom()
	}
	if err != nil {
		return UpdatedRoom{}, s.internal(ctx, "cannot update room", err)
	}
	if diff != nil {
		s.publishOwn(ctx, roomID, e)
	}
	return UpdatedRoom{RoomSettings: out, Changed: diff != nil}, nil
}

// Directory limits.
const (
	DefaultDirectoryLimit = 20
	MaxDirectoryLimit     = 100
)

// DirectoryPage is a page of the room directory; Cursor, when set, fetches the next.
type DirectoryPage struct {
	Rooms  []store.DirectoryRoom `json:"rooms"`
	Cursor string                `json:"cursor,omitempty"`
}

// Directory pages through the public rooms matching q. The cursor is opaque to clients:
// the last id of the previous page, encoded.
func (s *Service) Directory(ctx context.Context, q, cursor string, limit int) (DirectoryPage, error) {
	ds, ok := s.store.(interface {
		Directory(ctx context.Context, q, after string, limit int) ([]store.DirectoryRoom, error)
	})
	if !ok {
		return DirectoryPage{}, protocol.NewError(protocol.CodeUnavailable, "the directory is not available").Retry()
	}
	switch {
	case limit == 0:
		limit = DefaultDirectoryLimit
	case limit < 0 || limit > MaxDirectoryLimit:
		return DirectoryPage{}, protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("limit: must be between 1 and %d", MaxDirectoryLimit))
	}
	if len(q) > 100 || strings.ContainsRune(q, 0) {
		return DirectoryPage{}, protocol.NewError(protocol.CodeBadRequest, "q: must be at most 100 bytes without NUL")
	}
	after := ""
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(b) == 0 {
			return DirectoryPage{}, protocol.NewError(protocol.CodeBadRequest, "cursor: not a cursor this directory gave")
		}
		after = string(b)
	}
	rooms, err := ds.Directory(ctx, q, after, limit+1)
	if err != nil {
		return DirectoryPage{}, s.internal(ctx, "cannot list the directory", err)
	}
	page := DirectoryPage{Rooms: rooms}
	if len(rooms) > limit {
		page.Rooms = rooms[:limit]
		page.Cursor = base64.RawURLEncoding.EncodeToString([]byte(rooms[limit-1].ID))
	}
	if page.Rooms == nil {
		page.Rooms = []store.DirectoryRoom{}
	}
	return page, nil
}
