package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kchat/kchat/pkg/event"
)

// Limits bound what a client frame may carry. Zero fields take the defaults below.
type Limits struct {
	MaxTextBytes   int `json:"max_text_bytes"`    // default 4096
	MaxClientMsgID int `json:"max_client_msg_id"` // default 64 characters
	MaxHistory     int `json:"max_history"`       // default 200 entries per page
}

// WithDefaults fills in zero fields.
func (l Limits) WithDefaults() Limits {
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = 4096
	}
	if l.MaxClientMsgID <= 0 {
		l.MaxClientMsgID = 64
	}
	if l.MaxHistory <= 0 {
		l.MaxHistory = 200
	}
	return l
}

// DefaultHistoryLimit is the page size when a history request names none.
const DefaultHistoryLimit = 50

var (
	// slug is what a user may choose as a room id: lowercase, starts with a letter or digit,
	// 2-64 characters. The colon is reserved for DM ids ("dm:<a>:<b>").
	slug = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{1,63}$`)
	// roomRef accepts slugs and DM ids; it only keeps junk out of SQL and logs, the store
	// decides whether the room exists.
	roomRef = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_:-]{0,127}$`)
	// username: 3-32 characters of [a-zA-Z0-9_-].
	username = regexp.MustCompile(`^[a-zA-Z0-9_-]{3,32}$`)
)

// ValidSlug reports whether s may be used as the id of a new room.
func ValidSlug(s string) bool { return slug.MatchString(s) }

// ValidRoomRef reports whether s is shaped like a room id (a slug or a DM id).
func ValidRoomRef(s string) bool { return roomRef.MatchString(s) }

// ValidUsername reports whether s follows the username rules.
func ValidUsername(s string) bool { return username.MatchString(s) }

// Decode parses and validates one client frame. On failure it returns an error frame with
// the code the protocol assigns to the problem and the frame's ref when it could be read.
func Decode(b []byte, lim Limits) (Frame, *Error) {
	lim = lim.WithDefaults()
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(b) {
		return nil, NewError(CodeBadJSON, "frame must be a JSON object")
	}
	var base Base
	if err := json.Unmarshal(b, &base); err != nil {
		return nil, NewError(CodeBadRequest, fieldProblem(err, "type and ref must be strings"))
	}
	if !ValidUTF8JSON(b) {
		// Checked on the raw bytes: encoding/json replaces invalid UTF-8 (and \u escapes
		// of lone surrogates) with U+FFFD, so the decoded text would look valid and be
		// stored altered.
		e := withRef(NewError(CodeBadRequest, "frame is "+InvalidUTF8), base.Ref)
		if f, ok := newFrame(base.Type); ok {
			_ = json.Unmarshal(b, f) // only to name the message below
			e.For(f)
		}
		return nil, e
	}
	f, ok := newFrame(base.Type)
	if !ok {
		if base.Type == "" {
			return nil, withRef(NewError(CodeBadRequest, "type is required"), base.Ref)
		}
		return nil, withRef(NewError(CodeUnknownType, fmt.Sprintf("unknown frame type %q", base.Type)), base.Ref)
	}
	if err := json.Unmarshal(b, f); err != nil {
		// encoding/json fills the fields that fit before it reports one that does not,
		// so a message is named unless its client_msg_id is the field at fault.
		return nil, withRef(NewError(CodeBadRequest, fieldProblem(err, "malformed field")), base.Ref).For(f)
	}
	if e := validate(f, lim); e != nil {
		return nil, withRef(e, base.Ref).For(f)
	}
	return f, nil
}

// InvalidUTF8 is why a frame or body that ValidUTF8JSON rejects is refused, after "frame
// is " or "body is ".
const InvalidUTF8 = "not valid UTF-8: invalid bytes and unpaired \\u surrogate escapes (\\ud800-\\udfff) are refused, not replaced"

// ValidUTF8JSON reports whether the raw JSON text b is valid UTF-8 and none of its
// strings holds a \u escape of a lone surrogate: both would reach the program as U+FFFD
// after decoding, silently altering what the client sent. b must be valid JSON (json.Valid).
func ValidUTF8JSON(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	inString := false
	pendingHigh := false // the previous escape was a high surrogate: a low one must follow
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inString {
			inString = c == '"'
			continue
		}
		if c != '\\' {
			if pendingHigh {
				return false
			}
			inString = c != '"'
			continue
		}
		i++ // the escaped character; valid JSON guarantees it is there
		if b[i] != 'u' {
			if pendingHigh {
				return false
			}
			continue
		}
		r := hex4(b[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if pendingHigh {
				return false
			}
			pendingHigh = true
		case r >= 0xDC00 && r <= 0xDFFF:
			if !pendingHigh {
				return false
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return false
			}
		}
	}
	return !pendingHigh
}

// hex4 parses four hex digits (valid JSON guarantees them).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

func withRef(e *Error, ref string) *Error {
	e.Ref = ref
	return e
}

// For names the message frame f refuses, when f is one (send, edit, delete, react, dm):
// its client_msg_id and room, as the frame gave them. A client keeping its messages in
// order holds the next one back until the last is acknowledged or refused for good; a
// refusal naming only a ref (often empty) left it waiting for an answer that had come.
func (e *Error) For(f Frame) *Error {
	switch f := f.(type) {
	case *Send:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *Edit:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *Delete:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *React:
		e.ClientMsgID, e.Room = f.ClientMsgID, f.Room
	case *DM:
		e.ClientMsgID = f.ClientMsgID
	}
	return e
}

// fieldProblem names the offending field of a type error, which is the useful part.
func fieldProblem(err error, fallback string) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s must be %s", te.Field, jsonKind(te.Type.Kind().String()))
	}
	return fallback
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "map":
		return "an object"
	case "ptr":
		return "an integer"
	case "bool":
		return "a boolean"
	default:
		return "a " + goKind
	}
}

func newFrame(typ string) (Frame, bool) {
	switch typ {
	case TypeHello:
		return &Hello{}, true
	case TypeAuth:
		return &Auth{}, true
	case TypePing:
		return &Ping{}, true
	case TypeSend:
		return &Send{}, true
	case TypeEdit:
		return &Edit{}, true
	case TypeDelete:
		return &Delete{}, true
	case TypeReact:
		return &React{}, true
	case TypeDM:
		return &DM{}, true
	case TypeSubscribe:
		return &Subscribe{}, true
	case TypeUnsubscribe:
		return &Unsubscribe{}, true
	case TypeHistory:
		return &History{}, true
	case TypeTyping:
		return &Typing{}, true
	case TypeJoin:
		return &Join{}, true
	case TypeLeave:
		return &Leave{}, true
	case TypeRooms:
		return &Rooms{}, true
	case TypeUsers:
		return &Users{}, true
	case TypeStats:
		return &Stats{}, true
	case TypeToken:
		return &Token{}, true
	case TypeQuit:
		return &Quit{}, true
	case TypeRead:
		return &Read{}, true
	case TypeNotifications:
		return &Notifications{}, true
	case TypeReadNotifications:
		return &ReadNotifications{}, true
	case TypeNotificationPrefs:
		return &GetNotificationPrefs{}, true
	case TypeSetNotificationPrefs:
		return &SetNotificationPrefs{}, true
	case TypeSetRoomNotificationPrefs:
		return &SetRoomNotificationPrefs{}, true
	case TypeThread:
		return &Thread{}, true
	case TypeThreadRead:
		return &ThreadRead{}, true
	case TypeSetRole:
		return &SetRole{}, true
	case TypeMute, TypeUnmute:
		return &MuteMember{}, true
	case TypeTransfer:
		return &Transfer{}, true
	case TypeUpdateRoom:
		return &UpdateRoom{}, true
	case TypeDirectory:
		return &Directory{}, true
	}
	return nil, false
}

func validate(f Frame, lim Limits) *Error {
	switch f := f.(type) {
	case *Hello:
		if f.Token != "" && f.ReconnectToken != "" {
			return NewError(CodeBadRequest, "give token or reconnect_token, not both")
		}
		for room, since := range f.Rooms {
			if !ValidRoomRef(room) {
				return NewError(CodeBadRequest, fmt.Sprintf("rooms: %q is not a room id", room))
			}
			if since < 0 {
				return NewError(CodeBadRequest, "rooms: since_seq must not be negative")
			}
		}
	case *Auth:
		if (f.Token == "") == (f.ReconnectToken == "") {
			return NewError(CodeBadRequest, "exactly one of token and reconnect_token is required")
		}
	case *Send:
		return firstErr(room(f.Room), clientMsgID(f.ClientMsgID, lim), text(f.Text, lim), ValidateAttachmentIDs(f.Attachments),
			ValidateThreadRoot(f.ThreadRoot))
	case *Edit:
		return firstErr(room(f.Room), clientMsgID(f.ClientMsgID, lim), target(f.TargetSeq), text(f.Text, lim))
	case *Delete:
		return firstErr(room(f.Room), clientMsgID(f.ClientMsgID, lim), target(f.TargetSeq))
	case *React:
		return ValidateReact(f.Room, f.ClientMsgID, f.TargetSeq, f.Emoji, f.On, lim)
	case *DM:
		if f.To == "" {
			return NewError(CodeBadRequest, "to is required")
		}
		if !ValidUsername(f.To) {
			return NewError(CodeBadRequest, "to is not a valid username")
		}
		return firstErr(clientMsgID(f.ClientMsgID, lim), text(f.Text, lim))
	case *Subscribe:
		if e := room(f.Room); e != nil {
			return e
		}
		if f.SinceSeq != nil && *f.SinceSeq < 0 {
			return NewError(CodeBadRequest, "since_seq must not be negative")
		}
	case *History:
		if e := room(f.Room); e != nil {
			return e
		}
		if f.BeforeSeq != nil && *f.BeforeSeq < 1 {
			return NewError(CodeBadRequest, "before_seq must be positive")
		}
		if f.Limit < 0 || f.Limit > lim.MaxHistory {
			return NewError(CodeBadRequest, fmt.Sprintf("limit must be between 1 and %d", lim.MaxHistory))
		}
	case *Unsubscribe:
		return room(f.Room)
	case *Typing:
		return room(f.Room)
	case *Join:
		return room(f.Room)
	case *Leave:
		if f.Successor != "" && !ValidUsername(f.Successor) {
			return NewError(CodeBadRequest, "successor is not a valid username")
		}
		return room(f.Room)
	case *Read:
		return ValidateRead(f.Room, f.Seq)
	case *Notifications:
		return ValidateNotificationPage(f.Before, f.Limit)
	case *ReadNotifications:
		return ValidateNotificationIDs(f.IDs, f.All)
	case *SetNotificationPrefs:
		if f.Level == nil {
			return NewError(CodeBadRequest, "level is required (all, mentions or none)")
		}
	case *SetRoomNotificationPrefs:
		if e := room(f.Room); e != nil {
			return e
		}
		if f.MutedUntil != nil {
			if _, e := ParseMutedUntil(*f.MutedUntil); e != nil {
				return e
			}
		}
	case *Thread:
		return ValidateThreadPage(f.Room, f.Root, f.AfterSeq, f.Limit, lim)
	case *ThreadRead:
		return ValidateThreadRead(f.Room, f.Root, f.Seq)
	case *SetRole:
		return validateSetRole(f)
	case *MuteMember:
		return validateMemberTarget(f.Room, f.User)
	case *Transfer:
		return validateMemberTarget(f.Room, f.User)
	case *UpdateRoom:
		// The settings' values (at least one given, an empty name, lengths) are the
		// gateway's check, shared with REST; absent fields stay as they are.
		return room(f.Room)
	}
	return nil
}

// ValidateRead checks a read marker request (WebSocket `read`, REST POST .../read).
func ValidateRead(r string, seq *int64) *Error {
	if e := room(r); e != nil {
		return e
	}
	if seq == nil {
		return NewError(CodeBadRequest, "seq is required")
	}
	if *seq < 0 {
		return NewError(CodeBadRequest, "seq must not be negative")
	}
	return nil
}

// ValidateThreadRoot checks a send's thread_root: absent (0) or a positive seq.
func ValidateThreadRoot(root int64) *Error {
	if root < 0 {
		return NewError(CodeBadRequest, "thread_root must be a positive seq")
	}
	return nil
}

func threadRoot(root int64) *Error {
	if root < 1 {
		return NewError(CodeBadRequest, "root is required and must be a positive seq")
	}
	return nil
}

// ValidateThreadPage checks a thread page request (WebSocket `thread`, REST GET
// .../threads/{seq}).
func ValidateThreadPage(r string, root, after int64, limit int, lim Limits) *Error {
	lim = lim.WithDefaults()
	if e := firstErr(room(r), threadRoot(root)); e != nil {
		return e
	}
	if after < 0 {
		return NewError(CodeBadRequest, "after_seq must not be negative")
	}
	if limit < 0 || limit > lim.MaxHistory {
		return NewError(CodeBadRequest, fmt.Sprintf("limit must be between 1 and %d", lim.MaxHistory))
	}
	return nil
}

// ValidateThreadRead checks a thread read marker request (WebSocket `thread_read`, REST
// POST .../threads/{seq}/read).
func ValidateThreadRead(r string, root int64, seq *int64) *Error {
	if e := firstErr(room(r), threadRoot(root)); e != nil {
		return e
	}
	if seq == nil {
		return NewError(CodeBadRequest, "seq is required")
	}
	if *seq < 0 {
		return NewError(CodeBadRequest, "seq must not be negative")
	}
	return nil
}

// MaxNotificationIDs bounds one read_notifications request.
const MaxNotificationIDs = 500

// ValidNotificationID reports whether s is shaped like a notification id (a UUID). Only
// shape is checked; an id of nobody's notification simply marks nothing.
func ValidNotificationID(s string) bool { return notificationID.MatchString(s) }

var notificationID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidateNotificationPage checks a notifications page request.
func ValidateNotificationPage(before string, limit int) *Error {
	if before != "" && !ValidNotificationID(before) {
		return NewError(CodeBadRequest, "before must be a notification id")
	}
	if limit < 0 || limit > 200 {
		return NewError(CodeBadRequest, "limit must be between 1 and 200")
	}
	return nil
}

// ValidateNotificationIDs checks a mark-read request: ids or all, not both, not neither.
func ValidateNotificationIDs(ids []string, all bool) *Error {
	if all == (len(ids) > 0) {
		return NewError(CodeBadRequest, "give ids (a non-empty list) or all:true")
	}
	if len(ids) > MaxNotificationIDs {
		return NewError(CodeBadRequest, fmt.Sprintf("at most %d ids per request", MaxNotificationIDs))
	}
	for _, id := range ids {
		if !ValidNotificationID(id) {
			return NewError(CodeBadRequest, fmt.Sprintf("ids: %q is not a notification id", id))
		}
	}
	return nil
}

func firstErr(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func room(r string) *Error {
	if r == "" {
		return NewError(CodeBadRequest, "room is required")
	}
	if !ValidRoomRef(r) {
		return NewError(CodeBadRequest, "room is not a valid room id")
	}
	return nil
}

func clientMsgID(id string, lim Limits) *Error {
	if id == "" {
		return NewError(CodeBadRequest, "client_msg_id is required")
	}
	if utf8.RuneCountInString(id) > lim.MaxClientMsgID {
		return NewError(CodeBadRequest, fmt.Sprintf("client_msg_id is longer than %d characters", lim.MaxClientMsgID))
	}
	if strings.ContainsRune(id, 0) {
		// PostgreSQL text cannot hold NUL: the send check would fail as "unavailable"
		// and the client would retry it forever.
		return NewError(CodeBadRequest, "client_msg_id must not contain NUL characters")
	}
	return nil
}

// text checks the one limit that has its own code, so a client can tell "shorten it"
// from "fix your program".
func text(t string, lim Limits) *Error {
	if t == "" {
		return NewError(CodeBadRequest, "text is required")
	}
	if len(t) > lim.MaxTextBytes {
		return NewError(CodeTooLarge, fmt.Sprintf("text is longer than %d bytes", lim.MaxTextBytes))
	}
	if !utf8.ValidString(t) {
		return NewError(CodeBadRequest, "text must be valid UTF-8")
	}
	if strings.ContainsRune(t, 0) {
		// PostgreSQL text cannot hold NUL: persistence would dead-letter the message
		// after the client was told it was accepted (found by the security tests).
		return NewError(CodeBadRequest, "text must not contain NUL characters")
	}
	return nil
}

func target(seq int64) *Error {
	if seq < 1 {
		return NewError(CodeBadRequest, "target_seq is required and must be positive")
	}
	return nil
}

// MaxEmojiBytes bounds a reaction's emoji: room for flags, keycaps, skin tones and the
// usual joined sequences, far too little for a message smuggled in as a reaction.
const MaxEmojiBytes = 32

// ValidateEmoji checks a reaction's emoji: 1 to MaxEmojiBytes bytes of valid UTF-8 with no
// whitespace, control or format-only characters other than the zero-width joiner and
// variation selectors that emoji sequences are built with. It does not try to decide what
// is an emoji (Unicode adds new ones every year); it keeps out what would render as
// nothing, break a layout or hide text. Invalid input is refused, never altered.
func ValidateEmoji(e string) *Error {
	if e == "" {
		return NewError(CodeBadRequest, "emoji is required")
	}
	if len(e) > MaxEmojiBytes {
		return NewError(CodeBadRequest, fmt.Sprintf("emoji is longer than %d bytes", MaxEmojiBytes))
	}
	if !utf8.ValidString(e) {
		return NewError(CodeBadRequest, "emoji must be valid UTF-8")
	}
	for _, r := range e {
		switch {
		case r == 0x200D || (r >= 0xFE00 && r <= 0xFE0F) || (r >= 0xE0020 && r <= 0xE007F):
			// zero-width joiner, variation selectors, tag characters (subdivision flags)
		case unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return NewError(CodeBadRequest, "emoji must not contain whitespace, control or invisible characters")
		}
	}
	return nil
}

// ValidateReact checks a reaction toggle (WebSocket `react`, REST POST .../reactions).
func ValidateReact(r, clientID string, targetSeq int64, emoji string, on *bool, lim Limits) *Error {
	lim = lim.WithDefaults()
	if e := firstErr(room(r), clientMsgID(clientID, lim), target(targetSeq), ValidateEmoji(emoji)); e != nil {
		return e
	}
	if on == nil {
		return NewError(CodeBadRequest, "on is required (true adds the reaction, false removes it)")
	}
	return nil
}

// ValidateText applies the send rules to REST bodies, which do not go through Decode.
func ValidateText(clientID, t string, lim Limits) *Error {
	lim = lim.WithDefaults()
	return firstErr(clientMsgID(clientID, lim), text(t, lim))
}

// uploadID is the shape of the ids the gateway gives uploads (UUIDs, lower-case).
var uploadID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidUploadID reports whether s can be an upload id.
func ValidUploadID(s string) bool { return uploadID.MatchString(s) }

// ValidateAttachmentIDs checks a send's attachments: at most event.MaxAttachments
// distinct upload ids.
func ValidateAttachmentIDs(ids []string) *Error {
	if len(ids) > event.MaxAttachments {
		return NewError(CodeBadRequest, fmt.Sprintf("attachments: at most %d per message", event.MaxAttachments))
	}
	for i, id := range ids {
		if !ValidUploadID(id) {
			return NewError(CodeBadRequest, fmt.Sprintf("attachments: %q is not an upload id", id))
		}
		if slices.Contains(ids[:i], id) {
			return NewError(CodeBadRequest, fmt.Sprintf("attachments: %s is given twice", id))
		}
	}
	return nil
}
