// Package protocol is kchat's WebSocket wire format, shared by the gateway (the server)
// and every Go client (the terminal client, chatbench, the fault suite): the JSON frames in
// both directions, how client frames are decoded and validated (Decode), how server frames
// are decoded by clients (DecodeServer), the limits, the error codes and the close codes.
// It knows nothing about connections, rooms or Kafka and imports nothing of kchat but
// pkg/event's timeline kinds; the prose version is docs/protocol.md, and a test keeps the
// two agreeing.
//
// A frame is one WebSocket text message holding one flat JSON object whose "type" names it.
// Client frames may carry "ref", an opaque string echoed in the reply and in any error, so
// a client can match answers to requests. Unknown fields are ignored by both sides, which
// is what lets the protocol grow without breaking older clients.
//
// Frames are plain structs: a server builds one and calls Encode; a client builds one (for
// example &Send{Base: Base{Type: TypeSend, Ref: "r1"}, ...}) and marshals it with Encode too.
package protocol

import (
	"encoding/json"
	"time"

	"github.com/kchat/kchat/pkg/event"
)

// Client frame types.
const (
	TypeHello       = "hello"
	TypeAuth        = "auth"
	TypePing        = "ping"
	TypePong        = "pong"
	TypeSend        = "send"
	TypeEdit        = "edit"
	TypeDelete      = "delete"
	TypeReact       = "react"
	TypeDM          = "dm"
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeHistory     = "history"
	TypeTyping      = "typing"
	TypeJoin        = "join"
	TypeLeave       = "leave"
	TypeRooms       = "rooms"
	TypeUsers       = "users"
	TypeStats       = "stats"
	TypeToken       = "token"
	TypeQuit        = "quit"
	// TypeRead marks a room read up to a seq; the reply and the notice to the user's
	// other connections are `read` frames too.
	TypeRead              = "read"
	TypeNotifications     = "notifications"      // list notifications; the reply has the same type
	TypeReadNotifications = "read_notifications" // mark notifications read
	// TypeThread reads a page of a thread's replies; the reply has the same type.
	TypeThread = "thread"
	// TypeThreadRead marks a thread read up to a seq; the reply has the same type.
	TypeThreadRead = "thread_read"
)

// Server-only frame types (some client types, e.g. rooms, are also reply types).
const (
	TypeWelcome           = "welcome"
	TypeAck               = "ack"
	TypeError             = "error"
	TypeMessage           = "message"
	TypeSubscribed        = "subscribed"
	TypeUnsubscribed      = "unsubscribed"
	TypeSynced            = "synced"
	TypeJoined            = "joined"
	TypeLeft              = "left"
	TypeNotification      = "notification"
	TypeReconnect         = "reconnect"
	TypeNotificationsRead = "notifications_read" // answers read_notifications
)

// Base is embedded in every frame.
type Base struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
}

// FrameType returns the frame's type.
func (b Base) FrameType() string { return b.Type }

// RefID returns the client's correlation id, if any.
func (b Base) RefID() string { return b.Ref }

// SetRef sets the correlation id: a client that retries a request on a new connection
// gives it a fresh ref each time.
func (b *Base) SetRef(ref string) { b.Ref = ref }

// Frame is any decoded client frame.
type Frame interface {
	FrameType() string
	RefID() string
}

// ---- client → server ----

// Hello authenticates (unless the connection already did, e.g. with ?token=) and
// subscribes: to every room in Rooms from its since_seq, or, when Rooms is nil (absent or
// null on the wire), to all of the user's rooms from their current last_seq (live only).
// A non-nil empty Rooms ({}) subscribes to nothing, so Rooms has no omitempty: a client
// resuming with no rooms must not be subscribed to all of them.
type Hello struct {
	Base
	Token          string           `json:"token,omitempty"`
	ReconnectToken string           `json:"reconnect_token,omitempty"`
	Rooms          map[string]int64 `json:"rooms"`
}

// Auth only authenticates; it subscribes to nothing.
type Auth struct {
	Base
	Token          string `json:"token,omitempty"`
	ReconnectToken string `json:"reconnect_token,omitempty"`
}

// Ping asks for a pong; it also counts as activity for the idle timeout.
type Ping struct{ Base }

// Send posts a message to a room. Attachments are upload ids (POST
// /api/rooms/{id}/uploads) of the sender's to this room, at most event.MaxAttachments.
type Send struct {
	Base
	Room        string   `json:"room"`
	ClientMsgID string   `json:"client_msg_id"`
	Text        string   `json:"text"`
	Attachments []string `json:"attachments,omitempty"`
	// ThreadRoot makes the message a reply in the thread rooted at that seq of the room:
	// a message, not deleted, that is not itself a reply.
	ThreadRoot int64 `json:"thread_root,omitempty"`
}

// Edit replaces the text of one of the sender's own messages.
type Edit struct {
	Base
	Room        string `json:"room"`
	ClientMsgID string `json:"client_msg_id"`
	TargetSeq   int64  `json:"target_seq"`
	Text        string `json:"text"`
}

// Delete removes one of the sender's own messages.
type Delete struct {
	Base
	Room        string `json:"room"`
	ClientMsgID string `json:"client_msg_id"`
	TargetSeq   int64  `json:"target_seq"`
}

// React toggles the sender's Emoji on the message at TargetSeq: On true adds it, false
// removes it. On is a pointer so that a missing "on" is refused instead of read as false.
type React struct {
	Base
	Room        string `json:"room"`
	ClientMsgID string `json:"client_msg_id"`
	TargetSeq   int64  `json:"target_seq"`
	Emoji       string `json:"emoji"`
	On          *bool  `json:"on"`
}

// DM sends a direct message to a user by username, creating the DM room on first use.
type DM struct {
	Base
	To          string `json:"to"`
	ClientMsgID string `json:"client_msg_id"`
	Text        string `json:"text"`
}

// Subscribe starts delivery of a room from SinceSeq (exclusive). Without since_seq the
// subscription is live only, from the room's current last_seq.
type Subscribe struct {
	Base
	Room     string `json:"room"`
	SinceSeq *int64 `json:"since_seq,omitempty"`
}

// Unsubscribe stops delivery of a room on this connection.
type Unsubscribe struct {
	Base
	Room string `json:"room"`
}

// History reads a page of a room's timeline, newest first, before BeforeSeq.
type History struct {
	Base
	Room      string `json:"room"`
	BeforeSeq *int64 `json:"before_seq,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

// Typing announces that the user is typing in a room; never stored.
type Typing struct {
	Base
	Room string `json:"room"`
}

// Join makes the user a member of a public room (and subscribes this connection).
type Join struct {
	Base
	Room string `json:"room"`
}

// Leave ends the user's membership of a room. The room's owner must name a Successor
// (a username of a current member), who becomes the owner before the owner leaves.
type Leave struct {
	Base
	Room      string `json:"room"`
	Successor string `json:"successor,omitempty"`
}

// Read marks Room read up to Seq (inclusive). Markers only move forward; a seq past the
// room's last_seq is refused (bad_request) rather than clamped, since no client can have
// seen it.
type Read struct {
	Base
	Room string `json:"room"`
	Seq  *int64 `json:"seq"`
}

// Notifications asks for a page of the user's notifications, newest first: those older
// than Before (a notification id) when given.
type Notifications struct {
	Base
	Before string `json:"before,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// ReadNotifications marks notifications read: the listed IDs, or all of them.
type ReadNotifications struct {
	Base
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// Thread reads a page of the replies in the thread rooted at Root, oldest first, after
// AfterSeq (exclusive; none: from the first reply).
type Thread struct {
	Base
	Room     string `json:"room"`
	Root     int64  `json:"root"`
	AfterSeq int64  `json:"after_seq,omitempty"`
	Limit    int    `json:"limit,omitempty"`
}

// ThreadRead marks the thread rooted at Root read up to Seq (inclusive): like a room's
// read marker it only moves forward, and a seq past the thread's last reply is refused.
type ThreadRead struct {
	Base
	Room string `json:"room"`
	Root int64  `json:"root"`
	Seq  *int64 `json:"seq"`
}

// Rooms, Users, Stats, Token and Quit carry no fields.
type (
	Rooms struct{ Base }
	Users struct{ Base }
	Stats struct{ Base }
	Token struct{ Base }
	Quit  struct{ Base }
)

// ---- server → client ----

// User is a public view of an account.
type User struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// Welcome answers hello and auth.
type Welcome struct {
	Base
	User           User      `json:"user"`
	ConnID         string    `json:"conn_id"`
	GatewayID      string    `json:"gateway_id"`
	ReconnectToken string    `json:"reconnect_token"`
	ReconnectUntil time.Time `json:"reconnect_expires_at"`
	ServerTime     time.Time `json:"server_time"`
	Limits         Limits    `json:"limits"`
	// Invites are the user's pending invitations to private rooms, oldest first (also
	// GET /api/me/invites); absent when there are none.
	Invites []Invite `json:"invites,omitempty"`
}

// Pong answers ping.
type Pong struct {
	Base
	ServerTime time.Time `json:"server_time"`
}

// Timeline entry kinds (Message.Kind): a message frame carries the stored event's kind
// unchanged, so these are pkg/event's values.
const (
	KindMessage = event.KindMessage
	KindEdit    = event.KindEdit
	KindDelete  = event.KindDelete
	KindJoin    = event.KindJoin
	KindLeave   = event.KindLeave
	// KindReaction entries carry Emoji and On and name the message in TargetSeq.
	KindReaction = event.KindReaction
	// KindRoomChange entries record a change made by their sender: Change says which,
	// Target/TargetName whom it concerns, Role and Settings what was set.
	KindRoomChange = event.KindRoomChange
)

// Changes a room_change entry records (Message.Change).
const (
	ChangeRole     = event.ChangeRole     // Target's role set to Role
	ChangeMuted    = event.ChangeMuted    // Target muted
	ChangeUnmuted  = event.ChangeUnmuted  // Target unmuted
	ChangeOwner    = event.ChangeOwner    // Target made the owner; the sender, the previous owner, became an admin
	ChangeSettings = event.ChangeSettings // the room's Settings changed
)

// RoomSettingsChange holds the settings a room_change entry of change settings set;
// settings left alone are nil.
type RoomSettingsChange = event.RoomSettingsChange

// Ack statuses.
const (
	AckAccepted  = "accepted"  // published to Kafka; the message frame with its seq follows
	AckDuplicate = "duplicate" // this client_msg_id was stored before; seq is the original
)

// Ack confirms a send after Kafka acknowledged it (or found it was a duplicate).
type Ack struct {
	Base
	Room        string `json:"room"`
	ClientMsgID string `json:"client_msg_id"`
	MessageID   string `json:"message_id"`
	Status      string `json:"status"`
	Seq         int64  `json:"seq,omitempty"`
}

// Error reports a failed request. The connection stays open unless a close follows.
type Error struct {
	Base
	Code        string           `json:"code"`
	Message     string           `json:"message"`
	Retryable   bool             `json:"retryable,omitempty"`
	RetryAfter  int64            `json:"retry_after_ms,omitempty"` // rate_limited: when a retry can succeed
	ClientMsgID string           `json:"client_msg_id,omitempty"`
	Room        string           `json:"room,omitempty"`
	Cursors     map[string]int64 `json:"cursors,omitempty"` // set on the final frame before close 4008
}

// Error implements error so that chat logic can return protocol errors directly.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError builds an error frame value.
func NewError(code, msg string) *Error {
	return &Error{Base: Base{Type: TypeError}, Code: code, Message: msg}
}

// Retry marks an error as retryable.
func (e *Error) Retry() *Error { e.Retryable = true; return e }

// Message is one timeline entry: a message, a join or leave announcement, an edit or a
// delete. Entries of a room are delivered in seq order, each once per subscription.
type Message struct {
	Base
	Room        string     `json:"room"`
	Seq         int64      `json:"seq"`
	Kind        string     `json:"kind"`
	MessageID   string     `json:"message_id"`
	Sender      string     `json:"sender"`
	SenderName  string     `json:"sender_name"`
	ClientMsgID string     `json:"client_msg_id,omitempty"`
	Text        string     `json:"text,omitempty"`
	TargetSeq   int64      `json:"target_seq,omitempty"`
	SentAt      time.Time  `json:"sent_at"`
	StoredAt    time.Time  `json:"stored_at"`
	EditedAt    *time.Time `json:"edited_at,omitempty"`
	DeletedAt   *time.Time `json:"deleted_at,omitempty"`
	// Emoji and On are set on entries of kind reaction (On is false when it was removed,
	// so it is a pointer: present on every reaction entry, absent on other kinds).
	Emoji string `json:"emoji,omitempty"`
	On    *bool  `json:"on,omitempty"`
	// Reactions are the message's current reactions, in history pages only (live entries
	// carry the toggles themselves): one per emoji, first reacted first.
	Reactions []ReactionCount `json:"reactions,omitempty"`
	// Attachments are the files a message carries (absent once it is deleted); each is
	// downloaded from GET /api/attachments/{id} (and /thumbnail when Thumbnail is set).
	Attachments []event.Attachment `json:"attachments,omitempty"`
	// ThreadRoot is set on a reply: the seq of its thread's root.
	ThreadRoot int64 `json:"thread_root,omitempty"`
	// Thread summarises the replies to a root, in history and thread pages only (live
	// replies carry thread_root; clients count them).
	Thread *ThreadSummary `json:"thread,omitempty"`
	// Change, Target, TargetName, Role and Settings are set on room_change entries: see
	// KindRoomChange and the Change constants. Target and TargetName are absent for
	// settings; Role is set for role and owner; Settings for settings.
	Change     string              `json:"change,omitempty"`
	Target     string              `json:"target,omitempty"`
	TargetName string              `json:"target_name,omitempty"`
	Role       string              `json:"role,omitempty"`
	Settings   *RoomSettingsChange `json:"settings,omitempty"`
}

// ThreadSummary is a thread's state for the asking user.
type ThreadSummary struct {
	ReplyCount  int        `json:"reply_count"`             // replies not deleted
	LastReplyAt *time.Time `json:"last_reply_at,omitempty"` // the newest of them
	LastSeq     int64      `json:"last_seq"`                // the newest reply's seq, deleted or not
	// Participant says whether the user follows the thread: they wrote the root or a
	// reply, or marked it read. Unread is counted for participants only: replies by
	// others after both their thread read marker and their own last reply, at most
	// MaxUnread.
	Participant bool  `json:"participant"`
	Unread      int64 `json:"unread"`
}

// ThreadPage answers thread: the root (with its summary) and replies oldest first.
type ThreadPage struct {
	Base
	Room     string    `json:"room"`
	Root     Message   `json:"root"`
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
}

// ThreadReadMarker answers thread_read: Seq is the marker after the update.
type ThreadReadMarker struct {
	Base
	Room   string `json:"room"`
	Root   int64  `json:"root"`
	Seq    int64  `json:"seq"`
	Unread int64  `json:"unread"`
}

// MaxReactionNames bounds ReactionCount.Users: past it a client shows the count only.
const MaxReactionNames = 10

// ReactionCount aggregates one emoji's reactions on a message for the asking user.
type ReactionCount struct {
	Emoji string   `json:"emoji"`
	Count int      `json:"count"`
	Me    bool     `json:"me"`              // the asking user is among them
	Users []string `json:"users,omitempty"` // usernames, first reacted first; set when Count <= MaxReactionNames
}

// Subscribed confirms a subscription. Recovered is false when since_seq could not be
// honoured (ahead of the room, or history purged); Reason says why.
type Subscribed struct {
	Base
	Room      string `json:"room"`
	SinceSeq  int64  `json:"since_seq"`
	LastSeq   int64  `json:"last_seq"`
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason,omitempty"`
}

// Unsubscribed confirms unsubscribe (or reports that membership ended).
type Unsubscribed struct {
	Base
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

// Synced says a room's backlog has been delivered up to Seq and the room is live again.
type Synced struct {
	Base
	Room string `json:"room"`
	Seq  int64  `json:"seq"`
}

// HistoryPage answers history: Messages newest first.
type HistoryPage struct {
	Base
	Room     string    `json:"room"`
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
}

// TypingNotice tells room members that someone is typing.
type TypingNotice struct {
	Base
	Room     string `json:"room"`
	User     string `json:"user"`
	UserName string `json:"user_name"`
}

// Membership answers join and leave.
type Membership struct {
	Base
	Room    string `json:"room"`
	LastSeq int64  `json:"last_seq"`
}

// RoomInfo describes a room for rooms lists. LastReadSeq and Unread are set for the
// asking user's own rooms only.
type RoomInfo struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Private     bool     `json:"private,omitempty"` // invisible to non-members, entered by invitation
	LastSeq     int64    `json:"last_seq"`
	Role        string   `json:"role,omitempty"`
	Members     []string `json:"members,omitempty"` // usernames, for DMs
	LastReadSeq *int64   `json:"last_read_seq,omitempty"`
	Unread      *int64   `json:"unread,omitempty"` // messages by others after last_read_seq, at most MaxUnread
}

// Invite is a pending invitation to a private room, as its invitee lists it (REST GET
// /api/me/invites) or as the admin who made it gets it back.
type Invite struct {
	Room      string    `json:"room"`
	RoomName  string    `json:"room_name,omitempty"`
	Username  string    `json:"username,omitempty"`   // the invitee (in the admin's answer)
	InvitedBy string    `json:"invited_by,omitempty"` // the inviting admin's username
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MaxUnread caps an unread count: counting stops there, so a room read long ago costs a
// bounded scan. Clients show it as "999+".
const MaxUnread = 999

// ReadMarker answers read and tells the user's other connections (on this gateway) that
// a room was read: Seq is the marker after the update (never lower than before).
type ReadMarker struct {
	Base
	Room   string `json:"room"`
	Seq    int64  `json:"seq"`
	Unread int64  `json:"unread"`
}

// RoomList answers rooms.
type RoomList struct {
	Base
	Mine   []RoomInfo `json:"mine"`
	Public []RoomInfo `json:"public"`
}

// OnlineUser is one entry of users.
type OnlineUser struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	Connections int    `json:"connections"`            // on all live gateways
	Here        int    `json:"here"`                   // on the answering gateway
	IdleSeconds *int64 `json:"idle_seconds,omitempty"` // since the last frame, for users connected here
}

// UserList answers users.
type UserList struct {
	Base
	Users []OnlineUser `json:"users"`
}

// ConnStats are the asking connection's own counters.
type ConnStats struct {
	ConnID       string    `json:"conn_id"`
	ConnectedAt  time.Time `json:"connected_at"`
	LastActive   time.Time `json:"last_active"`
	MessagesSent int64     `json:"messages_sent"`
	MessagesRecv int64     `json:"messages_received"`
	FramesIn     int64     `json:"frames_in"`
	FramesOut    int64     `json:"frames_out"`
	CatchUps     int64     `json:"catch_ups"`
}

// StatsReply answers stats (and GET /api/stats, without Conn).
type StatsReply struct {
	Base
	GatewayID   string     `json:"gateway_id"`
	StartedAt   time.Time  `json:"started_at"`
	UptimeS     int64      `json:"uptime_seconds"`
	Connections int        `json:"connections"`
	Users       int        `json:"users"`
	Rooms       int        `json:"rooms"`
	MessagesIn  int64      `json:"messages_in"`
	MessagesOut int64      `json:"messages_out"`
	SlowCatchUp int64      `json:"slow_catch_ups"`
	SlowClosed  int64      `json:"slow_closed"`
	Conn        *ConnStats `json:"conn,omitempty"`
}

// TokenReply answers token with a fresh reconnect token.
type TokenReply struct {
	Base
	ReconnectToken string    `json:"reconnect_token"`
	ExpiresAt      time.Time `json:"expires_at"`
}

// Notification forwards a notification.created event to its recipient.
type Notification struct {
	Base
	NotificationID string     `json:"notification_id"`
	Room           string     `json:"room"`
	Seq            int64      `json:"seq"`
	Reason         string     `json:"reason"`
	Sender         string     `json:"sender"`
	Preview        string     `json:"preview,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	ReadAt         *time.Time `json:"read_at,omitempty"`
	// Pending marks notifications delivered from the store at hello rather than live.
	Pending bool `json:"pending,omitempty"`
}

// NotificationList answers notifications (and GET /api/notifications).
type NotificationList struct {
	Base
	Notifications []Notification `json:"notifications"`
	UnreadCount   int            `json:"unread_count"`
	HasMore       bool           `json:"has_more"`
}

// NotificationsRead answers read_notifications: Marked is how many changed from unread to
// read (unknown ids, other users' ids and ids already read count zero).
type NotificationsRead struct {
	Base
	Marked      int `json:"marked"`
	UnreadCount int `json:"unread_count"`
}

// Reconnect is sent before a graceful close (1012): resume elsewhere from Cursors.
type Reconnect struct {
	Base
	Reason  string           `json:"reason"`
	Cursors map[string]int64 `json:"cursors"`
}

// Encode renders a server frame. Frames are plain structs, so the only failure is a bug.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every frame type is a struct of strings, numbers and times: unreachable.
		return []byte(`{"type":"error","code":"internal","message":"encode failed"}`)
	}
	return b
}
