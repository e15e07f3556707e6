package protocol_test

import (
	"testing"

	"github.com/kchat/kchat/pkg/protocol"
)

// TestDecodeServer covers the frames whose field names mean different things in different
// frames ("user" is an object in welcome and an id in typing, "users" a list in users and
// a count in stats): typed decoding reads each as its own frame declares it.
func TestDecodeServer(t *testing.T) {
	f, err := protocol.DecodeServer([]byte(`{"type":"welcome","user":{"id":"u1","username":"alice"},"gateway_id":"gw-a","reconnect_token":"r"}`))
	if w, ok := f.(*protocol.Welcome); err != nil || !ok || w.User.Username != "alice" || w.GatewayID != "gw-a" {
		t.Fatalf("welcome: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"typing","room":"general","user":"u2","user_name":"bob"}`))
	if ty, ok := f.(*protocol.TypingNotice); err != nil || !ok || ty.User != "u2" || ty.UserName != "bob" {
		t.Fatalf("typing: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"stats","users":31,"connections":40,"conn":{"messages_sent":2}}`))
	if st, ok := f.(*protocol.StatsReply); err != nil || !ok || st.Users != 31 || st.Conn == nil || st.Conn.MessagesSent != 2 {
		t.Fatalf("stats: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"users","users":[{"username":"a","connections":2,"here":1}]}`))
	if ul, ok := f.(*protocol.UserList); err != nil || !ok || len(ul.Users) != 1 || ul.Users[0].Here != 1 {
		t.Fatalf("users: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"left","ref":"r1","room":"x1","last_seq":3}`))
	if m, ok := f.(*protocol.Membership); err != nil || !ok || m.Type != protocol.TypeLeft || m.RefID() != "r1" {
		t.Fatalf("left: %#v %v", f, err)
	}
	// Replies of the role frames: muted and unmuted share one struct, told apart by type.
	f, err = protocol.DecodeServer([]byte(`{"type":"unmuted","ref":"u","room":"general","user":"mia","muted":false,"changed":true}`))
	if m, ok := f.(*protocol.MuteResult); err != nil || !ok || m.Type != protocol.TypeUnmuted || m.Muted || !m.Changed || m.User != "mia" {
		t.Fatalf("unmuted: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"directory","rooms":[{"id":"go-nuts","name":"Go","topic":"t","members":3}],"cursor":"Z28"}`))
	if d, ok := f.(*protocol.DirectoryPage); err != nil || !ok || len(d.Rooms) != 1 || d.Rooms[0].Members != 3 || d.Cursor != "Z28" {
		t.Fatalf("directory: %#v %v", f, err)
	}
	f, err = protocol.DecodeServer([]byte(`{"type":"room_updated","room":"general","name":"G","topic":"","private":true}`))
	if r, ok := f.(*protocol.RoomUpdated); err != nil || !ok || !r.Private || r.Name != "G" {
		t.Fatalf("room_updated: %#v %v", f, err)
	}
	// A frame type of a newer gateway: its header, no error, so a client can skip it.
	f, err = protocol.DecodeServer([]byte(`{"type":"from_the_future","ref":"x","n":1}`))
	if b, ok := f.(*protocol.Base); err != nil || !ok || b.Type != "from_the_future" || b.Ref != "x" {
		t.Fatalf("unknown type: %#v %v", f, err)
	}
	if _, err := protocol.DecodeServer([]byte(`{"type":"message","seq":"x"}`)); err == nil {
		t.Fatal("a field of the wrong JSON type must fail")
	}
	if _, err := protocol.DecodeServer([]byte(`nope`)); err == nil {
		t.Fatal("not JSON must fail")
	}
}

// TestHelloRooms: an empty rooms object (subscribe to nothing) must survive encoding,
// and no rooms (subscribe to all) must stay "no rooms" through a round trip.
func TestHelloRooms(t *testing.T) {
	for _, tc := range []struct {
		rooms   map[string]int64
		wantNil bool
	}{{map[string]int64{}, false}, {nil, true}, {map[string]int64{"general": 4}, false}} {
		b := protocol.Encode(&protocol.Hello{Base: protocol.Base{Type: protocol.TypeHello}, Token: "t", Rooms: tc.rooms})
		f, e := protocol.Decode(b, protocol.Limits{})
		if e != nil {
			t.Fatalf("%s: %v", b, e)
		}
		h := f.(*protocol.Hello)
		if (h.Rooms == nil) != tc.wantNil || len(h.Rooms) != len(tc.rooms) {
			t.Fatalf("%s decoded to rooms %#v", b, h.Rooms)
		}
	}
}
