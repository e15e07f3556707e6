// Rooms and memberships: access checks, creation, join and leave (the membership event is
// written with the row through the outbox and published by the gateway itself), member
// lists and direct-message rooms.

package chat

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Access returns the room if u may read it: not_found for an unknown room (and for a
// private room u is not in), forbidden for a non-member of a public room.
func (s *Service) Access(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, errNoRoom()
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	if !r.Member() {
		return store.Room{}, notMember(roomID, r.Private)
	}
	return r, nil
}

// errNoRoom is the answer for a room that does not exist, and for every room that must
// look as if it did not: a DM or private room to someone outside it. Every such answer
// is this one, byte for byte, so that none tells them apart.
func errNoRoom() *protocol.Error { return protocol.NewError(protocol.CodeNotFound, "no such room") }

// notMember answers someone outside a room. Outside a DM or a private room the answer is
// the same as for a room that does not exist: a 403 would tell anyone who knows two user
// ids whether those two people talk, or that a private room of that name exists. DM ids
// are the only room ids with a ':' (created rooms are slugs).
func notMember(roomID string, private bool) *protocol.Error {
	if private || strings.HasPrefix(roomID, "dm:") {
		return errNoRoom()
	}
	return protocol.NewError(protocol.CodeForbidden, "not a member of this room")
}

// CreateRoom creates a room with u as admin and announces u's join. A private room is
// invisible to non-members and is entered by invitation only (invites.go).
func (s *Service) CreateRoom(ctx context.Context, u User, id, name string, private bool) (protocol.RoomInfo, error) {
	if !protocol.ValidSlug(id) {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "id must be 2-64 characters of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	name = strings.TrimSpace(name)
	if name == "" {
		name = id
	}
	if len(name) > 100 {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "name is longer than 100 bytes")
	}
	if strings.ContainsRune(name, 0) {
		// PostgreSQL text cannot hold NUL; the insert would fail as a retryable 503.
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeBadRequest, "name must not contain NUL characters")
	}
	// The creator's join names the role it gives them, so that persistence's view of
	// the room's roles as of its timeline starts with its owner.
	e, err := s.joinEvent(u, id, RoleOwner)
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot build membership event", err)
	}
	row, err := s.ownRow(id, e)
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot build outbox row", err)
	}
	if private {
		is, ierr := s.invites()
		if ierr != nil {
			return protocol.RoomInfo{}, ierr
		}
		err = is.CreatePrivateRoomAnnounced(ctx, id, name, u.ID, row)
	} else {
		err = s.store.CreateRoomAnnounced(ctx, id, name, event.RoomKindRoom, u.ID, row)
	}
	if errors.Is(err, store.ErrRoomExists) {
		return protocol.RoomInfo{}, protocol.NewError(protocol.CodeConflict, "a room with this id exists")
	}
	if err != nil {
		return protocol.RoomInfo{}, s.internal(ctx, "cannot create room", err)
	}
	s.publishOwn(ctx, id, e)
	return protocol.RoomInfo{ID: id, Name: name, Kind: event.RoomKindRoom, Role: RoleOwner, Private: private}, nil
}

func (s *Service) membershipEvent(u User, room, change string) (event.Envelope, error) {
	return s.selfServiceEvent(u, room, change, "")
}

// joinEvent is u's join of room giving them role.
func (s *Service) joinEvent(u User, room, role string) (event.Envelope, error) {
	return s.selfServiceEvent(u, room, event.ChangeJoined, role)
}

func (s *Service) selfServiceEvent(u User, room, change, role string) (event.Envelope, error) {
	return event.New(s.source(), event.MembershipChanged{
		RoomID: room, User: u.ID, UserName: u.Username, Change: change, By: u.ID, ChangedAt: s.cfg.Now().UTC(), Role: role,
	})
}

// changeMembership adds (joined) or removes (left) u's membership of room together with
// its membership.changed event, keyed by room for chat.submitted, in one transaction
// through the outbox: once it returns nil both are committed, and the event was published
// (publishOwn) or the outbox relay will publish it (at least once; persistence's inbox
// makes a republished one a no-op). It reports whether the membership changed; if it did not (someone else's call
// got there first), no event is written either.
func (s *Service) changeMembership(ctx context.Context, u User, room, change string) (bool, error) {
	e, err := s.membershipEvent(u, room, change)
	if err != nil {
		return false, err
	}
	row, err := s.ownRow(room, e)
	if err != nil {
		return false, err
	}
	var changed bool
	if change == event.ChangeJoined {
		changed, err = s.store.AddMemberAnnounced(ctx, room, u.ID, row)
	} else {
		changed, err = s.store.RemoveMemberAnnounced(ctx, room, u.ID, row)
	}
	if err == nil && changed {
		s.publishOwn(ctx, room, e)
	}
	return changed, err
}

// ownPublishTimeout bounds the gateway's own publish of a committed membership event; a
// slower Kafka leaves the event to the outbox relay.
const ownPublishTimeout = 5 * time.Second

// ownRow is the outbox row of a membership event that the gateway publishes itself right
// after the commit (publishOwn): the relay stays off it for a while meanwhile.
func (s *Service) ownRow(room string, e event.Envelope) (outbox.Row, error) {
	row, err := outbox.NewRow(s.cfg.Topic(topics.Submitted), room, e)
	row.RelayAfter = s.cfg.Now().Add(2 * ownPublishTimeout)
	return row, err
}

// publishOwn publishes a committed membership event and waits for Kafka, so that it is in
// the room's partition before anything the caller does next (a first message after a
// join or a room's creation is stored after the join entry, not before). If Kafka does
// not acknowledge it in time, the row goes to the outbox relay at once; the membership
// stands either way, and a second copy is dropped by persistence's inbox.
func (s *Service) publishOwn(ctx context.Context, room string, e event.Envelope) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ownPublishTimeout)
	defer cancel()
	err := s.pub.Publish(pctx, topics.Submitted, room, e)
	if err != nil {
		s.log.WarnContext(ctx, "membership event not published; left to the outbox relay", "event_id", e.ID, "room", room, "error", err)
	}
	if serr := s.store.SettleOutbox(pctx, err == nil, e.ID); serr != nil {
		s.log.WarnContext(ctx, "cannot settle outbox row; the relay republishes it later", "event_id", e.ID, "error", serr)
	}
}

// Join makes u a member of a public room and announces the join in the room's timeline:
// (a private room is joined by accepting its invitation: Join does that when u has one,
// and answers as for a room that does not exist when u has none)
// the membership row and its membership.changed event commit in one transaction (the
// outbox), and Join returns nil only after that commit, so a caller may subscribe u's
// connections on its result. Joining a room u is already in returns it and writes nothing.
// It returns the room's last_seq read before the membership changed, so a subscription
// from there includes the join entry.
func (s *Service) Join(ctx context.Context, u User, roomID string) (store.Room, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, errNoRoom()
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot read room", err)
	}
	if r.Kind == event.RoomKindDM && !r.Member() {
		return store.Room{}, notMember(roomID, r.Private)
	}
	if r.Member() {
		return r, nil
	}
	if r.Private {
		if err := s.accept(ctx, u, r); err != nil {
			return store.Room{}, err
		}
		r.Role = "member"
		return r, nil
	}
	if r.Banned {
		return store.Room{}, errBanned()
	}
	_, err = s.changeMembership(ctx, u, roomID, event.ChangeJoined)
	if errors.Is(err, store.ErrBanned) {
		return store.Room{}, errBanned()
	}
	if err != nil {
		return store.Room{}, s.internal(ctx, "cannot add member", err)
	}
	r.Role = "member"
	return r, nil
}

// Leave ends u's membership and announces it in the room's timeline, both in one
// transaction (see Join); it returns nil only after the commit, so a caller may
// unsubscribe u's connections on its result. A Leave by someone who is not (or no
// longer) a member is refused like any non-member's request (forbidden) and writes
// nothing: a retried Leave after a success changes nothing and announces nothing twice.
// The room's owner must name a successor (a username), a current member who becomes the
// owner in the same transaction: the timeline then has the ownership transfer's entry,
// then the leave's. Others' successor is ignored.
func (s *Service) Leave(ctx context.Context, u User, roomID, successor string) error {
	r, err := s.Access(ctx, u, roomID)
	if err != nil {
		return err
	}
	if r.Kind == event.RoomKindDM {
		return protocol.NewError(protocol.CodeBadRequest, "direct message rooms cannot be left")
	}
	if r.Role == RoleOwner {
		// A room keeps an owner for as long as it has an admin to answer to.
		if successor == "" {
			return errOwnerLeaves()
		}
		return s.leaveTo(ctx, u, roomID, successor)
	}
	if _, err := s.changeMembership(ctx, u, roomID, event.ChangeLeft); err != nil {
		return s.internal(ctx, "cannot remove member", err)
	}
	return nil
}

// leaveTo is the owner u's leave of roomID handing ownership to the member named
// successor.
func (s *Service) leaveTo(ctx context.Context, u User, roomID, successor string) error {
	rs, err := s.roles()
	if err != nil {
		return err
	}
	to, err := s.userNamed(ctx, successor)
	if err != nil {
		return err
	}
	if to.ID == u.ID {
		return protocol.NewError(protocol.CodeBadRequest, "successor: name another member of the room")
	}
	tr, err := s.store.Room(ctx, roomID, to.ID)
	if err != nil {
		return s.internal(ctx, "cannot read room", err)
	}
	if !tr.Member() {
		return protocol.NewError(protocol.CodeNotFound, successor+" is not a member of this room")
	}
	owner := s.roomChange(to, u, roomID, event.ChangeOwner)
	owner.Role = RoleOwner
	leave := event.MembershipChanged{RoomID: roomID, User: u.ID, UserName: u.Username, Change: event.ChangeLeft, By: u.ID, ChangedAt: owner.ChangedAt}
	moved, err := s.announceAll(ctx, roomID, []event.MembershipChanged{owner, leave}, func(rows ...outbox.Row) (bool, error) {
		return rs.TransferAndLeave(ctx, roomID, u.ID, to.ID, rows...)
	})
	if err != nil {
		return s.internal(ctx, "cannot hand over and leave", err)
	}
	if !moved {
		// u lost ownership, or the successor left, since the checks above.
		return protocol.NewError(protocol.CodeConflict, "ownership changed meanwhile; reload the members and try again")
	}
	return nil
}

// Member is one entry of a member list.
type Member struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Role     string    `json:"role"`
	Muted    bool      `json:"muted"`
	JoinedAt time.Time `json:"joined_at"`
}

// Members lists a room's members; DM and private room member lists are for their members only.
func (s *Service) Members(ctx context.Context, u User, roomID string) ([]Member, error) {
	r, err := s.store.Room(ctx, roomID, u.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoRoom()
	}
	if err != nil {
		return nil, s.internal(ctx, "cannot read room", err)
	}
	if (r.Kind == event.RoomKindDM || r.Private) && !r.Member() {
		return nil, notMember(roomID, r.Private)
	}
	ms, err := s.store.Members(ctx, roomID)
	if err != nil {
		return nil, s.internal(ctx, "cannot list members", err)
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{ID: m.UserID, Username: m.Username, Role: m.Role, Muted: m.Muted, JoinedAt: m.JoinedAt}
	}
	return out, nil
}

// RoomsOf lists u's rooms.
func (s *Service) RoomsOf(ctx context.Context, u User) ([]store.Room, error) {
	rs, err := s.store.RoomsOf(ctx, u.ID)
	if err != nil {
		return nil, s.internal(ctx, "cannot list rooms", err)
	}
	return rs, nil
}

// Rooms lists u's rooms (private ones included) and the public rooms (never private ones).
func (s *Service) Rooms(ctx context.Context, u User) (protocol.RoomList, error) {
	mine, err := s.RoomsOf(ctx, u)
	if err != nil {
		return protocol.RoomList{}, err
	}
	pub, err := s.store.PublicRooms(ctx, 500)
	if err != nil {
		return protocol.RoomList{}, s.internal(ctx, "cannot list rooms", err)
	}
	list := protocol.RoomList{Base: protocol.Base{Type: protocol.TypeRooms}, Mine: []protocol.RoomInfo{}, Public: []protocol.RoomInfo{}}
	for _, r := range mine {
		marker, unread := r.LastReadSeq, r.Unread
		list.Mine = append(list.Mine, protocol.RoomInfo{ID: r.ID, Name: r.Name, Kind: r.Kind, LastSeq: r.LastSeq, Role: r.Role,
			Private: r.Private, Members: r.Members, LastReadSeq: &marker, Unread: &unread})
	}
	for _, r := range pub {
		list.Public = append(list.Public, protocol.RoomInfo{ID: r.ID, Name: r.Name, Kind: r.Kind, LastSeq: r.LastSeq})
	}
	return list, nil
}

// DMRoomID is the id of the DM room of two users: "dm:<a>:<b>" with the ids sorted, so
// both sides compute the same room.
func DMRoomID(a, b string) string {
	ids := []string{a, b}
	slices.Sort(ids)
	return "dm:" + ids[0] + ":" + ids[1]
}

// OpenDM returns the DM room between u and the user named to, creating it on first use.
func (s *Service) OpenDM(ctx context.Context, u User, to string) (store.Room, User, error) {
	if !protocol.ValidUsername(to) {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeBadRequest, "not a valid username")
	}
	other, err := s.store.UserByName(ctx, to)
	if errors.Is(err, store.ErrNotFound) {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeNotFound, "no such user")
	}
	if err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot read user", err)
	}
	if other.ID == u.ID {
		return store.Room{}, User{}, protocol.NewError(protocol.CodeBadRequest, "cannot message yourself")
	}
	id := DMRoomID(u.ID, other.ID)
	names := []string{u.Username, other.Username}
	slices.Sort(names)
	if _, err := s.store.EnsureDM(ctx, id, names[0]+" & "+names[1], u.ID, other.ID); err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot create dm", err)
	}
	r, err := s.store.Room(ctx, id, u.ID)
	if err != nil {
		return store.Room{}, User{}, s.internal(ctx, "cannot read dm", err)
	}
	return r, User{ID: other.ID, Username: other.Username}, nil
}
