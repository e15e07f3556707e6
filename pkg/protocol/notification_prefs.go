package protocol

import "time"

// Notification preference frames: the same settings as REST's
// /api/me/notification-preferences and /api/rooms/{id}/notification-preferences, so that
// a client on a socket need not open a second channel to change them.
const (
	// TypeNotificationPrefs asks for the user's preferences; the reply has the same type.
	TypeNotificationPrefs = "notification_prefs"
	// TypeSetNotificationPrefs replaces the default level and do-not-disturb hours; the
	// reply is notification_prefs.
	TypeSetNotificationPrefs = "set_notification_prefs"
	// TypeSetRoomNotificationPrefs replaces one room's level and mute (both absent: back
	// to the defaults); the reply is room_notification_prefs.
	TypeSetRoomNotificationPrefs = "set_room_notification_prefs"
	// TypeRoomNotificationPrefs is a room's setting as stored (server only).
	TypeRoomNotificationPrefs = "room_notification_prefs"
)

// DND is a do-not-disturb window: HH:MM to HH:MM (an End before Start wraps midnight),
// local time in the IANA Zone.
type DND struct {
	Start string `json:"start"`
	End   string `json:"end"`
	Zone  string `json:"zone"`
}

// EmailSettings is the user's e-mail address and whether digests go to it.
type EmailSettings struct {
	Address string `json:"address"` // "" until one is set
	Enabled bool   `json:"enabled"`
}

// RoomNotificationPrefs is a user's setting for one room; null fields are the defaults.
type RoomNotificationPrefs struct {
	Base
	Room       string     `json:"room"`
	Level      *string    `json:"level"`       // null: the user's default level
	MutedUntil *time.Time `json:"muted_until"` // null: not muted
}

// NotificationPrefs is a user's preferences (answers notification_prefs and
// set_notification_prefs). Rooms carries no type of its own.
type NotificationPrefs struct {
	Base
	Level string                  `json:"level"`
	DND   *DND                    `json:"dnd"` // null: none
	Email EmailSettings           `json:"email"`
	Rooms []RoomNotificationPrefs `json:"rooms"`
}

// GetNotificationPrefs carries no fields.
type GetNotificationPrefs struct{ Base }

// SetNotificationPrefs replaces the defaults: Level is required; a missing or null DND
// means none.
type SetNotificationPrefs struct {
	Base
	Level *string `json:"level"`
	DND   *DND    `json:"dnd"`
}

// SetRoomNotificationPrefs replaces Room's setting. MutedUntil is an RFC 3339 time with
// a zone; it is kept as text here so that a malformed one is refused by name rather than
// as a JSON error (ParseMutedUntil).
type SetRoomNotificationPrefs struct {
	Base
	Room       string  `json:"room"`
	Level      *string `json:"level"`
	MutedUntil *string `json:"muted_until"`
}

// ParseMutedUntil reads a muted_until value (REST and WebSocket): an RFC 3339 time with a
// zone. Whether it is in the future is the caller's check: it needs a clock.
func ParseMutedUntil(s string) (time.Time, *Error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, NewError(CodeBadRequest, "muted_until must be an RFC 3339 time with a zone, e.g. 2026-01-02T15:04:05Z, or null")
	}
	return t, nil
}
