package rules_test

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/rules"
)

func TestMentions(t *testing.T) {
	cases := []struct {
		text string
		want []string
	}{
		{"@ann", []string{"ann"}},
		{"hi @ann, how are you", []string{"ann"}},
		{"@ann,@bob", []string{"ann", "bob"}},
		{"ping @ann.", []string{"ann"}},
		{"ask @ann.lee about it", []string{"ann.lee"}},
		{"(@ann) and [@bob]", []string{"ann", "bob"}},
		{"mail me at email@x.com", nil},
		{"ann@bob", nil},
		{"@ann @ann @ann", []string{"ann"}},
		{"@", nil},
		{"@ alone", nil},
		{"@-.", nil},
		{"@@ann", []string{"ann"}},
		{"@Ann is not @ann", []string{"Ann", "ann"}},
		{"@zoë!", []string{"zoë"}},
		{"no mentions here", nil},
		{"", nil},
		{"line\n@bob_2 end", []string{"bob_2"}},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			if got := rules.Mentions(tc.text); !slices.Equal(got, tc.want) {
				t.Errorf("Mentions(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
}

func TestRecipients(t *testing.T) {
	members := []rules.Member{{"u-ann", "ann"}, {"u-bob", "bob"}, {"u-cat", "cat"}}
	msg := func(text string) event.MessageStored {
		return event.MessageStored{RoomID: "r", Seq: 1, Kind: event.KindMessage, Sender: "u-ann", SenderName: "ann",
			Text: text, RoomKind: event.RoomKindRoom}
	}
	dm := func(text string, ms ...string) event.MessageStored {
		m := msg(text)
		m.RoomKind, m.Members = event.RoomKindDM, ms
		return m
	}
	kind := func(k string) event.MessageStored {
		m := msg("@bob")
		m.Kind = k
		return m
	}
	reply := func(text string, participants ...string) event.MessageStored {
		m := msg(text)
		m.ThreadRoot, m.ThreadParticipants = 1, participants
		return m
	}
	type R = rules.Recipient
	cases := []struct {
		name string
		msg  event.MessageStored
		room rules.Room
		want []R
	}{
		{"plain message, quiet room", msg("hello"), rules.Room{Kind: "room", Members: members}, nil},
		{"mention", msg("hey @bob"), rules.Room{Kind: "room", Members: members}, []R{{"u-bob", "mention"}}},
		{"mention with a comma", msg("@bob, @cat: lunch"), rules.Room{Kind: "room", Members: members},
			[]R{{"u-bob", "mention"}, {"u-cat", "mention"}}},
		{"email address is not a mention", msg("write to bob@x.com"), rules.Room{Kind: "room", Members: members}, nil},
		{"unknown name is ignored", msg("@dave?"), rules.Room{Kind: "room", Members: members}, nil},
		{"non-member is ignored", msg("@dave"), rules.Room{Kind: "room", Members: append(members[:3:3], rules.Member{"u-eve", "eve"})}, nil},
		{"sender mentioning themselves is not notified", msg("@ann @bob"), rules.Room{Kind: "room", Members: members},
			[]R{{"u-bob", "mention"}}},
		{"notify_all room", msg("hello"), rules.Room{Kind: "room", NotifyAll: true, Members: members},
			[]R{{"u-bob", "room"}, {"u-cat", "room"}}},
		{"mention beats notify_all", msg("@cat"), rules.Room{Kind: "room", NotifyAll: true, Members: members},
			[]R{{"u-bob", "room"}, {"u-cat", "mention"}}},
		{"dm uses the event's members", dm("hi", "u-ann", "u-bob"), rules.Room{Kind: "dm"}, []R{{"u-bob", "dm"}}},
		{"dm beats mention", dm("hi @bob", "u-ann", "u-bob"), rules.Room{Kind: "dm", Members: members[:2]}, []R{{"u-bob", "dm"}}},
		{"dm falls back to the room's members", dm("hi"), rules.Room{Kind: "dm", Members: members[:2]}, []R{{"u-bob", "dm"}}},
		{"dm to oneself", dm("note", "u-ann"), rules.Room{Kind: "dm"}, nil},
		{"join does not notify", kind(event.KindJoin), rules.Room{Kind: "room", NotifyAll: true, Members: members}, nil},
		{"edit does not notify", kind(event.KindEdit), rules.Room{Kind: "room", NotifyAll: true, Members: members}, nil},
		{"delete does not notify", kind(event.KindDelete), rules.Room{Kind: "room", Members: members}, nil},
		{"reply notifies the thread's participants but the sender", reply("ok", "u-bob", "u-ann"), rules.Room{Kind: "room", Members: members},
			[]R{{"u-bob", "thread"}}},
		{"mention beats thread", reply("@bob ok", "u-bob", "u-cat"), rules.Room{Kind: "room", Members: members},
			[]R{{"u-bob", "mention"}, {"u-cat", "thread"}}},
		{"thread beats notify_all", reply("ok", "u-cat"), rules.Room{Kind: "room", NotifyAll: true, Members: members},
			[]R{{"u-bob", "room"}, {"u-cat", "thread"}}},
		{"a participant who left is not notified", reply("ok", "u-eve"), rules.Room{Kind: "room", Members: members}, nil},
		{"participants of a message that is no reply are ignored", func() event.MessageStored {
			m := msg("ok")
			m.ThreadParticipants = []string{"u-bob"}
			return m
		}(), rules.Room{Kind: "room", Members: members}, nil},
		{"duplicate members count once", msg("@bob"), rules.Room{Kind: "room", Members: append(members[:3:3], members[1])},
			[]R{{"u-bob", "mention"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rules.Recipients(tc.msg, tc.room); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPreview(t *testing.T) {
	long := strings.Repeat("ab ", 100)
	cases := []struct {
		name, text string
		check      func(string) bool
	}{
		{"short text unchanged", "hello", func(s string) bool { return s == "hello" }},
		{"exactly the limit unchanged", strings.Repeat("x", rules.PreviewRunes),
			func(s string) bool { return s == strings.Repeat("x", rules.PreviewRunes) }},
		{"long text cut with an ellipsis", long, func(s string) bool {
			return strings.HasSuffix(s, "…") && utf8.RuneCountInString(s) <= rules.PreviewRunes && strings.HasPrefix(long, strings.TrimSuffix(s, "…"))
		}},
		{"multibyte runes are not split", strings.Repeat("ü", 200), func(s string) bool {
			return utf8.ValidString(s) && utf8.RuneCountInString(s) == rules.PreviewRunes
		}},
	}
	for _, tc := range cases {
		if got := rules.Preview(tc.text); !tc.check(got) {
			t.Errorf("%s: Preview = %q", tc.name, got)
		}
	}
}
