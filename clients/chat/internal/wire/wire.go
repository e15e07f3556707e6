// Package wire holds the client's view of the gateway's WebSocket frames (docs/protocol.md).
// The gateway's own frame types live in an internal package of another module, so the
// client keeps the fields it reads here; unknown fields are ignored, which is also what
// lets the protocol grow without breaking older clients.
package wire

import (
	"encoding/json"
	"errors"
	"time"
)

// Frame is any server frame, decoded once: the fields of every frame type the client uses
// live side by side because frames are flat JSON objects named by "type".
type Frame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`

	// welcome
	User           *User     `json:"user,omitempty"`
	ConnID         string    `json:"conn_id,omitempty"`
	GatewayID      string    `json:"gateway_id,omitempty"`
	ReconnectToken string    `json:"reconnect_token,omitempty"`
	ReconnectUntil time.Time `json:"reconnect_expires_at"`
	// token
	ExpiresAt time.Time `json:"expires_at"`

	// ack, error, message, subscribed, ...
	Room        string `json:"room,omitempty"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
	MessageID   string `json:"message_id,omitempty"`
	Status      string `json:"status,omitempty"`
	Seq         int64  `json:"seq,omitempty"`

	// error
	Code      string           `json:"code,omitempty"`
	Message   string           `json:"message,omitempty"`
	Retryable bool             `json:"retryable,omitempty"`
	Cursors   map[string]int64 `json:"cursors,omitempty"`

	// message (and history entries)
	Kind       string     `json:"kind,omitempty"`
	Sender     string     `json:"sender,omitempty"`
	SenderName string     `json:"sender_name,omitempty"`
	Text       string     `json:"text,omitempty"`
	TargetSeq  int64      `json:"target_seq,omitempty"`
	SentAt     time.Time  `json:"sent_at"`
	StoredAt   time.Time  `json:"stored_at"`
	EditedAt   *time.Time `json:"edited_at,omitempty"`
	DeletedAt  *time.Time `json:"deleted_at,omitempty"`

	// subscribed, joined
	SinceSeq  int64  `json:"since_seq,omitempty"`
	LastSeq   int64  `json:"last_seq,omitempty"`
	Recovered bool   `json:"recovered,omitempty"`
	Reason    string `json:"reason,omitempty"`

	// history
	Messages []Frame `json:"messages,omitempty"`
	HasMore  bool    `json:"has_more,omitempty"`

	// typing
	UserName string `json:"user_name,omitempty"`

	// rooms
	Mine   []RoomInfo `json:"mine,omitempty"`
	Public []RoomInfo `json:"public,omitempty"`

	// users
	Users []OnlineUser `json:"users,omitempty"`

	// stats
	UserCount   int        `json:"-"` // stats' "users"
	Connections int        `json:"connections,omitempty"`
	UptimeS     int64      `json:"uptime_seconds,omitempty"`
	MessagesIn  int64      `json:"messages_in,omitempty"`
	MessagesOut int64      `json:"messages_out,omitempty"`
	Conn        *ConnStats `json:"conn,omitempty"`

	// notification
	NotificationID string    `json:"notification_id,omitempty"`
	Preview        string    `json:"preview,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// User is an account as the server shows it.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// RoomInfo is one entry of a rooms reply.
type RoomInfo struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	LastSeq int64    `json:"last_seq"`
	Role    string   `json:"role,omitempty"`
	Members []string `json:"members,omitempty"`
}

// OnlineUser is one entry of a users reply.
type OnlineUser struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	Connections int    `json:"connections"`            // on all live gateways
	Here        int    `json:"here"`                   // on the answering gateway
	IdleSeconds *int64 `json:"idle_seconds,omitempty"` // known for users connected there
}

// ConnStats are one connection's counters (stats.conn).
type ConnStats struct {
	ConnectedAt  time.Time `json:"connected_at"`
	LastActive   time.Time `json:"last_active"`
	MessagesSent int64     `json:"messages_sent"`
	MessagesRecv int64     `json:"messages_received"`
}

// Decode parses one server frame. Two field names mean different things in different
// frames: "user" is an object in welcome but a user id in typing, and "users" is a list in
// users but a count in stats. encoding/json skips a field of the wrong type and fills the
// rest, so those two mismatches are not errors; the stats count is read separately.
func Decode(data []byte) (Frame, error) {
	var f Frame
	err := json.Unmarshal(data, &f)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && (te.Field == "user" || te.Field == "users") {
		err = nil
		if te.Field == "user" {
			f.User = nil // the decoder allocated it before it met the string
		}
		var count struct {
			Users int `json:"users"`
		}
		if te.Field == "users" && json.Unmarshal(data, &count) == nil {
			f.UserCount = count.Users
		}
	}
	return f, err
}

// Server frame types the client handles.
const (
	TypeWelcome      = "welcome"
	TypeAck          = "ack"
	TypeError        = "error"
	TypeMessage      = "message"
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypeSynced       = "synced"
	TypeTyping       = "typing"
	TypeNotification = "notification"
	TypeReconnect    = "reconnect"
	TypeHistory      = "history"
	TypeJoined       = "joined"
	TypeLeft         = "left"
	TypeRooms        = "rooms"
	TypeUsers        = "users"
	TypeStats        = "stats"
	TypeToken        = "token"
	TypePong         = "pong"
)

// Timeline entry kinds.
const (
	KindMessage = "message"
	KindEdit    = "edit"
	KindDelete  = "delete"
	KindJoin    = "join"
	KindLeave   = "leave"
)

// Error codes the client reacts to.
const (
	CodeInvalidToken       = "invalid_token"
	CodeInvalidCredentials = "invalid_credentials"
	CodeUsernameTaken      = "username_taken"
	CodeNotFound           = "not_found"
	CodeConflict           = "conflict"
	CodeUnavailable        = "unavailable"
)

// Close codes (docs/protocol.md).
const (
	CloseNormal         = 1000
	CloseServiceRestart = 1012
	CloseUnauthorized   = 4001
	CloseSlow           = 4008
)
