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
	if _, err := Decode([]byte(`{"type":"message","seq":"x"}`)); err == nil {
		t.Fatal("a wrong type elsewhere must still fail")
	}
	if _, err := Decode([]byte(`nope`)); err == nil {
		t.Fatal("not JSON must fail")
	}
}
