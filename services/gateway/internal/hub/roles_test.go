package hub

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

func (nopChat) SetRole(context.Context, chat.User, string, string, string) (chat.User, bool, error) {
	return chat.User{}, false, nil
}
func (nopChat) Mute(context.Context, chat.User, string, string, bool) (chat.User, bool, error) {
	return chat.User{}, false, nil
}
func (nopChat) Transfer(context.Context, chat.User, string, string) (chat.User, error) {
	return chat.User{}, nil
}
func (nopChat) UpdateRoom(context.Context, chat.User, string, chat.RoomSettings) (chat.UpdatedRoom, error) {
	return chat.UpdatedRoom{}, nil
}
func (nopChat) Directory(context.Context, string, string, int) (chat.DirectoryPage, error) {
	return chat.DirectoryPage{}, nil
}

// rolesChat records the role calls it gets and answers them with err, or with what the
// service would answer.
type rolesChat struct {
	nopChat
	err   error
	calls *[]string
}

func (c rolesChat) record(call string) { *c.calls = append(*c.calls, call) }

func (c rolesChat) SetRole(_ context.Context, u chat.User, room, username, role string) (chat.User, bool, error) {
	c.record(u.Username + " set_role " + room + " " + username + " " + role)
	return chat.User{ID: "u-" + username, Username: username}, true, c.err
}

func (c rolesChat) Mute(_ context.Context, u chat.User, room, username string, muted bool) (chat.User, bool, error) {
	c.record(u.Username + " mute " + room + " " + username + " " + map[bool]string{true: "on", false: "off"}[muted])
	return chat.User{ID: "u-" + username, Username: username}, muted, c.err
}

func (c rolesChat) Transfer(_ context.Context, u chat.User, room, username string) (chat.User, error) {
	c.record(u.Username + " transfer " + room + " " + username)
	return chat.User{ID: "u-" + username, Username: username}, c.err
}

func (c rolesChat) UpdateRoom(_ context.Context, u chat.User, room string, rs chat.RoomSettings) (chat.UpdatedRoom, error) {
	b, _ := json.Marshal(rs)
	c.record(u.Username + " update_room " + room + " " + string(b))
	return chat.UpdatedRoom{RoomSettings: store.RoomSettings{ID: room, Name: "Hall", Topic: "t", Private: true}, Changed: true}, c.err
}

func (c rolesChat) Directory(_ context.Context, q, cursor string, limit int) (chat.DirectoryPage, error) {
	b, _ := json.Marshal([]any{q, cursor, limit})
	c.record("directory " + string(b))
	return chat.DirectoryPage{Rooms: []store.DirectoryRoom{{ID: "go-nuts", Name: "Go", Members: 3}}, Cursor: "Z28"}, c.err
}

// TestSession_role_frames: each role frame reaches its chat.Service method with the
// frame's fields unchanged (absent settings stay nil) and is answered by its reply type
// with the request's ref; a refusal is the service's error with the ref and, for
// room frames, the room.
func TestSession_role_frames(t *testing.T) {
	refused := protocol.NewError(protocol.CodeForbidden, "only a room owner or admin may do this")
	tests := []struct {
		name  string
		frame string
		err   error
		call  string
		want  map[string]any
	}{
		{"set_role", `{"type":"set_role","ref":"1","room":"hall","user":"mia","role":"admin"}`, nil,
			"alice set_role hall mia admin",
			map[string]any{"type": "role_set", "ref": "1", "room": "hall", "user": "mia", "role": "admin", "changed": true}},
		{"mute", `{"type":"mute","ref":"2","room":"hall","user":"mia"}`, nil,
			"alice mute hall mia on",
			map[string]any{"type": "muted", "ref": "2", "room": "hall", "user": "mia", "muted": true, "changed": true}},
		{"unmute", `{"type":"unmute","ref":"3","room":"hall","user":"mia"}`, nil,
			"alice mute hall mia off",
			map[string]any{"type": "unmuted", "ref": "3", "room": "hall", "user": "mia", "muted": false, "changed": false}},
		{"transfer", `{"type":"transfer","ref":"4","room":"hall","user":"adam"}`, nil,
			"alice transfer hall adam",
			map[string]any{"type": "transferred", "ref": "4", "room": "hall", "owner": "adam"}},
		{"update_room, absent fields stay nil", `{"type":"update_room","ref":"5","room":"hall","topic":"","private":null}`, nil,
			`alice update_room hall {"name":null,"topic":"","private":null}`,
			map[string]any{"type": "room_updated", "ref": "5", "room": "hall", "name": "Hall", "topic": "t", "private": true, "changed": true}},
		{"directory", `{"type":"directory","ref":"6","q":"go","limit":2,"cursor":"Z2"}`, nil,
			`directory ["go","Z2",2]`,
			map[string]any{"type": "directory", "ref": "6", "cursor": "Z28",
				"rooms": []any{map[string]any{"id": "go-nuts", "name": "Go", "topic": "", "members": float64(3)}}}},
		{"set_role refused", `{"type":"set_role","ref":"7","room":"hall","user":"mia","role":"admin"}`, refused,
			"alice set_role hall mia admin",
			map[string]any{"type": "error", "ref": "7", "code": "forbidden", "message": refused.Message, "room": "hall"}},
		{"update_room refused", `{"type":"update_room","ref":"8","room":"hall","name":"x"}`, refused,
			`alice update_room hall {"name":"x","topic":null,"private":null}`,
			map[string]any{"type": "error", "ref": "8", "code": "forbidden", "message": refused.Message, "room": "hall"}},
		{"directory refused", `{"type":"directory","ref":"9","limit":500}`, protocol.NewError(protocol.CodeBadRequest, "limit: must be between 1 and 100"),
			`directory ["","",500]`,
			map[string]any{"type": "error", "ref": "9", "code": "bad_request", "message": "limit: must be between 1 and 100"}},
		{"malformed: never reaches the service", `{"type":"mute","ref":"10","room":"hall"}`, nil, "",
			map[string]any{"type": "error", "ref": "10", "code": "bad_request", "message": "user is required (a username)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			pr := &fakePresence{sets: map[string]int{}}
			h, err := New(Config{GatewayID: "gw-test"}, rolesChat{err: tc.err, calls: &calls}, &fakeTimeline{last: map[string]int64{}},
				nopAnnouncer{}, pr, pr, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			out := newFakeOut(16)
			s := h.Attach(out)
			s.mu.Lock()
			s.user = &chat.User{ID: "u1", Username: "alice"}
			s.mu.Unlock()
			s.HandleFrame(context.Background(), []byte(tc.frame))
			if want := []string{tc.call}; tc.call == "" && len(calls) != 0 || tc.call != "" && !reflect.DeepEqual(calls, want) {
				t.Fatalf("calls %q, want %q", calls, tc.call)
			}
			got := frames(out)
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Fatalf("replies %v, want %v", got, tc.want)
			}
		})
	}
}
