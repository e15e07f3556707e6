// Read markers and notifications: listing, marking read, and the pending ones a hello
// delivers.

package chat

import (
	"context"
	"errors"
	"fmt"

	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// MarkRead moves u's read marker of a room forward to seq and returns the marker and the
// unread count after it. A marker never moves back (an older seq answers the current
// marker); a seq past the room's last_seq is refused, since no client can have seen it.
func (s *Service) MarkRead(ctx context.Context, u User, roomID string, seq int64) (protocol.ReadMarker, error) {
	marker, unread, err := s.store.MarkRead(ctx, u.ID, roomID, seq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return protocol.ReadMarker{}, errNoRoom()
	case errors.Is(err, store.ErrNotMember):
		return protocol.ReadMarker{}, notMember(roomID, false)
	case errors.Is(err, store.ErrPastEnd):
		msg := fmt.Sprintf("seq %d is past the room's last seq", seq)
		if pe, ok := errors.AsType[*store.PastEndError](err); ok {
			msg = fmt.Sprintf("%s %d", msg, pe.LastSeq)
		}
		return protocol.ReadMarker{}, protocol.NewError(protocol.CodeBadRequest, msg)
	case err != nil:
		return protocol.ReadMarker{}, s.internal(ctx, "cannot mark read", err)
	}
	return protocol.ReadMarker{Base: protocol.Base{Type: protocol.TypeRead}, Room: roomID, Seq: marker, Unread: unread}, nil
}

func (s *Service) notes() (NotificationStore, error) {
	if s.cfg.Notifications == nil {
		return nil, protocol.NewError(protocol.CodeUnavailable, "notifications are not available").Retry()
	}
	return s.cfg.Notifications, nil
}

// NotificationFrame renders a stored notification.
func NotificationFrame(n notifications.Notification) protocol.Notification {
	return protocol.Notification{Base: protocol.Base{Type: protocol.TypeNotification}, NotificationID: n.ID, Room: n.RoomID,
		Seq: n.Seq, Reason: n.Reason, Sender: n.Sender, Preview: n.Preview, CreatedAt: n.CreatedAt, ReadAt: n.ReadAt}
}

// Notifications returns a page of u's notifications, newest first (older than before,
// when given), with the unread count.
func (s *Service) Notifications(ctx context.Context, u User, before string, limit int) (protocol.NotificationList, error) {
	ns, err := s.notes()
	if err != nil {
		return protocol.NotificationList{}, err
	}
	if e := protocol.ValidateNotificationPage(before, limit); e != nil {
		return protocol.NotificationList{}, e
	}
	if limit <= 0 {
		limit = notifications.DefaultListLimit
	}
	rows, err := ns.List(ctx, u.ID, before, limit+1)
	if err != nil {
		return protocol.NotificationList{}, s.internal(ctx, "cannot list notifications", err)
	}
	unread, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return protocol.NotificationList{}, s.internal(ctx, "cannot count notifications", err)
	}
	out := protocol.NotificationList{Base: protocol.Base{Type: protocol.TypeNotifications}, UnreadCount: unread,
		HasMore: len(rows) > limit, Notifications: make([]protocol.Notification, 0, min(len(rows), limit))}
	for _, n := range rows[:min(len(rows), limit)] {
		out.Notifications = append(out.Notifications, NotificationFrame(n))
	}
	return out, nil
}

// MarkNotificationsRead marks u's notifications read: ids, or all of them. Unknown ids,
// other users' ids and ids already read change nothing and are not an error (a retry
// or a second device must not fail); Marked says how many changed.
func (s *Service) MarkNotificationsRead(ctx context.Context, u User, ids []string, all bool) (protocol.NotificationsRead, error) {
	ns, err := s.notes()
	if err != nil {
		return protocol.NotificationsRead{}, err
	}
	if e := protocol.ValidateNotificationIDs(ids, all); e != nil {
		return protocol.NotificationsRead{}, e
	}
	var n int
	if all {
		n, err = ns.MarkAllRead(ctx, u.ID)
	} else {
		n, err = ns.MarkRead(ctx, u.ID, ids)
	}
	if err != nil {
		return protocol.NotificationsRead{}, s.internal(ctx, "cannot mark notifications read", err)
	}
	unread, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return protocol.NotificationsRead{}, s.internal(ctx, "cannot count notifications", err)
	}
	return protocol.NotificationsRead{Base: protocol.Base{Type: protocol.TypeNotificationsRead}, Marked: n, UnreadCount: unread}, nil
}

// UnreadNotifications counts u's unread notifications.
func (s *Service) UnreadNotifications(ctx context.Context, u User) (int, error) {
	ns, err := s.notes()
	if err != nil {
		return 0, err
	}
	n, err := ns.UnreadCount(ctx, u.ID)
	if err != nil {
		return 0, s.internal(ctx, "cannot count notifications", err)
	}
	return n, nil
}

// PendingNotifications returns u's newest unread notifications, at most max, oldest first:
// what a connection is given at hello.
func (s *Service) PendingNotifications(ctx context.Context, u User, max int) ([]protocol.Notification, error) {
	ns, err := s.notes()
	if err != nil {
		return nil, err
	}
	rows, err := ns.Pending(ctx, u.ID)
	if err != nil {
		return nil, s.internal(ctx, "cannot read pending notifications", err)
	}
	if len(rows) > max {
		rows = rows[len(rows)-max:] // Pending is oldest first; keep the newest
	}
	out := make([]protocol.Notification, len(rows))
	for i, n := range rows {
		out[i] = NotificationFrame(n)
		out[i].Pending = true
	}
	return out, nil
}
