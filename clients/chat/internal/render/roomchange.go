package render

import (
	"fmt"
	"strings"

	"github.com/kchat/kchat/pkg/protocol"
)

// roomChange renders a room_change entry as a sentence about its author (name): "ann made
// ben an admin", "ann muted ben", "ann set the topic to "…"". A change this client does
// not know yet is still shown, by its name, rather than dropped.
func roomChange(head, name string, m *protocol.Message) string {
	target := Clean(m.TargetName)
	if target == "" {
		target = Clean(m.Target)
	}
	if target == "" {
		target = "?"
	}
	var what string
	switch m.Change {
	case protocol.ChangeRole:
		what = fmt.Sprintf("made %s %s", target, withArticle(Clean(m.Role)))
	case protocol.ChangeMuted:
		what = "muted " + target
	case protocol.ChangeUnmuted:
		what = "unmuted " + target
	case protocol.ChangeOwner:
		what = "transferred ownership to " + target
	case protocol.ChangeSettings:
		what = settingsChange(m.Settings)
	default:
		what = fmt.Sprintf("changed the room (%s)", Clean(m.Change))
	}
	return fmt.Sprintf("%s * %s %s", head, name, what)
}

// settingsChange says what a settings change set, in the order name, topic, privacy.
func settingsChange(s *protocol.RoomSettingsChange) string {
	if s == nil {
		return "changed the room's settings"
	}
	var parts []string
	if s.Name != nil {
		parts = append(parts, fmt.Sprintf("renamed the room to %q", Clean(*s.Name)))
	}
	if s.Topic != nil {
		if *s.Topic == "" {
			parts = append(parts, "cleared the topic")
		} else {
			parts = append(parts, fmt.Sprintf("set the topic to %q", Clean(*s.Topic)))
		}
	}
	if s.Private != nil {
		if *s.Private {
			parts = append(parts, "made the room private")
		} else {
			parts = append(parts, "made the room public")
		}
	}
	if len(parts) == 0 {
		return "changed the room's settings"
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// withArticle is "an admin", "a member".
func withArticle(role string) string {
	if role == "" {
		return "a ?"
	}
	if strings.ContainsRune("aeiou", rune(role[0])) {
		return "an " + role
	}
	return "a " + role
}
