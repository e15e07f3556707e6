// Authentication of a connection (hello, auth) and what a hello brings: the welcome,
// pending notifications and the subscriptions the client resumes.

package hub

import (
	"context"
	"errors"
	"slices"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// authenticate binds the connection to the token's user and answers welcome. A bad token
// closes the connection with 4001: a client holding a forged or stale token must log in
// again, and retrying on this connection cannot help.
func (s *Session) authenticate(ctx context.Context, token, reconnect, ref string) (chat.User, bool) {
	kind, value := auth.KindSession, token
	if reconnect != "" {
		kind, value = auth.KindReconnect, reconnect
	}
	u, err := s.hub.chat.Authenticate(ctx, value, kind)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeInvalidToken {
			s.rejectAuth(ref, pe)
		} else {
			s.replyErr(ref, err)
		}
		return chat.User{}, false
	}
	s.mu.Lock()
	if s.user != nil && s.user.ID != u.ID {
		s.mu.Unlock()
		s.replyErr(ref, protocol.NewError(protocol.CodeBadRequest, "connection is already authenticated as another user"))
		return chat.User{}, false
	}
	first := s.user == nil
	s.user = &u
	s.mu.Unlock()
	if first {
		s.hub.bind(s, u)
	}
	s.welcome(ctx, u, ref)
	return u, true
}

func (s *Session) rejectAuth(ref string, pe *protocol.Error) {
	e := *pe
	e.Base = protocol.Base{Type: protocol.TypeError, Ref: ref}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	s.out.Close(protocol.CloseUnauthorized, protocol.ReasonUnauthorized, protocol.Encode(&e), false)
}

func (s *Session) welcome(ctx context.Context, u chat.User, ref string) {
	t, err := s.hub.chat.NewReconnectToken(ctx, u)
	if err != nil {
		s.replyErr(ref, err)
		return
	}
	s.reply(protocol.TypeWelcome, protocol.Welcome{
		Base: protocol.Base{Type: protocol.TypeWelcome, Ref: ref},
		User: protocol.User{ID: u.ID, Username: u.Username}, ConnID: s.id, GatewayID: s.hub.cfg.GatewayID,
		ReconnectToken: t.Value, ReconnectUntil: t.ExpiresAt, ServerTime: s.hub.cfg.Now().UTC(), Limits: s.hub.cfg.Limits,
		Invites: s.pendingInvites(ctx, u),
	})
}

// inviteLister is implemented by a Chat that keeps private rooms' invitations
// (*chat.Service does).
type inviteLister interface {
	Invites(ctx context.Context, u chat.User) ([]protocol.Invite, error)
}

// pendingInvites lists u's pending invitations for the welcome. Best effort: a failure
// (logged by the chat logic) leaves them out, and GET /api/me/invites has them too.
func (s *Session) pendingInvites(ctx context.Context, u chat.User) []protocol.Invite {
	il, ok := s.hub.chat.(inviteLister)
	if !ok {
		return nil
	}
	list, err := il.Invites(ctx, u)
	if err != nil {
		return nil
	}
	return list
}

func (s *Session) onHello(ctx context.Context, f *protocol.Hello) {
	var u chat.User
	if f.Token != "" || f.ReconnectToken != "" {
		var ok bool
		if u, ok = s.authenticate(ctx, f.Token, f.ReconnectToken, f.Ref); !ok {
			return
		}
	} else {
		cur := s.User()
		if cur == nil {
			s.replyErr(f.Ref, protocol.NewError(protocol.CodeBadRequest, "token or reconnect_token is required"))
			return
		}
		u = *cur
		s.welcome(ctx, u, f.Ref)
	}
	// What the user missed while away comes first, before the backlogs of the rooms.
	s.sendPending(ctx, u)
	if f.Rooms != nil {
		rooms := make([]string, 0, len(f.Rooms))
		for r := range f.Rooms {
			rooms = append(rooms, r)
		}
		slices.Sort(rooms)
		for _, r := range rooms {
			since := f.Rooms[r]
			s.subscribe(ctx, u, r, &since, f.Ref)
		}
		return
	}
	rooms, err := s.hub.chat.RoomsOf(ctx, u)
	if err != nil {
		s.replyErr(f.Ref, err)
		return
	}
	for _, r := range rooms {
		s.subscribe(ctx, u, r.ID, nil, f.Ref)
	}
}

// sendPending delivers u's unread notifications (the newest PendingNotifications, at most
// half the send queue so that they cannot crowd out the room backlogs) as notification
// frames with pending:true. They stay unread until the client marks them read, so every
// hello gets them again: a client that crashed before showing them loses nothing.
func (s *Session) sendPending(ctx context.Context, u chat.User) {
	limit := min(s.hub.cfg.PendingNotifications, max(s.out.Queue().Limit()/2, 1))
	ns, err := s.hub.chat.PendingNotifications(ctx, u, limit)
	if err != nil {
		// Not worth failing the hello for: the client can list them.
		s.log.Warn("cannot read pending notifications", "user", u.ID, "error", err)
		return
	}
	for _, n := range ns {
		s.deliverNotification(n, true)
	}
}
