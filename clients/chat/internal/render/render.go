// Package render turns server frames into the terminal client's output lines. Every line
// that shows a timeline entry has the same shape, "[15:04:05] #room <sender> text", so
// that scripts can read the output with one pattern; anything else (headers, lists) has a
// different first character.
package render

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kchat/kchat/pkg/protocol"
)

// Clean makes user-supplied text safe for a terminal and keeps output one line per entry:
// newlines become " ⏎ " and other control characters (ESC above all, which could rewrite
// the user's screen or title) become U+FFFD.
func Clean(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(" ⏎ ")
		case r == '\t':
			b.WriteRune(' ')
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || isBidiOverride(r):
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isBidiOverride catches the invisible direction controls that can make a line read
// differently from what it contains.
func isBidiOverride(r rune) bool {
	return r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069'
}

// Renderer formats entries; Label names rooms (DMs by the other person).
type Renderer struct {
	Loc   *time.Location
	Label func(room string) string
}

// RoomLabel is "#room" for rooms; DMs get their label from Label (e.g. "@bob").
func (r Renderer) RoomLabel(room string) string {
	if r.Label != nil {
		if l := r.Label(room); l != "" {
			return l
		}
	}
	if strings.HasPrefix(room, "dm:") {
		return "@dm"
	}
	return "#" + room
}

func (r Renderer) clock(t time.Time) string {
	if t.IsZero() {
		return "--:--:--"
	}
	loc := r.Loc
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format("15:04:05")
}

// Entry renders one timeline entry (a live message frame or a history entry).
func (r Renderer) Entry(m *protocol.Message) string {
	head := fmt.Sprintf("[%s] %s", r.clock(m.SentAt), r.RoomLabel(m.Room))
	name := Clean(m.SenderName)
	if name == "" {
		name = "?"
	}
	switch m.Kind {
	case protocol.KindJoin:
		return fmt.Sprintf("%s * %s joined", head, name)
	case protocol.KindLeave:
		if m.Text != "" { // a removal by an admin: "kicked by alice"
			return fmt.Sprintf("%s * %s left (%s)", head, name, Clean(m.Text))
		}
		return fmt.Sprintf("%s * %s left", head, name)
	case protocol.KindDelete:
		return fmt.Sprintf("%s * %s deleted message %d", head, name, m.TargetSeq)
	case protocol.KindEdit:
		return fmt.Sprintf("%s <%s> %s (edit of %d)", head, name, Clean(m.Text), m.TargetSeq)
	case protocol.KindReaction:
		verb := "reacted"
		if m.On == nil || !*m.On {
			verb = "removed"
		}
		return fmt.Sprintf("%s * %s %s %s on message %d", head, name, verb, Clean(m.Emoji), m.TargetSeq)
	case protocol.KindRoomChange:
		return roomChange(head, name, m)
	}
	text := Clean(m.Text)
	switch {
	case m.DeletedAt != nil:
		text = "(deleted)"
	case m.EditedAt != nil:
		text += " (edited)"
	}
	if m.DeletedAt == nil {
		// Files are named, not fetched: GET /api/attachments/{id} downloads one.
		for _, a := range m.Attachments {
			text += fmt.Sprintf(" [file: %s, %s, %d bytes, id %s]", Clean(a.Filename), Clean(a.ContentType), a.Size, Clean(a.ID))
		}
	}
	if m.ThreadRoot > 0 {
		text += fmt.Sprintf(" (reply to %d)", m.ThreadRoot)
	}
	if t := m.Thread; t != nil && t.ReplyCount > 0 {
		text += fmt.Sprintf(" [%d %s, last %s", t.ReplyCount, plural(t.ReplyCount, "reply", "replies"), r.clock(deref(t.LastReplyAt)))
		if t.Unread > 0 {
			text += fmt.Sprintf(", %d unread", t.Unread)
		}
		text += fmt.Sprintf(": /thread %d]", m.Seq)
	}
	return fmt.Sprintf("%s <%s> %s", head, name, text)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// ThreadPage shows a thread: a header, the root, its replies oldest first, a footer.
func (r Renderer) ThreadPage(f *protocol.ThreadPage) []string {
	out := []string{fmt.Sprintf("--- thread of %s/%d: %d replies shown ---", r.RoomLabel(f.Room), f.Root.Seq, len(f.Messages))}
	root := f.Root
	root.Thread = nil // the header says it
	out = append(out, r.Entry(&root))
	for i := range f.Messages {
		out = append(out, r.Entry(&f.Messages[i]))
	}
	if f.HasMore {
		return append(out, "--- more replies: see the web page or GET /api/rooms/{room}/threads/{seq}?after= ---")
	}
	return append(out, "--- end of thread ---")
}

// Users lists who is online, one per line after a header.
func Users(us []protocol.OnlineUser) []string {
	out := []string{fmt.Sprintf("--- %d online ---", len(us))}
	for _, u := range us {
		var notes []string
		if u.Connections > 1 {
			notes = append(notes, fmt.Sprintf("%d connections", u.Connections))
		}
		// Idle time is only known for users on the answering gateway; a minute without a
		// frame is worth mentioning, seconds are not.
		if u.IdleSeconds != nil && *u.IdleSeconds >= 60 {
			notes = append(notes, "idle "+(time.Duration(*u.IdleSeconds)*time.Second).String())
		}
		line := "  " + Clean(u.Username)
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		out = append(out, line)
	}
	return out
}

// Rooms lists the user's rooms (current one marked) and public rooms not yet joined.
func (r Renderer) Rooms(mine, public []protocol.RoomInfo, current string) []string {
	out := []string{"--- your rooms ---"}
	joined := map[string]bool{}
	for _, x := range mine {
		joined[x.ID] = true
		mark := " "
		if x.ID == current {
			mark = "*"
		}
		out = append(out, fmt.Sprintf("%s %s (%d entries)", mark, r.RoomLabel(x.ID), x.LastSeq))
	}
	if len(mine) == 0 {
		out = append(out, "  (none: /join ROOM)")
	}
	out = append(out, "--- public rooms ---")
	n := 0
	for _, x := range public {
		if joined[x.ID] {
			continue
		}
		n++
		out = append(out, fmt.Sprintf("  #%s (%d entries)", x.ID, x.LastSeq))
	}
	if n == 0 {
		out = append(out, "  (no others)")
	}
	return out
}

// Stats shows the connection's and the gateway's counters.
func (r Renderer) Stats(f *protocol.StatsReply, now time.Time) []string {
	out := []string{fmt.Sprintf("--- stats (%s) ---", f.GatewayID)}
	if c := f.Conn; c != nil {
		out = append(out,
			fmt.Sprintf("  messages sent: %d", c.MessagesSent),
			fmt.Sprintf("  messages received: %d", c.MessagesRecv),
			fmt.Sprintf("  connected since: %s", r.clock(c.ConnectedAt)),
			fmt.Sprintf("  last active: %s ago", now.Sub(c.LastActive).Round(time.Second)))
	}
	out = append(out, fmt.Sprintf("  gateway: %d users on %d connections, %d messages in, %d out, up %s",
		f.Users, f.Connections, f.MessagesIn, f.MessagesOut, (time.Duration(f.UptimeS)*time.Second).String()))
	return out
}

// Notification is a one-line notice; it starts with "!" so it never matches an entry.
func (r Renderer) Notification(f *protocol.Notification) string {
	what := f.Reason
	switch f.Reason {
	case "dm":
		what = "direct message"
	case "mention":
		what = "mention"
	case "thread":
		what = "thread reply"
	}
	line := fmt.Sprintf("! [%s] %s in %s", r.clock(f.CreatedAt), what, r.RoomLabel(f.Room))
	if f.Preview != "" {
		line += ": " + Clean(f.Preview)
	}
	return line
}

// SearchHit is one hit of GET /api/search, as far as the client shows it.
type SearchHit struct {
	Room       string    `json:"room"`
	Seq        int64     `json:"seq"`
	SenderName string    `json:"sender_name"`
	SentAt     time.Time `json:"sent_at"`
	Snippet    []struct {
		Text  string `json:"text"`
		Match bool   `json:"match"`
	} `json:"snippet"`
}

// SearchHits lists hits after a header, best first, one line each:
// "  2006-01-02 15:04 #room/seq <sender> snippet" with the matched words in «».
func (r Renderer) SearchHits(q string, hits []SearchHit, more bool) []string {
	out := []string{fmt.Sprintf("--- search %s: %d hits ---", Clean(q), len(hits))}
	loc := r.Loc
	if loc == nil {
		loc = time.Local
	}
	for _, h := range hits {
		var b strings.Builder
		for _, s := range h.Snippet {
			if s.Match {
				b.WriteString("«" + Clean(s.Text) + "»")
			} else {
				b.WriteString(Clean(s.Text))
			}
		}
		out = append(out, fmt.Sprintf("  %s %s/%d <%s> %s", h.SentAt.In(loc).Format("2006-01-02 15:04"), r.RoomLabel(h.Room), h.Seq,
			Clean(h.SenderName), b.String()))
	}
	if more {
		out = append(out, "--- more hits: add words to narrow the search ---")
	} else {
		out = append(out, "--- end of search ---")
	}
	return out
}
