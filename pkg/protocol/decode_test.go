package protocol_test

import (
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/protocol"
)

func TestDecode_errors(t *testing.T) {
	t.Parallel()
	lim := protocol.Limits{MaxTextBytes: 10}
	long := strings.Repeat("x", 65)
	tests := []struct {
		name  string
		frame string
		code  string
		ref   string
	}{
		{"empty", ``, protocol.CodeBadJSON, ""},
		{"garbage", `hello`, protocol.CodeBadJSON, ""},
		{"truncated", `{"type":"send"`, protocol.CodeBadJSON, ""},
		{"array", `[1,2]`, protocol.CodeBadJSON, ""},
		{"string", `"send"`, protocol.CodeBadJSON, ""},
		{"null", `null`, protocol.CodeBadJSON, ""},
		{"no type", `{"room":"a"}`, protocol.CodeBadRequest, ""},
		{"type not string", `{"type":5}`, protocol.CodeBadRequest, ""},
		{"unknown type", `{"type":"dance","ref":"r1"}`, protocol.CodeUnknownType, "r1"},
		{"send no room", `{"type":"send","ref":"r2","client_msg_id":"c","text":"hi"}`, protocol.CodeBadRequest, "r2"},
		{"leave bad successor", `{"type":"leave","room":"a","successor":"no one"}`, protocol.CodeBadRequest, ""},
		{"send bad room", `{"type":"send","room":"a b","client_msg_id":"c","text":"hi"}`, protocol.CodeBadRequest, ""},
		{"send no client id", `{"type":"send","room":"a","text":"hi"}`, protocol.CodeBadRequest, ""},
		{"send long client id", `{"type":"send","room":"a","client_msg_id":"` + long + `","text":"hi"}`, protocol.CodeBadRequest, ""},
		{"send empty text", `{"type":"send","room":"a","client_msg_id":"c","text":""}`, protocol.CodeBadRequest, ""},
		{"send text too long", `{"type":"send","ref":"r3","room":"a","client_msg_id":"c","text":"12345678901"}`, protocol.CodeTooLarge, "r3"},
		{"send text wrong type", `{"type":"send","room":"a","client_msg_id":"c","text":7}`, protocol.CodeBadRequest, ""},
		{"edit no target", `{"type":"edit","room":"a","client_msg_id":"c","text":"x"}`, protocol.CodeBadRequest, ""},
		{"send attachment not an id", `{"type":"send","room":"a","client_msg_id":"c","text":"x","attachments":["../x"]}`, protocol.CodeBadRequest, ""},
		{"send attachment twice", `{"type":"send","room":"a","client_msg_id":"c","text":"x","attachments":["0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00","0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00"]}`, protocol.CodeBadRequest, ""},
		{"send too many attachments", `{"type":"send","room":"a","client_msg_id":"c","text":"x","attachments":[` + strings.Repeat(`"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00",`, 10) + `"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b01"]}`, protocol.CodeBadRequest, ""},
		{"send attachments not a list", `{"type":"send","room":"a","client_msg_id":"c","text":"x","attachments":"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00"}`, protocol.CodeBadRequest, ""},
		{"delete negative target", `{"type":"delete","room":"a","client_msg_id":"c","target_seq":-1}`, protocol.CodeBadRequest, ""},
		{"react no on", `{"type":"react","room":"a","client_msg_id":"c","target_seq":1,"emoji":"👍"}`, protocol.CodeBadRequest, ""},
		{"react on not bool", `{"type":"react","room":"a","client_msg_id":"c","target_seq":1,"emoji":"👍","on":"yes"}`, protocol.CodeBadRequest, ""},
		{"react no target", `{"type":"react","room":"a","client_msg_id":"c","emoji":"👍","on":true}`, protocol.CodeBadRequest, ""},
		{"react no emoji", `{"type":"react","room":"a","client_msg_id":"c","target_seq":1,"on":true}`, protocol.CodeBadRequest, ""},
		{"react no client id", `{"type":"react","room":"a","target_seq":1,"emoji":"👍","on":true}`, protocol.CodeBadRequest, ""},
		{"send negative thread_root", `{"type":"send","room":"a","client_msg_id":"c","text":"t","thread_root":-1}`, protocol.CodeBadRequest, ""},
		{"send thread_root not int", `{"type":"send","room":"a","client_msg_id":"c","text":"t","thread_root":"4"}`, protocol.CodeBadRequest, ""},
		{"thread no root", `{"type":"thread","room":"a"}`, protocol.CodeBadRequest, ""},
		{"thread negative after", `{"type":"thread","room":"a","root":3,"after_seq":-1}`, protocol.CodeBadRequest, ""},
		{"thread limit too big", `{"type":"thread","room":"a","root":3,"limit":201}`, protocol.CodeBadRequest, ""},
		{"thread_read no seq", `{"type":"thread_read","room":"a","root":3}`, protocol.CodeBadRequest, ""},
		{"thread_read no room", `{"type":"thread_read","root":3,"seq":4}`, protocol.CodeBadRequest, ""},
		{"dm no to", `{"type":"dm","client_msg_id":"c","text":"x"}`, protocol.CodeBadRequest, ""},
		{"dm bad to", `{"type":"dm","to":"a!","client_msg_id":"c","text":"x"}`, protocol.CodeBadRequest, ""},
		{"subscribe negative since", `{"type":"subscribe","room":"a","since_seq":-2}`, protocol.CodeBadRequest, ""},
		{"subscribe since string", `{"type":"subscribe","room":"a","since_seq":"3"}`, protocol.CodeBadRequest, ""},
		{"history limit too big", `{"type":"history","room":"a","limit":201}`, protocol.CodeBadRequest, ""},
		{"history before zero", `{"type":"history","room":"a","before_seq":0}`, protocol.CodeBadRequest, ""},
		{"typing no room", `{"type":"typing"}`, protocol.CodeBadRequest, ""},
		{"auth without token", `{"type":"auth"}`, protocol.CodeBadRequest, ""},
		{"auth with both", `{"type":"auth","token":"a","reconnect_token":"b"}`, protocol.CodeBadRequest, ""},
		{"hello rooms not object", `{"type":"hello","rooms":[1]}`, protocol.CodeBadRequest, ""},
		{"hello bad room", `{"type":"hello","rooms":{"a b":1}}`, protocol.CodeBadRequest, ""},
		{"join no room", `{"type":"join"}`, protocol.CodeBadRequest, ""},
		{"set_role no room", `{"type":"set_role","ref":"s1","user":"bob","role":"admin"}`, protocol.CodeBadRequest, "s1"},
		{"set_role no user", `{"type":"set_role","room":"a1","role":"admin"}`, protocol.CodeBadRequest, ""},
		{"set_role bad user", `{"type":"set_role","room":"a1","user":"b o b","role":"admin"}`, protocol.CodeBadRequest, ""},
		{"set_role no role", `{"type":"set_role","room":"a1","user":"bob"}`, protocol.CodeBadRequest, ""},
		{"set_role role not string", `{"type":"set_role","room":"a1","user":"bob","role":2}`, protocol.CodeBadRequest, ""},
		{"mute no user", `{"type":"mute","ref":"m1","room":"a1"}`, protocol.CodeBadRequest, "m1"},
		{"mute user id not name", `{"type":"mute","room":"a1","user":"0193a:x"}`, protocol.CodeBadRequest, ""},
		{"unmute bad room", `{"type":"unmute","room":"a b","user":"bob"}`, protocol.CodeBadRequest, ""},
		{"transfer no user", `{"type":"transfer","room":"a1"}`, protocol.CodeBadRequest, ""},
		{"transfer user not string", `{"type":"transfer","room":"a1","user":["bob"]}`, protocol.CodeBadRequest, ""},
		{"update_room no room", `{"type":"update_room","topic":"t"}`, protocol.CodeBadRequest, ""},
		{"update_room private not bool", `{"type":"update_room","room":"a1","private":"yes"}`, protocol.CodeBadRequest, ""},
		{"update_room name not string", `{"type":"update_room","room":"a1","name":5}`, protocol.CodeBadRequest, ""},
		{"update_room invalid UTF-8 topic", "{\"type\":\"update_room\",\"room\":\"a1\",\"topic\":\"\xff\"}", protocol.CodeBadRequest, ""},
		{"directory limit not int", `{"type":"directory","limit":"5"}`, protocol.CodeBadRequest, ""},
		{"directory q not string", `{"type":"directory","q":1}`, protocol.CodeBadRequest, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, e := protocol.Decode([]byte(tc.frame), lim)
			if e == nil {
				t.Fatalf("decoded %#v, want error %s", f, tc.code)
			}
			if e.Code != tc.code || e.Ref != tc.ref || e.Type != protocol.TypeError || e.Message == "" {
				t.Fatalf("got %+v, want code %s ref %q", e, tc.code, tc.ref)
			}
		})
	}
}

// A refused message frame names its client_msg_id and room (when they are strings), so
// that a client holding later messages back until this one is answered knows it was.
func TestDecode_refusal_names_the_message(t *testing.T) {
	t.Parallel()
	lim := protocol.Limits{MaxTextBytes: 10}
	tests := []struct {
		name, frame, cmid, room string
	}{
		{"text too long", `{"type":"send","room":"a","client_msg_id":"c1","text":"12345678901"}`, "c1", "a"},
		{"empty text", `{"type":"send","room":"a","client_msg_id":"c2","text":""}`, "c2", "a"},
		{"text wrong type", `{"type":"send","room":"a","client_msg_id":"c3","text":7}`, "c3", "a"},
		{"thread_root not int", `{"type":"send","room":"a","client_msg_id":"c4","text":"t","thread_root":"4"}`, "c4", "a"},
		{"invalid UTF-8 text", "{\"type\":\"send\",\"room\":\"a\",\"client_msg_id\":\"c5\",\"text\":\"\xff\"}", "c5", "a"},
		{"edit no target", `{"type":"edit","room":"b","client_msg_id":"c6","text":"x"}`, "c6", "b"},
		{"react no emoji", `{"type":"react","room":"b","client_msg_id":"c7","target_seq":1,"on":true}`, "c7", "b"},
		{"dm bad to", `{"type":"dm","to":"a!","client_msg_id":"c8","text":"x"}`, "c8", ""},
		{"bad room is named as sent", `{"type":"send","room":"a b","client_msg_id":"c9","text":"hi"}`, "c9", "a b"},
		{"no client id", `{"type":"send","room":"a","text":"hi"}`, "", "a"},
		{"client id not a string", `{"type":"send","room":"a","client_msg_id":5,"text":"hi"}`, "", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, e := protocol.Decode([]byte(tc.frame), lim)
			if e == nil {
				t.Fatal("decoded, want a refusal")
			}
			if e.ClientMsgID != tc.cmid || e.Room != tc.room {
				t.Fatalf("refusal %+v names client_msg_id %q room %q, want %q and %q", e, e.ClientMsgID, e.Room, tc.cmid, tc.room)
			}
		})
	}
}

// TestValidateEmoji: emoji are refused, never trimmed or cleaned, when they hold anything
// that renders as nothing or could hide text; real emoji sequences pass.
func TestValidateEmoji(t *testing.T) {
	t.Parallel()
	good := []string{"👍", "❤️", "🇫🇷", "👍🏽", "👩‍💻", "1️⃣", "🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F", "+1", "ok"}
	for _, e := range good {
		if err := protocol.ValidateEmoji(e); err != nil {
			t.Errorf("ValidateEmoji(%q) = %v, want ok", e, err)
		}
	}
	bad := []string{"", " ", "👍 ", "a\tb", "a\nb", "\x00", "\u200b", "\u202e👍", "\xff", strings.Repeat("👍", 9)}
	for _, e := range bad {
		if err := protocol.ValidateEmoji(e); err == nil || err.Code != protocol.CodeBadRequest {
			t.Errorf("ValidateEmoji(%q) = %v, want bad_request", e, err)
		}
	}
}

func TestDecode_valid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		frame string
		check func(protocol.Frame) bool
	}{
		{`{"type":"send","ref":"1","room":"general","client_msg_id":"c1","text":"héllo <b>"}`, func(f protocol.Frame) bool {
			s, ok := f.(*protocol.Send)
			return ok && s.Room == "general" && s.Text == "héllo <b>" && s.Ref == "1"
		}},
		{`{"type":"leave","room":"general","successor":"bob"}`, func(f protocol.Frame) bool {
			l, ok := f.(*protocol.Leave)
			return ok && l.Room == "general" && l.Successor == "bob"
		}},
		{`{"type":"react","room":"general","client_msg_id":"r1","target_seq":4,"emoji":"🎉","on":false}`, func(f protocol.Frame) bool {
			r, ok := f.(*protocol.React)
			return ok && r.TargetSeq == 4 && r.Emoji == "🎉" && r.On != nil && !*r.On
		}},
		{`{"type":"send","room":"general","client_msg_id":"c2","text":"re","thread_root":7}`, func(f protocol.Frame) bool {
			s, ok := f.(*protocol.Send)
			return ok && s.ThreadRoot == 7
		}},
		{`{"type":"thread","room":"general","root":7,"after_seq":9,"limit":20}`, func(f protocol.Frame) bool {
			t, ok := f.(*protocol.Thread)
			return ok && t.Root == 7 && t.AfterSeq == 9 && t.Limit == 20
		}},
		{`{"type":"thread_read","room":"general","root":7,"seq":12}`, func(f protocol.Frame) bool {
			t, ok := f.(*protocol.ThreadRead)
			return ok && t.Root == 7 && t.Seq != nil && *t.Seq == 12
		}},
		{`{"type":"subscribe","room":"dm:a:b","since_seq":0}`, func(f protocol.Frame) bool {
			s, ok := f.(*protocol.Subscribe)
			return ok && s.SinceSeq != nil && *s.SinceSeq == 0
		}},
		{`{"type":"subscribe","room":"general"}`, func(f protocol.Frame) bool {
			s, ok := f.(*protocol.Subscribe)
			return ok && s.SinceSeq == nil
		}},
		{`{"type":"hello","token":"t","rooms":{"a":3,"b":0}}`, func(f protocol.Frame) bool {
			h, ok := f.(*protocol.Hello)
			return ok && h.Rooms["a"] == 3 && len(h.Rooms) == 2
		}},
		{`{"type":"history","room":"a","limit":200,"extra":"ignored"}`, func(f protocol.Frame) bool {
			h, ok := f.(*protocol.History)
			return ok && h.Limit == 200
		}},
		{`  {"type":"ping"}`, func(f protocol.Frame) bool { _, ok := f.(*protocol.Ping); return ok }},
		{`{"type":"dm","to":"bob_1","client_msg_id":"x","text":"hi"}`, func(f protocol.Frame) bool { _, ok := f.(*protocol.DM); return ok }},
		{`{"type":"quit"}`, func(f protocol.Frame) bool { _, ok := f.(*protocol.Quit); return ok }},
		{`{"type":"set_role","room":"general","user":"bob","role":"admin"}`, func(f protocol.Frame) bool {
			r, ok := f.(*protocol.SetRole)
			return ok && r.Room == "general" && r.User == "bob" && r.Role == "admin"
		}},
		// The role's value is the gateway's check (REST's rules): owner decodes.
		{`{"type":"set_role","room":"general","user":"bob","role":"owner"}`, func(f protocol.Frame) bool {
			r, ok := f.(*protocol.SetRole)
			return ok && r.Role == "owner"
		}},
		{`{"type":"mute","room":"general","user":"mia"}`, func(f protocol.Frame) bool {
			m, ok := f.(*protocol.MuteMember)
			return ok && m.Type == protocol.TypeMute && m.User == "mia"
		}},
		{`{"type":"unmute","room":"general","user":"mia"}`, func(f protocol.Frame) bool {
			m, ok := f.(*protocol.MuteMember)
			return ok && m.Type == protocol.TypeUnmute && m.User == "mia"
		}},
		{`{"type":"transfer","room":"general","user":"adam"}`, func(f protocol.Frame) bool {
			tr, ok := f.(*protocol.Transfer)
			return ok && tr.User == "adam"
		}},
		// Absent and null settings stay unchanged; the values are the gateway's check, so an
		// empty frame and an overlong topic decode and are refused there, with REST's words.
		{`{"type":"update_room","room":"general","topic":"","name":null}`, func(f protocol.Frame) bool {
			u, ok := f.(*protocol.UpdateRoom)
			return ok && u.Topic != nil && *u.Topic == "" && u.Name == nil && u.Private == nil
		}},
		{`{"type":"update_room","room":"general","private":false}`, func(f protocol.Frame) bool {
			u, ok := f.(*protocol.UpdateRoom)
			return ok && u.Private != nil && !*u.Private && u.Topic == nil
		}},
		{`{"type":"update_room","room":"general"}`, func(f protocol.Frame) bool { _, ok := f.(*protocol.UpdateRoom); return ok }},
		{`{"type":"directory"}`, func(f protocol.Frame) bool {
			d, ok := f.(*protocol.Directory)
			return ok && d.Q == "" && d.Limit == 0 && d.Cursor == ""
		}},
		{`{"type":"directory","q":"go","limit":2,"cursor":"Z28"}`, func(f protocol.Frame) bool {
			d, ok := f.(*protocol.Directory)
			return ok && d.Q == "go" && d.Limit == 2 && d.Cursor == "Z28"
		}},
	}
	for _, tc := range tests {
		f, e := protocol.Decode([]byte(tc.frame), protocol.Limits{})
		if e != nil {
			t.Errorf("%s: %v", tc.frame, e)
			continue
		}
		if !tc.check(f) {
			t.Errorf("%s: decoded %#v", tc.frame, f)
		}
	}
}

func TestValidators(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fn   func(string) bool
		in   string
		want bool
	}{
		{protocol.ValidUsername, "al", false},
		{protocol.ValidUsername, "alice", true},
		{protocol.ValidUsername, "Al-i_ce9", true},
		{protocol.ValidUsername, strings.Repeat("a", 33), false},
		{protocol.ValidUsername, "al ice", false},
		{protocol.ValidSlug, "general", true},
		{protocol.ValidSlug, "g", false},
		{protocol.ValidSlug, "dm:x:y", false},
		{protocol.ValidSlug, "Upper", false},
		{protocol.ValidSlug, "-lead", false},
		{protocol.ValidRoomRef, "dm:0193:0194", true},
		{protocol.ValidRoomRef, "a/b", false},
	} {
		if got := tc.fn(tc.in); got != tc.want {
			t.Errorf("%q: got %v want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"send","room":"a","client_msg_id":"c","text":"x"}`))
	f.Add([]byte(`{"type":"hello","rooms":{"a":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, e := protocol.Decode(b, protocol.Limits{})
		if (fr == nil) == (e == nil) {
			t.Fatalf("exactly one of frame and error must be set: %v %v", fr, e)
		}
	})
}

// Invalid UTF-8 is refused, not altered: encoding/json turns invalid bytes and \u escapes
// of lone surrogates into U+FFFD, which passed the text check and was stored.
func TestDecode_invalid_utf8_is_refused(t *testing.T) {
	t.Parallel()
	send := func(text string) string {
		return `{"type":"send","ref":"u1","room":"general","client_msg_id":"c1","text":"` + text + `"}`
	}
	refused := []struct{ name, frame string }{
		{"raw invalid bytes", send("caf\xff\xfe")},
		{"truncated sequence", send("\xe2\x82")},
		{"lone high surrogate escape", send(`a\ud800b`)},
		{"lone low surrogate escape", send(`\udc00`)},
		{"high surrogate at the end", send(`x\uD83D`)},
		{"high surrogate then another escape", send(`\ud83d\n`)},
		{"high surrogate then a non-surrogate escape", send(`\ud83d\u0041`)},
		{"two high surrogates", send(`\ud83d\ud83d\ude00`)},
		{"invalid bytes in the client id", "{\"type\":\"send\",\"ref\":\"u1\",\"room\":\"general\",\"client_msg_id\":\"c\xff\",\"text\":\"x\"}"},
		{"invalid bytes in an ignored field", "{\"type\":\"send\",\"ref\":\"u1\",\"room\":\"general\",\"client_msg_id\":\"c\",\"text\":\"x\",\"pad\":\"\xc0\xaf\"}"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, e := protocol.Decode([]byte(tc.frame), protocol.Limits{})
			if e == nil {
				t.Fatalf("decoded %#v, want bad_request", f)
			}
			if e.Code != protocol.CodeBadRequest || e.Ref != "u1" || !strings.Contains(e.Message, "UTF-8") {
				t.Fatalf("got %+v, want bad_request about UTF-8 with ref u1", e)
			}
		})
	}
	accepted := []struct{ name, text, want string }{
		{"surrogate pair escape", `\ud83d\ude00`, "😀"},
		{"raw emoji", "😀", "😀"},
		{"an escaped backslash before u", `\\ud800`, `\ud800`},
		{"a real U+FFFD", `\ufffd and ` + "\uFFFD", "\uFFFD and \uFFFD"},
		{"BMP escape", `caf\u00e9`, "café"},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, e := protocol.Decode([]byte(send(tc.text)), protocol.Limits{})
			if e != nil {
				t.Fatalf("refused: %+v", e)
			}
			if s := f.(*protocol.Send); s.Text != tc.want {
				t.Fatalf("text %q, want %q", s.Text, tc.want)
			}
		})
	}
}
