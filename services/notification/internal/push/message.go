package push

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/kchat/kchat/pkg/event"
)

// Message is the JSON a device receives (decrypted by the browser and handed to the
// service worker, web/static/sw.js). ID is the notification id: the same push sent twice
// carries the same one, so a receiver can drop the second copy.
type Message struct {
	ID       string `json:"id"`
	Room     string `json:"room"`
	RoomName string `json:"room_name"`
	RoomKind string `json:"room_kind"`
	Seq      int64  `json:"seq"`
	Reason   string `json:"reason"`
	Sender   string `json:"sender"` // username (the id if the account is gone)
	Preview  string `json:"preview"`
	Title    string `json:"title"` // what to show, e.g. "ann mentioned you in #general"
	URL      string `json:"url"`   // relative to the page: opens the room
}

// payload fills in the title and link and encodes m.
func (m Message) payload() ([]byte, error) {
	switch {
	case m.Reason == event.ReasonDM || m.RoomKind == event.RoomKindDM:
		m.Title = "Direct message from " + m.Sender
	case m.Reason == event.ReasonMention:
		m.Title = m.Sender + " mentioned you in #" + m.RoomName
	case m.Reason == event.ReasonThread:
		m.Title = m.Sender + " replied in a thread in #" + m.RoomName
	default:
		m.Title = m.Sender + " in #" + m.RoomName
	}
	m.URL = "/?" + url.Values{"room": {m.Room}, "seq": {strconv.FormatInt(m.Seq, 10)}}.Encode()
	return json.Marshal(m)
}

// Topic is the Topic header of a notification's pushes (RFC 8030 §5.4): at most 32
// base64url characters, which a UUID's 32 hex digits are. A push service replaces an
// undelivered push with a newer one of the same topic, so a resend never shows twice on a
// device that was offline.
func Topic(notificationID string) string { return strings.ReplaceAll(notificationID, "-", "") }

// urgency: a DM or a mention should wake a phone, a busy room's message need not.
func urgency(reason string) string {
	if reason == event.ReasonRoom {
		return "normal"
	}
	return "high"
}
