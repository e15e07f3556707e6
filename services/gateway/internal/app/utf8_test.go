package app_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// Text holding invalid UTF-8 (raw bytes, or \u escapes of lone surrogates) is refused with
// bad_request on both paths and published nothing: encoding/json used to replace it with
// U+FFFD, so it was acknowledged and stored altered. Nothing stored is shown by what comes
// after: each path then sends a valid message, and those two are the room's first messages
// on chat.submitted (persistence stores only what is published there).
func TestSend_invalid_utf8_is_refused_on_both_paths(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	bad := []struct{ name, text string }{
		{"raw bytes", "caf\xff\xfe"},
		{"lone surrogate escape", `caf\udc00`},
		{"unpaired high surrogate escape", `\ud83d!`},
	}

	c := h.dial(t, alice)
	for i, b := range bad {
		ref := "bad-" + b.name
		c.Send(`{"type":"send","room":"general","client_msg_id":"ws-bad-` + string(rune('a'+i)) + `","text":"` + b.text + `","ref":"` + ref + `"}`)
		e := c.Expect("error", ref)
		if code(e) != "bad_request" || !strings.Contains(e.Str("message"), "UTF-8") {
			t.Errorf("WebSocket %s: got %v, want bad_request about UTF-8", b.name, e)
		}
	}
	c.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": "ws-ok", "text": "valid over ws", "ref": "ok"})
	if a := c.Expect("ack", "ok"); a.Str("status") != "accepted" {
		t.Fatalf("valid send: %v", a)
	}

	for i, b := range bad {
		body := `{"client_msg_id":"rest-bad-` + string(rune('a'+i)) + `","text":"` + b.text + `"}`
		st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/messages", alice.Token, body)
		if st != 400 || code(f) != "bad_request" || !strings.Contains(f.Str("message"), "UTF-8") {
			t.Errorf("REST %s: got %d %v, want 400 bad_request about UTF-8", b.name, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/messages", alice.Token,
		map[string]string{"client_msg_id": "rest-ok", "text": "valid over rest"}); st != 202 {
		t.Fatalf("valid REST send: %d %v", st, f)
	}

	// The room's first two message.submitted events (a membership event may come first).
	var got []string
	for n := 2; len(got) < 2; n += 2 - len(got) {
		got = got[:0]
		for _, e := range h.readEvents(t, topics.Submitted, "general", n) {
			if e.Type != event.TypeMessageSubmitted {
				continue
			}
			m, err := event.As[event.MessageSubmitted](e)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.ClientMsgID+": "+m.Text)
		}
	}
	if want := []string{"ws-ok: valid over ws", "rest-ok: valid over rest"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages published: %q, want only %q", got, want)
	}
}
