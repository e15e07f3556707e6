package render

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
)

func TestEntry(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	edited := at.Add(time.Minute)
	r := Renderer{Loc: time.UTC, Label: func(room string) string {
		if room == "dm:1:2" {
			return "@bob"
		}
		return ""
	}}
	tests := []struct {
		name string
		in   protocol.Message
		want string
	}{
		{"message", protocol.Message{Room: "general", Kind: "message", SenderName: "alice", Text: "hi", SentAt: at}, "[15:04:05] #general <alice> hi"},
		{"markup is just text", protocol.Message{Room: "general", Kind: "message", SenderName: "alice", Text: "<script>x</script>", SentAt: at}, "[15:04:05] #general <alice> <script>x</script>"},
		{"multi-line stays one line", protocol.Message{Room: "general", Kind: "message", SenderName: "a", Text: "one\ntwo", SentAt: at}, "[15:04:05] #general <a> one ⏎ two"},
		{"escape sequences are defused", protocol.Message{Room: "general", Kind: "message", SenderName: "a\x1b[2J", Text: "\x1b]0;pwned\x07x", SentAt: at}, "[15:04:05] #general <a\uFFFD[2J> \uFFFD]0;pwned\uFFFDx"},
		{"edited in history", protocol.Message{Room: "general", Kind: "message", SenderName: "a", Text: "fixed", SentAt: at, EditedAt: &edited}, "[15:04:05] #general <a> fixed (edited)"},
		{"deleted in history", protocol.Message{Room: "general", Kind: "message", SenderName: "a", Text: "gone", SentAt: at, DeletedAt: &edited}, "[15:04:05] #general <a> (deleted)"},
		{"live edit", protocol.Message{Room: "general", Kind: "edit", SenderName: "a", Text: "new", TargetSeq: 4, SentAt: at}, "[15:04:05] #general <a> new (edit of 4)"},
		{"live delete", protocol.Message{Room: "general", Kind: "delete", SenderName: "a", TargetSeq: 4, SentAt: at}, "[15:04:05] #general * a deleted message 4"},
		{"attachments are named", protocol.Message{Room: "general", Kind: "message", SenderName: "a", Text: "see", SentAt: at,
			Attachments: []event.Attachment{{ID: "u1", Filename: "cat\x1b[2J.png", ContentType: "image/png", Size: 48213, Width: 640, Height: 480, Thumbnail: true}}},
			"[15:04:05] #general <a> see [file: cat\uFFFD[2J.png, image/png, 48213 bytes, id u1]"},
		{"reply", protocol.Message{Room: "general", Kind: "message", SenderName: "bob", Text: "yes", SentAt: at, ThreadRoot: 3},
			"[15:04:05] #general <bob> yes (reply to 3)"},
		{"root with replies", protocol.Message{Room: "general", Seq: 3, Kind: "message", SenderName: "a", Text: "ship?", SentAt: at,
			Thread: &protocol.ThreadSummary{ReplyCount: 2, LastReplyAt: &edited, Unread: 1}},
			"[15:04:05] #general <a> ship? [2 replies, last 15:05:05, 1 unread: /thread 3]"},
		{"root whose replies were deleted", protocol.Message{Room: "general", Seq: 3, Kind: "message", SenderName: "a", Text: "ship?", SentAt: at,
			Thread: &protocol.ThreadSummary{}}, "[15:04:05] #general <a> ship?"},
		{"join", protocol.Message{Room: "general", Kind: "join", SenderName: "carol", SentAt: at}, "[15:04:05] #general * carol joined"},
		{"leave", protocol.Message{Room: "general", Kind: "leave", SenderName: "carol", SentAt: at}, "[15:04:05] #general * carol left"},
		{"promotion", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "role", Target: "u2", TargetName: "ben", Role: "admin", SentAt: at},
			"[15:04:05] #general * ann made ben an admin"},
		{"demotion", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "role", Target: "u2", TargetName: "ben", Role: "member", SentAt: at},
			"[15:04:05] #general * ann made ben a member"},
		{"mute", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "muted", Target: "u2", TargetName: "ben", SentAt: at},
			"[15:04:05] #general * ann muted ben"},
		{"unmute", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "unmuted", Target: "u2", TargetName: "ben", SentAt: at},
			"[15:04:05] #general * ann unmuted ben"},
		{"transfer", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "owner", Target: "u2", TargetName: "ben", Role: "owner", SentAt: at},
			"[15:04:05] #general * ann transferred ownership to ben"},
		{"topic", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "settings",
			Settings: &protocol.RoomSettingsChange{Topic: ptr("ship \x1b[2Jit")}, SentAt: at},
			"[15:04:05] #general * ann set the topic to \"ship \uFFFD[2Jit\""},
		{"rename, topic cleared and private", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "settings",
			Settings: &protocol.RoomSettingsChange{Name: ptr("Crew"), Topic: ptr(""), Private: ptr(true)}, SentAt: at},
			"[15:04:05] #general * ann renamed the room to \"Crew\", cleared the topic and made the room private"},
		{"public", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "settings",
			Settings: &protocol.RoomSettingsChange{Private: ptr(false)}, SentAt: at},
			"[15:04:05] #general * ann made the room public"},
		{"unknown change", protocol.Message{Room: "general", Kind: "room_change", SenderName: "ann", Change: "crowned", SentAt: at},
			"[15:04:05] #general * ann changed the room (crowned)"},
		{"dm by label", protocol.Message{Room: "dm:1:2", Kind: "message", SenderName: "alice", Text: "psst", SentAt: at}, "[15:04:05] @bob <alice> psst"},
		{"dm without label", protocol.Message{Room: "dm:3:4", Kind: "message", SenderName: "alice", Text: "psst", SentAt: at}, "[15:04:05] @dm <alice> psst"},
	}
	for _, tt := range tests {
		if got := r.Entry(&tt.in); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestCleanBidi(t *testing.T) {
	if got := Clean("a\u202Eb\u2066c"); got != "a\uFFFDb\uFFFDc" {
		t.Fatalf("bidi controls kept: %q", got)
	}
}

func TestLists(t *testing.T) {
	idle := int64(125)
	few := int64(5)
	lines := Users([]protocol.OnlineUser{{Username: "alice", Connections: 1, Here: 1, IdleSeconds: &few}, {Username: "bob", Connections: 2, Here: 1, IdleSeconds: &idle}, {Username: "carol", Connections: 1}})
	want := []string{"--- 3 online ---", "  alice", "  bob (2 connections, idle 2m5s)", "  carol"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("users:\n%s", strings.Join(lines, "\n"))
	}
	r := Renderer{}
	rooms := r.Rooms([]protocol.RoomInfo{{ID: "general", LastSeq: 3}}, []protocol.RoomInfo{{ID: "general"}, {ID: "random", LastSeq: 9}}, "general")
	want = []string{"--- your rooms ---", "* #general (3 entries)", "--- public rooms ---", "  #random (9 entries)"}
	if strings.Join(rooms, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rooms:\n%s", strings.Join(rooms, "\n"))
	}
}

func TestSearchHits(t *testing.T) {
	r := Renderer{Loc: time.UTC, Label: func(room string) string {
		if room == "dm:1:2" {
			return "@bob"
		}
		return ""
	}}
	var h SearchHit
	if err := json.Unmarshal([]byte(`{"room":"dm:1:2","seq":7,"sender_name":"bob","sent_at":"2026-01-02T03:04:05Z",
		"snippet":[{"text":"say \u001b[2J "},{"text":"deploy","match":true},{"text":" now\nplease"}]}`), &h); err != nil {
		t.Fatal(err)
	}
	got := r.SearchHits("deploy", []SearchHit{h}, true)
	want := []string{"--- search deploy: 1 hits ---", "  2026-01-02 03:04 @bob/7 <bob> say \uFFFD[2J «deploy» now ⏎ please",
		"--- more hits: add words to narrow the search ---"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
