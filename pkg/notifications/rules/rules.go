// Package rules decides who is notified of a timeline entry and why. It is pure: the
// room's members and settings come in as values, and presence is applied by the caller.
// It lives in pkg so that the notification service and `chatctl rebuild notifications`
// apply the very same rules: a rebuild that used a copy could not find a bug in them.
//
// A message notifies each member of its room except the sender when
//   - the room is a direct message (reason dm), or
//   - the text mentions the member's username as @username (reason mention), or
//   - the message is a reply in a thread the member takes part in: they wrote its root
//     or an earlier reply (reason thread; the stored reply lists them, so the rule needs
//     no lookup and a rebuild from the log agrees), or
//   - the room has notify_all set (reason room).
//
// Each member gets at most one notification per message, for the first reason that
// applies in that order: a DM never also counts as a mention, and a mention in a
// notify_all room is reported as a mention. A participant who is no longer a member is
// not notified (recipients are always the room's members now). Only kind "message" notifies; joins, leaves,
// edits and deletes never do.
package rules

import (
	"cmp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kchat/kchat/pkg/event"
)

// PreviewRunes is the most characters of a message copied into a notification.
const PreviewRunes = 140

// Member is a member of a room.
type Member struct {
	ID       string
	Username string
}

// Room is what the rules need to know about a room.
type Room struct {
	Kind      string // event.RoomKindRoom or event.RoomKindDM
	NotifyAll bool
	Members   []Member
}

// Recipient is a member to notify and the reason.
type Recipient struct {
	User   string
	Reason string // event.ReasonDM, event.ReasonMention, event.ReasonThread or event.ReasonRoom
}

// Recipients returns who should be notified of m, sorted by user id, before presence is
// taken into account. For a DM the members listed in the event are used (they are what
// persistence stored the message for); otherwise room's members.
func Recipients(m event.MessageStored, room Room) []Recipient {
	if m.Kind != event.KindMessage {
		return nil
	}
	var out []Recipient
	if m.RoomKind == event.RoomKindDM || room.Kind == event.RoomKindDM {
		ids := m.Members
		if len(ids) == 0 {
			for _, mem := range room.Members {
				ids = append(ids, mem.ID)
			}
		}
		for _, id := range ids {
			if id != m.Sender {
				out = append(out, Recipient{User: id, Reason: event.ReasonDM})
			}
		}
		return sortUnique(out)
	}
	mentioned := map[string]bool{}
	for _, name := range Mentions(m.Text) {
		mentioned[name] = true
	}
	participant := map[string]bool{}
	for _, id := range m.ThreadParticipants {
		participant[id] = true
	}
	for _, mem := range room.Members {
		switch {
		case mem.ID == m.Sender:
		case mem.Username != "" && mentioned[mem.Username]:
			out = append(out, Recipient{User: mem.ID, Reason: event.ReasonMention})
		case m.ThreadRoot > 0 && participant[mem.ID]:
			out = append(out, Recipient{User: mem.ID, Reason: event.ReasonThread})
		case room.NotifyAll:
			out = append(out, Recipient{User: mem.ID, Reason: event.ReasonRoom})
		}
	}
	return sortUnique(out)
}

func sortUnique(rs []Recipient) []Recipient {
	slices.SortStableFunc(rs, func(a, b Recipient) int { return cmp.Compare(a.User, b.User) })
	return slices.CompactFunc(rs, func(a, b Recipient) bool { return a.User == b.User })
}

// Mentions returns the usernames mentioned in text, in order of first appearance,
// without duplicates. A mention is "@" followed by letters, digits, '_', '-' or '.', where
// the "@" starts the text or follows a character that cannot be part of a name (so the
// "@" of "ann@example.com" is not a mention). Trailing '.' and '-' end a sentence rather
// than a name ("ping @ann." mentions ann). Names are matched exactly, as usernames are
// registered case-sensitively; unknown names simply match nobody.
func Mentions(text string) []string {
	var out []string
	seen := map[string]bool{}
	prev := rune(-1) // the rune before i; -1 at the start
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r != '@' || (prev != -1 && isNameRune(prev)) {
			prev = r
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			nr, ns := utf8.DecodeRuneInString(text[j:])
			if !isNameRune(nr) {
				break
			}
			j += ns
		}
		name := strings.TrimRight(text[i+size:j], ".-")
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
		prev = r
		i += size
	}
	return out
}

func isNameRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
}

// Preview shortens text to PreviewRunes characters, marking a cut with "…".
func Preview(text string) string {
	if utf8.RuneCountInString(text) <= PreviewRunes {
		return text
	}
	runes := []rune(text)
	return strings.TrimRightFunc(string(runes[:PreviewRunes-1]), unicode.IsSpace) + "…"
}
