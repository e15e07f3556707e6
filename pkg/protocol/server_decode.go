package protocol

import (
	"encoding/json"
	"fmt"
)

// DecodeServer parses one server frame, as a client receives it, into its typed struct:
//
//	welcome *Welcome            pong *Pong                 ack *Ack
//	error *Error                message *Message           subscribed *Subscribed
//	unsubscribed *Unsubscribed  synced *Synced             history *HistoryPage
//	typing *TypingNotice        joined, left *Membership   rooms *RoomList
//	users *UserList             stats *StatsReply          token *TokenReply
//	read *ReadMarker            notification *Notification notifications *NotificationList
//	notifications_read *NotificationsRead                  reconnect *Reconnect
//	notification_prefs *NotificationPrefs                  room_notification_prefs *RoomNotificationPrefs
//	thread *ThreadPage          thread_read *ThreadReadMarker
//	role_set *RoleSet           muted, unmuted *MuteResult transferred *Transferred
//	room_updated *RoomUpdated   directory *DirectoryPage
//
// A frame whose type this package does not know (a newer gateway) decodes to *Base with
// its type and ref, and no error, so that a client can ignore it. An error means the bytes
// are not a JSON object or a known field has the wrong JSON type.
//
// It does not validate: the server is trusted to send what it documents. Safe for
// concurrent use.
func DecodeServer(b []byte) (Frame, error) {
	var base Base
	if err := json.Unmarshal(b, &base); err != nil {
		return nil, fmt.Errorf("server frame: %w", err)
	}
	f := newServerFrame(base.Type)
	if f == nil {
		return &base, nil
	}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%s frame: %w", base.Type, err)
	}
	return f, nil
}

// newServerFrame returns a pointer to the struct a server frame of type typ decodes into,
// nil for an unknown type. It is the server-side twin of newFrame (client frames).
func newServerFrame(typ string) Frame {
	switch typ {
	case TypeWelcome:
		return &Welcome{}
	case TypePong:
		return &Pong{}
	case TypeAck:
		return &Ack{}
	case TypeError:
		return &Error{}
	case TypeMessage:
		return &Message{}
	case TypeSubscribed:
		return &Subscribed{}
	case TypeUnsubscribed:
		return &Unsubscribed{}
	case TypeSynced:
		return &Synced{}
	case TypeHistory:
		return &HistoryPage{}
	case TypeTyping:
		return &TypingNotice{}
	case TypeJoined, TypeLeft:
		return &Membership{}
	case TypeRooms:
		return &RoomList{}
	case TypeUsers:
		return &UserList{}
	case TypeStats:
		return &StatsReply{}
	case TypeToken:
		return &TokenReply{}
	case TypeRead:
		return &ReadMarker{}
	case TypeNotification:
		return &Notification{}
	case TypeNotifications:
		return &NotificationList{}
	case TypeNotificationsRead:
		return &NotificationsRead{}
	case TypeReconnect:
		return &Reconnect{}
	case TypeNotificationPrefs:
		return &NotificationPrefs{}
	case TypeRoomNotificationPrefs:
		return &RoomNotificationPrefs{}
	case TypeThread:
		return &ThreadPage{}
	case TypeThreadRead:
		return &ThreadReadMarker{}
	case TypeRoleSet:
		return &RoleSet{}
	case TypeMuted, TypeUnmuted:
		return &MuteResult{}
	case TypeTransferred:
		return &Transferred{}
	case TypeRoomUpdated:
		return &RoomUpdated{}
	case TypeDirectory:
		return &DirectoryPage{}
	}
	return nil
}
