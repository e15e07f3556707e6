package wire

import "testing"

func TestDecode(t *testing.T) {
	f, err := Decode([]byte(`{"type":"welcome","user":{"id":"u1","username":"alice"},"gateway_id":"gw-a","reconnect_token":"r"}`))
	if err != nil || f.User == nil || f.User.Username != "alice" || f.GatewayID != "gw-a" {
		t.Fatalf("welcome: %+v %v", f, err)
	}
	// typing's "user" is an id string: not an error, the other fields are read.
	f, err = Decode([]byte(`{"type":"typing","room":"general","user":"u2","user_name":"bob"}`))
	if err != nil || f.UserName != "bob" || f.Room != "general" || f.User != nil {
		t.Fatalf("typing: %+v %v", f, err)
	}
	f, err = Decode([]byte(`{"type":"stats","users":31,"connections":40,"conn":{"messages_sent":2}}`))
	if err != nil || f.UserCount != 31 || f.Connections != 40 || f.Conn == nil || f.Conn.MessagesSent != 2 {
		t.Fatalf("stats: %+v %v", f, err)
	}
	f, err = Decode([]byte(`{"type":"users","users":[{"username":"a","connections":2,"here":1}]}`))
	if err != nil || len(f.Users) != 1 || f.Users[0].Here != 1 {
		t.Fatalf("users: %+v %v", f, err)
	}
	if _, err := Decode([]byte(`{"type":"message","seq":"x"}`)); err == nil {
		t.Fatal("a wrong type elsewhere must still fail")
	}
	if _, err := Decode([]byte(`nope`)); err == nil {
		t.Fatal("not JSON must fail")
	}
}
