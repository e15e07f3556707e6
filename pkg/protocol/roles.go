package protocol

// Room role and settings frames: the same operations as REST's
// /api/rooms/{id}/members/{username}/role, .../mute, /api/rooms/{id}/transfer,
// PATCH /api/rooms/{id} and GET /api/rooms/directory, checked and stored by the same
// gateway code, so that a client on a socket need not open a second channel to moderate.
// In these frames "user" is a username, as in the REST paths (not a user id as in typing).
const (
	// TypeSetRole makes a member an admin or a member; the reply is role_set.
	TypeSetRole = "set_role"
	// TypeMute stops a member from posting; the reply is muted.
	TypeMute = "mute"
	// TypeUnmute lets a muted member post again; the reply is unmuted.
	TypeUnmute = "unmute"
	// TypeTransfer hands the room's ownership to a member; the reply is transferred.
	TypeTransfer = "transfer"
	// TypeUpdateRoom renames a room, sets its topic or its privacy; the reply is
	// room_updated.
	TypeUpdateRoom = "update_room"
	// TypeDirectory asks for a page of the public room directory; the reply has the same
	// type.
	TypeDirectory = "directory"

	// Server-only replies.
	TypeRoleSet     = "role_set"     // answers set_role
	TypeMuted       = "muted"        // answers mute
	TypeUnmuted     = "unmuted"      // answers unmute
	TypeTransferred = "transferred"  // answers transfer
	TypeRoomUpdated = "room_updated" // answers update_room
)

// SetRole gives the member named User of Room the role Role: "admin" or "member"
// (ownership moves by transfer only). Which values are allowed is the gateway's check, so
// that both channels refuse alike.
type SetRole struct {
	Base
	Room string `json:"room"`
	User string `json:"user"`
	Role string `json:"role"`
}

// MuteMember is mute and unmute (its Type says which) of the member named User of Room.
type MuteMember struct {
	Base
	Room string `json:"room"`
	User string `json:"user"`
}

// Transfer makes the member named User the owner of Room; the sender, its owner, becomes
// an admin.
type Transfer struct {
	Base
	Room string `json:"room"`
	User string `json:"user"`
}

// UpdateRoom changes Room's settings: an absent (or null) field stays as it is, at least
// one must be given. Values the gateway cannot store (an empty name, a topic over its
// limit) are refused, never trimmed; the limits are the gateway's check, shared with REST.
type UpdateRoom struct {
	Base
	Room    string  `json:"room"`
	Name    *string `json:"name,omitempty"`
	Topic   *string `json:"topic,omitempty"`
	Private *bool   `json:"private,omitempty"`
}

// Directory asks for the public rooms whose id, name or topic contains Q (all when
// empty), by id, Limit per page (0: the gateway's default), after Cursor (a cursor of a
// previous page; empty: from the start).
type Directory struct {
	Base
	Q      string `json:"q,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// RoleSet answers set_role. Changed is false when the member had the role already, so a
// retried request is no error.
type RoleSet struct {
	Base
	Room    string `json:"room"`
	User    string `json:"user"`
	Role    string `json:"role"`
	Changed bool   `json:"changed"`
}

// MuteResult answers mute (type muted) and unmute (type unmuted). Changed is false when
// the member was in that state already.
type MuteResult struct {
	Base
	Room    string `json:"room"`
	User    string `json:"user"`
	Muted   bool   `json:"muted"`
	Changed bool   `json:"changed"`
}

// Transferred answers transfer: Owner is the room's new owner.
type Transferred struct {
	Base
	Room  string `json:"room"`
	Owner string `json:"owner"`
}

// RoomUpdated answers update_room with the room's settings after the change.
type RoomUpdated struct {
	Base
	Room    string `json:"room"`
	Name    string `json:"name"`
	Topic   string `json:"topic"`
	Private bool   `json:"private"`
	// Changed is false when the request set what was set already: no room_change entry.
	Changed bool `json:"changed"`
}

// DirectoryRoom is one public room of a directory page.
type DirectoryRoom struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Topic   string `json:"topic"`
	Members int    `json:"members"`
}

// DirectoryPage answers directory. Cursor, when set, fetches the next page.
type DirectoryPage struct {
	Base
	Rooms  []DirectoryRoom `json:"rooms"`
	Cursor string          `json:"cursor,omitempty"`
}

// validateMemberTarget checks the room and user of a role, mute or transfer request.
func validateMemberTarget(r, user string) *Error {
	if e := room(r); e != nil {
		return e
	}
	if user == "" {
		return NewError(CodeBadRequest, "user is required (a username)")
	}
	if !ValidUsername(user) {
		return NewError(CodeBadRequest, "user is not a valid username")
	}
	return nil
}

// validateSetRole checks a set_role frame. Which roles may be given is the gateway's
// check (REST's too), so both channels refuse alike.
func validateSetRole(f *SetRole) *Error {
	if e := validateMemberTarget(f.Room, f.User); e != nil {
		return e
	}
	if f.Role == "" {
		return NewError(CodeBadRequest, "role is required (admin or member)")
	}
	return nil
}
