package wsclient

import "testing"

func TestFields(t *testing.T) {
	f := []byte(`{"type":"message","room":"r-1","seq":42,"client_msg_id":"7-123","text":"a \"q\"","sent_at":"2026-01-01T00:00:00Z"}`)
	if v, err := StringField(f, "type"); err != nil || string(v) != "message" {
		t.Fatalf("type %q %v", v, err)
	}
	if v, err := StringField(f, "client_msg_id"); err != nil || string(v) != "7-123" {
		t.Fatalf("cmid %q %v", v, err)
	}
	if _, err := StringField(f, "text"); err == nil {
		t.Fatal("escaped values are refused")
	}
	if _, err := StringField(f, "nope"); err == nil {
		t.Fatal("missing field")
	}
	if v, err := IntField(f, "seq"); err != nil || v != 42 {
		t.Fatalf("seq %d %v", v, err)
	}
}
