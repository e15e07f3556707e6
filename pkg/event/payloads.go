package event

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Event types. A breaking change to a type's data gets a new type string
// (e.g. "message.stored.v2") rather than a new meaning for an old one.
const (
	TypeMessageSubmitted    = "message.submitted"
	TypeMembershipChanged   = "membership.changed"
	TypeMessageStored       = "message.stored"
	TypeTyping              = "typing"
	TypePresenceChanged     = "presence.changed"
	TypeSubscriptionChanged = "subscription.changed"
	TypeGatewayHeartbeat    = "gateway.heartbeat"
	TypeNotificationCreated = "notification.created"
)

// Values of the enumerated data fields.
const (
	KindMessage = "message"
	KindEdit    = "edit"
	KindDelete  = "delete"
	KindJoin    = "join"
	KindLeave   = "leave"
	// KindReaction toggles an emoji on a message: like an edit it is a timeline entry of
	// its own naming its target, so it is ordered with the messages it refers to.
	KindReaction = "reaction"
	// KindRoomChange records who changed a member's role or mute, the room's ownership or
	// its settings (MessageStored.Change): a timeline entry like a join, so every client
	// sees room state change in the same order as the messages around it.
	KindRoomChange = "room_change"

	ChangeJoined = "joined"
	ChangeLeft   = "left"
	// ChangeKicked and ChangeBanned are a room admin (By) removing User; a ban also keeps
	// them out until lifted. Persistence stores both as leave entries.
	ChangeKicked = "kicked"
	ChangeBanned = "banned"
	// ChangeRole, ChangeMuted, ChangeUnmuted, ChangeOwner and ChangeSettings are made by
	// By to User's standing in the room (a role set to Role; a mute; a mute lifted;
	// ownership handed to User, By becoming an admin) or to the room itself (Settings;
	// User is then By). Persistence stores them as room_change entries with the same
	// change value.
	ChangeRole     = "role"
	ChangeMuted    = "muted"
	ChangeUnmuted  = "unmuted"
	ChangeOwner    = "owner"
	ChangeSettings = "settings"

	RoomKindRoom = "room"
	RoomKindDM   = "dm"

	// Room roles, owner > admin > member (MembershipChanged.Role).
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"

	TypingStarted = "started"
	TypingStopped = "stopped"

	StatusOnline  = "online"
	StatusOffline = "offline"

	ReasonDM      = "dm"
	ReasonMention = "mention"
	ReasonRoom    = "room"
	// ReasonThread notifies a thread's participants (its root's author and earlier
	// repliers) of a reply.
	ReasonThread = "thread"
)

// MessageSubmitted is a user's request to post, edit or delete a message, as
// accepted by a gateway and not yet sequenced by persistence.
type MessageSubmitted struct {
	RoomID      string `json:"room_id"`
	Sender      string `json:"sender"`
	SenderName  string `json:"sender_name"`
	ClientMsgID string `json:"client_msg_id"` // lets persistence drop client retries
	Text        string `json:"text"`          // length is limited by the gateway, not here
	Kind        string `json:"kind"`          // KindMessage, KindEdit, KindDelete or KindReaction
	TargetSeq   int64  `json:"target_seq,omitempty"`
	// Emoji and On are set for KindReaction only: On true adds the sender's Emoji to the
	// target message, false (absent) removes it.
	Emoji       string    `json:"emoji,omitempty"`
	On          bool      `json:"on,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	// Attachments are upload ids (POST /api/rooms/{id}/uploads) the message carries, kind
	// message only, at most MaxAttachments; persistence links them to the message in the
	// transaction that stores it, after checking they are the sender's uploads to this
	// room and not attached yet.
	Attachments []string `json:"attachments,omitempty"`
	// ThreadRoot, kind message only, makes the message a reply in the thread rooted at
	// that seq of the same room: a message that is not itself a reply. Persistence checks
	// it again and keeps the thread's summary in the reply's transaction.
	ThreadRoot int64 `json:"thread_root,omitempty"`
}

// MaxAttachments bounds the attachments of one message.
const MaxAttachments = 10

// Attachment describes a file a stored message carries, as persistence linked it.
type Attachment struct {
	ID          string `json:"id"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"` // sniffed from the content by the gateway
	Size        int64  `json:"size"`
	Width       int    `json:"width,omitempty"`     // images only
	Height      int    `json:"height,omitempty"`    // images only
	Thumbnail   bool   `json:"thumbnail,omitempty"` // a thumbnail can be downloaded
}

func (MessageSubmitted) EventType() string      { return TypeMessageSubmitted }
func (m MessageSubmitted) EventSubject() string { return m.RoomID }

func (m MessageSubmitted) Validate() error {
	return firstErr(
		required("room_id", m.RoomID),
		required("sender", m.Sender),
		required("sender_name", m.SenderName),
		required("client_msg_id", m.ClientMsgID),
		oneOf("kind", m.Kind, KindMessage, KindEdit, KindDelete, KindReaction),
		textFor(m.Kind, m.Text),
		targetFor(m.Kind, m.TargetSeq),
		emojiFor(m.Kind, m.Emoji),
		attachmentsFor(m.Kind, m.Attachments),
		threadRootFor(m.Kind, m.ThreadRoot),
		requiredTime("submitted_at", m.SubmittedAt),
	)
}

// MembershipChanged is a user joining or leaving a room, or a change of a member's role
// or mute, of the room's owner or of its settings, as accepted by a gateway; persistence
// turns it into a join, leave or room_change timeline entry.
type MembershipChanged struct {
	RoomID   string `json:"room_id"`
	User     string `json:"user"`
	UserName string `json:"user_name"`
	// Change is ChangeJoined, ChangeLeft, ChangeKicked, ChangeBanned, ChangeRole,
	// ChangeMuted, ChangeUnmuted, ChangeOwner or ChangeSettings.
	Change string `json:"change"`
	By     string `json:"by"` // who made the change; equals User for self-service
	// ByName is By's username when By is not User (an admin's add, kick or ban, a role
	// change...).
	ByName    string    `json:"by_name,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
	// Role is User's new role: set for ChangeRole and ChangeOwner (then "owner"), and
	// for the ChangeJoined of a room's creator ("owner"); a join without it gives member.
	Role string `json:"role,omitempty"`
	// Settings are the room settings that changed, for ChangeSettings only.
	Settings *RoomSettingsChange `json:"settings,omitempty"`
}

// RoomSettingsChange holds the room settings a change set; the others are nil.
type RoomSettingsChange struct {
	Name    *string `json:"name,omitempty"`
	Topic   *string `json:"topic,omitempty"`
	Private *bool   `json:"private,omitempty"`
}

// Empty reports whether the change sets nothing.
func (c *RoomSettingsChange) Empty() bool {
	return c == nil || (c.Name == nil && c.Topic == nil && c.Private == nil)
}

// roomChanges are the MembershipChanged changes that are room_change entries.
var roomChanges = []string{ChangeRole, ChangeMuted, ChangeUnmuted, ChangeOwner, ChangeSettings}

// IsRoomChange reports whether a membership change is stored as a room_change entry.
func IsRoomChange(change string) bool { return slices.Contains(roomChanges, change) }

func (MembershipChanged) EventType() string      { return TypeMembershipChanged }
func (m MembershipChanged) EventSubject() string { return m.RoomID }

func (m MembershipChanged) Validate() error {
	return firstErr(
		required("room_id", m.RoomID),
		required("user", m.User),
		required("user_name", m.UserName),
		oneOf("change", m.Change, ChangeJoined, ChangeLeft, ChangeKicked, ChangeBanned,
			ChangeRole, ChangeMuted, ChangeUnmuted, ChangeOwner, ChangeSettings),
		required("by", m.By),
		requiredTime("changed_at", m.ChangedAt),
		roleFor(m.Change, m.Role),
		settingsFor(m.Change, m.Settings),
	)
}

// MessageStored is one entry of a room's timeline, published by the outbox
// relay after persistence committed it with its sequence number.
type MessageStored struct {
	RoomID      string    `json:"room_id"`
	Seq         int64     `json:"seq"`
	Kind        string    `json:"kind"`       // KindMessage, KindJoin, KindLeave, KindEdit, KindDelete, KindReaction or KindRoomChange
	MessageID   string    `json:"message_id"` // id of the submitted event, for end-to-end tracing
	Sender      string    `json:"sender"`
	SenderName  string    `json:"sender_name"`
	ClientMsgID string    `json:"client_msg_id,omitempty"`
	Text        string    `json:"text,omitempty"`
	TargetSeq   int64     `json:"target_seq,omitempty"`
	Emoji       string    `json:"emoji,omitempty"`   // KindReaction: the emoji toggled
	On          bool      `json:"on,omitempty"`      // KindReaction: added (true) or removed
	RoomKind    string    `json:"room_kind"`         // RoomKindRoom or RoomKindDM
	Members     []string  `json:"members,omitempty"` // set for DMs so fan-out needs no lookup
	SentAt      time.Time `json:"sent_at"`
	StoredAt    time.Time `json:"stored_at"`
	// Attachments are the files a message carries (kind message only).
	Attachments []Attachment `json:"attachments,omitempty"`
	// ThreadRoot is set on a reply (kind message): the seq of its thread's root.
	ThreadRoot int64 `json:"thread_root,omitempty"`
	// ThreadParticipants, set on a reply, are the user ids of the thread's participants
	// before it (the root's author, then earlier repliers, first first): whom the
	// notification rules tell of it, without a lookup that a rebuild from the log could
	// not repeat.
	ThreadParticipants []string `json:"thread_participants,omitempty"`
	// Change, set on room_change entries (whose Sender made the change), is ChangeRole,
	// ChangeMuted, ChangeUnmuted, ChangeOwner or ChangeSettings. Target and TargetName
	// name the member it concerns (not for settings), Role is their new role (role,
	// owner) and Settings what changed (settings).
	Change     string              `json:"change,omitempty"`
	Target     string              `json:"target,omitempty"`
	TargetName string              `json:"target_name,omitempty"`
	Role       string              `json:"role,omitempty"`
	Settings   *RoomSettingsChange `json:"settings,omitempty"`
}

func (MessageStored) EventType() string      { return TypeMessageStored }
func (m MessageStored) EventSubject() string { return m.RoomID }

func (m MessageStored) Validate() error {
	return firstErr(
		required("room_id", m.RoomID),
		atLeast("seq", m.Seq, 1),
		oneOf("kind", m.Kind, KindMessage, KindJoin, KindLeave, KindEdit, KindDelete, KindReaction, KindRoomChange),
		required("message_id", m.MessageID),
		required("sender", m.Sender),
		required("sender_name", m.SenderName),
		textFor(m.Kind, m.Text),
		targetFor(m.Kind, m.TargetSeq),
		emojiFor(m.Kind, m.Emoji),
		threadRootFor(m.Kind, m.ThreadRoot),
		roomChangeFor(m.Kind, m.Change, m.Role, m.Settings),
		oneOf("room_kind", m.RoomKind, RoomKindRoom, RoomKindDM),
		membersFor(m.RoomKind, m.Members),
		requiredTime("sent_at", m.SentAt),
		requiredTime("stored_at", m.StoredAt),
	)
}

// Typing is an ephemeral typing indicator; it is never persisted.
type Typing struct {
	RoomID   string `json:"room_id"`
	User     string `json:"user"`
	UserName string `json:"user_name"`
	State    string `json:"state"` // TypingStarted or TypingStopped
}

func (Typing) EventType() string      { return TypeTyping }
func (t Typing) EventSubject() string { return t.RoomID }

func (t Typing) Validate() error {
	return firstErr(
		required("room_id", t.RoomID),
		required("user", t.User),
		required("user_name", t.UserName),
		oneOf("state", t.State, TypingStarted, TypingStopped),
	)
}

// PresenceChanged reports a user's presence as seen by one gateway; a user
// is online while any gateway reports connections for them.
type PresenceChanged struct {
	User        string    `json:"user"`
	UserName    string    `json:"user_name"`
	Status      string    `json:"status"` // StatusOnline or StatusOffline
	GatewayID   string    `json:"gateway_id"`
	Connections int       `json:"connections"` // the user's open connections on GatewayID
	At          time.Time `json:"at"`
}

func (PresenceChanged) EventType() string      { return TypePresenceChanged }
func (p PresenceChanged) EventSubject() string { return p.User }

func (p PresenceChanged) Validate() error {
	return firstErr(
		required("user", p.User),
		required("user_name", p.UserName),
		oneOf("status", p.Status, StatusOnline, StatusOffline),
		required("gateway_id", p.GatewayID),
		atLeast("connections", int64(p.Connections), 0),
		requiredTime("at", p.At),
	)
}

// SubscriptionChanged announces whether a gateway has local subscribers for
// a room, so fan-out only addresses gateways that need the room's events.
type SubscriptionChanged struct {
	GatewayID  string    `json:"gateway_id"`
	RoomID     string    `json:"room_id"`
	Subscribed bool      `json:"subscribed"`
	At         time.Time `json:"at"`
}

func (SubscriptionChanged) EventType() string      { return TypeSubscriptionChanged }
func (s SubscriptionChanged) EventSubject() string { return s.RoomID }

func (s SubscriptionChanged) Validate() error {
	return firstErr(
		required("gateway_id", s.GatewayID),
		required("room_id", s.RoomID),
		requiredTime("at", s.At),
	)
}

// GatewayHeartbeat proves a gateway is alive; when heartbeats stop, its
// subscriptions and presence can be expired by others.
type GatewayHeartbeat struct {
	GatewayID   string    `json:"gateway_id"`
	Addr        string    `json:"addr"`
	StartedAt   time.Time `json:"started_at"` // a change means the gateway restarted and lost its state
	At          time.Time `json:"at"`
	Connections int       `json:"connections"`
}

func (GatewayHeartbeat) EventType() string      { return TypeGatewayHeartbeat }
func (g GatewayHeartbeat) EventSubject() string { return g.GatewayID }

func (g GatewayHeartbeat) Validate() error {
	return firstErr(
		required("gateway_id", g.GatewayID),
		required("addr", g.Addr),
		requiredTime("started_at", g.StartedAt),
		requiredTime("at", g.At),
		atLeast("connections", int64(g.Connections), 0),
	)
}

// NotificationCreated tells a user about a timeline entry they should see
// even when they are not watching the room.
type NotificationCreated struct {
	NotificationID string    `json:"notification_id"`
	User           string    `json:"user"` // the recipient
	RoomID         string    `json:"room_id"`
	Seq            int64     `json:"seq"`
	Reason         string    `json:"reason"` // ReasonDM, ReasonMention, ReasonThread or ReasonRoom
	Sender         string    `json:"sender"`
	Preview        string    `json:"preview"` // may be empty, e.g. for a deleted message
	CreatedAt      time.Time `json:"created_at"`
}

func (NotificationCreated) EventType() string      { return TypeNotificationCreated }
func (n NotificationCreated) EventSubject() string { return n.User }

func (n NotificationCreated) Validate() error {
	return firstErr(
		required("notification_id", n.NotificationID),
		required("user", n.User),
		required("room_id", n.RoomID),
		atLeast("seq", n.Seq, 1),
		oneOf("reason", n.Reason, ReasonDM, ReasonMention, ReasonThread, ReasonRoom),
		required("sender", n.Sender),
		requiredTime("created_at", n.CreatedAt),
	)
}

// firstErr keeps Validate methods declarative; checks are cheap, so
// evaluating all of them eagerly costs nothing worth optimising.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func required(field, v string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	return nil
}

func requiredTime(field string, t time.Time) error {
	if t.IsZero() {
		return fieldErr(field, "is required")
	}
	return nil
}

func oneOf(field, v string, allowed ...string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	if !slices.Contains(allowed, v) {
		return fieldErr(field, "must be one of "+strings.Join(allowed, ", "))
	}
	return nil
}

func atLeast(field string, v, lowest int64) error {
	if v < lowest {
		if lowest == 1 {
			return fieldErr(field, "must be a positive integer")
		}
		return fieldErr(field, "must not be negative")
	}
	return nil
}

// textFor requires text where the kind carries content; a delete or a
// membership entry has none.
func textFor(kind, text string) error {
	if (kind == KindMessage || kind == KindEdit) && text == "" {
		return fieldErr("text", "is required for kind "+kind)
	}
	return nil
}

// targetFor requires the sequence number of the message an edit, delete or
// reaction applies to.
func targetFor(kind string, target int64) error {
	if kind != KindEdit && kind != KindDelete && kind != KindReaction {
		return nil
	}
	if target < 1 {
		return fieldErr("target_seq", "is required for kind "+kind+" and must be positive")
	}
	return nil
}

// emojiFor requires the emoji of a reaction. Which strings are acceptable emoji is
// the gateway's rule (protocol.ValidateEmoji); events only carry them.
func emojiFor(kind, emoji string) error {
	if kind == KindReaction && emoji == "" {
		return fieldErr("emoji", "is required for kind "+kind)
	}
	return nil
}

// roomChangeFor checks a room_change entry's change, role and settings.
func roomChangeFor(kind, change, role string, settings *RoomSettingsChange) error {
	if kind != KindRoomChange {
		return nil
	}
	return firstErr(oneOf("change", change, roomChanges...), roleFor(change, role), settingsFor(change, settings))
}

// roleFor requires the new role of a role change or an ownership transfer, and a role
// that exists.
func roleFor(change, role string) error {
	switch {
	case role != "" && role != RoleOwner && role != RoleAdmin && role != RoleMember:
		return fieldErr("role", "must be one of owner, admin, member")
	case (change == ChangeRole || change == ChangeOwner) && role == "":
		return fieldErr("role", "is required for change "+change)
	}
	return nil
}

// settingsFor requires a settings change to set at least one setting, and a name to be
// non-empty.
func settingsFor(change string, s *RoomSettingsChange) error {
	switch {
	case s != nil && s.Name != nil && *s.Name == "":
		return fieldErr("settings", "must not set an empty name")
	case change == ChangeSettings && s.Empty():
		return fieldErr("settings", "is required for change settings and must set name, topic or private")
	}
	return nil
}

// attachmentsFor allows up to MaxAttachments distinct, non-empty upload ids on a message.
// threadRootFor allows a thread root on messages only: an edit, delete or reaction
// follows its target, wherever that is.
func threadRootFor(kind string, root int64) error {
	switch {
	case root == 0:
		return nil
	case kind != KindMessage:
		return fieldErr("thread_root", "is allowed for kind message only")
	case root < 1:
		return fieldErr("thread_root", "must be positive")
	}
	return nil
}

func attachmentsFor(kind string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if kind != KindMessage {
		return fieldErr("attachments", "is allowed for kind message only")
	}
	if len(ids) > MaxAttachments {
		return fieldErr("attachments", "must not hold more than "+strconv.Itoa(MaxAttachments)+" ids")
	}
	for i, id := range ids {
		if id == "" || slices.Contains(ids[:i], id) {
			return fieldErr("attachments", "must hold distinct, non-empty ids")
		}
	}
	return nil
}

func membersFor(roomKind string, members []string) error {
	if roomKind == RoomKindDM && len(members) == 0 {
		return fieldErr("members", "is required for room_kind dm")
	}
	for _, m := range members {
		if m == "" {
			return fieldErr("members", "must not contain empty user ids")
		}
	}
	return nil
}
