package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kchat/kchat/pkg/protocol"
)

// knownCodes are the error codes a decode failure may carry. Decode runs before any
// state is consulted, so only the input-shape codes are possible; anything else would be
// a code the client cannot act on.
var knownCodes = map[string]bool{
	protocol.CodeBadJSON: true, protocol.CodeBadRequest: true, protocol.CodeUnknownType: true, protocol.CodeTooLarge: true,
}

// FuzzDecodeFrame checks what the rest of the gateway relies on after Decode returned a
// frame: every field that reaches SQL, Kafka keys or logs is within the documented limits,
// and the frame survives being encoded and decoded again. FuzzDecode (decode_test.go)
// only checks that Decode returns exactly one of frame and error.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","ref":"r","room":"general","client_msg_id":"c-1","text":"hi <all>"}`,
		`{"type":"edit","room":"general","client_msg_id":"c-2","target_seq":3,"text":"fixed"}`,
		`{"type":"delete","room":"general","client_msg_id":"c-3","target_seq":3}`,
		`{"type":"dm","to":"bob_1","client_msg_id":"d","text":"psst"}`,
		`{"type":"hello","token":"t","rooms":{"general":41,"dm:0193a:0193b":7},"ref":"h1"}`,
		`{"type":"hello","reconnect_token":"r","rooms":{}}`,
		`{"type":"auth","token":"x"}`,
		`{"type":"subscribe","room":"dm:a:b","since_seq":0}`,
		`{"type":"history","room":"general","before_seq":40,"limit":200}`,
		`{"type":"typing","room":"general"}`,
		`{"type":"join","room":"go-nuts"}`, `{"type":"leave","room":"go-nuts"}`, `{"type":"unsubscribe","room":"x1"}`,
		`{"type":"rooms"}`, `{"type":"users"}`, `{"type":"stats"}`, `{"type":"token"}`, `{"type":"ping"}`, `{"type":"quit"}`,
		// Shapes that once confused JSON decoders: duplicate keys, case-folded keys,
		// escaped keys, huge numbers, invalid UTF-8, NUL.
		`{"type":"send","type":"ping"}`,
		`{"TYPE":"send","Room":"general","CLIENT_MSG_ID":"c","Text":"x"}`,
		`{"type":"send","room":"general","client_msg_id":"c","text":"\u0000"}`,
		`{"typ\u0065":"send","room":"general","client_msg_id":"c","text":"x"}`,
		`{"type":"history","room":"a1","limit":1e400}`,
		`{"type":"subscribe","room":"a1","since_seq":9223372036854775808}`,
		"{\"type\":\"send\",\"room\":\"ab\",\"client_msg_id\":\"c\",\"text\":\"\xff\xfe\"}",
		`{"type":"send","room":"ab","client_msg_id":"` + strings.Repeat("é", 64) + `","text":"x"}`,
		"\t\r\n {\"type\":\"ping\"}  ",
		`{"type":"hello","rooms":{"a1":-1}}`,
		`{"type":"hello","rooms":null,"token":""}`,
		`{"type":"read","room":"general","seq":0}`,
		`{"type":"read","room":"general"}`,
		`{"type":"notifications","before":"0190a000-0000-7000-8000-000000000000","limit":10}`,
		`{"type":"read_notifications","ids":["0190a000-0000-7000-8000-000000000000"]}`,
		`{"type":"read_notifications","all":true,"ids":[]}`,
		`{"type":"set_notification_prefs","level":"mentions","dnd":{"start":"22:00","end":"07:00","zone":"UTC"}}`,
		`{"type":"set_room_notification_prefs","room":"general","muted_until":"2030-01-01T00:00:00Z"}`,
		`{"type":"set_room_notification_prefs","room":"general","muted_until":"soon"}`,
		`{"type":"set_role","room":"general","user":"bob","role":"admin","ref":"s"}`,
		`{"type":"set_role","room":"general","user":"bob","role":""}`,
		`{"type":"mute","room":"general","user":"mia"}`,
		`{"type":"unmute","room":"dm:a:b","user":"mia"}`,
		`{"type":"mute","room":"general","user":"mia","user":"b\u0000b"}`,
		`{"type":"transfer","room":"general","user":"adam"}`,
		`{"type":"update_room","room":"general","name":"Great Hall","topic":"","private":true}`,
		`{"type":"update_room","room":"general","name":null,"topic":null,"private":null}`,
		`{"type":"update_room","room":"general","topic":"` + strings.Repeat("t", 501) + `"}`,
		`{"type":"update_room","room":"general","private":"yes"}`,
		`{"type":"directory","q":"go","limit":100,"cursor":"Z28"}`,
		`{"type":"directory","limit":-1,"q":"%_\\"}`,
	} {
		f.Add([]byte(s))
	}
	lim := protocol.Limits{MaxTextBytes: 64}.WithDefaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, e := protocol.Decode(b, lim)
		if (fr == nil) == (e == nil) {
			t.Fatalf("exactly one of frame and error must be set: %v %v", fr, e)
		}
		if e != nil {
			if e.Type != protocol.TypeError || !knownCodes[e.Code] || e.Message == "" {
				t.Fatalf("bad error frame %+v for %q", e, b)
			}
			// The error is echoed to the client; it must encode and stay small.
			if out := protocol.Encode(e); !json.Valid(out) || len(out) > len(b)+512 {
				t.Fatalf("error frame does not encode sensibly: %s", out)
			}
			return
		}
		checkLimits(t, fr, lim)

		// Re-encoding a decoded frame and decoding it again gives the same frame: the
		// decoder has no state-dependent or lossy paths a client could exploit to make
		// two gateways read one frame differently.
		raw, err := json.Marshal(fr)
		if err != nil {
			t.Fatalf("marshal %#v: %v", fr, err)
		}
		again, e2 := protocol.Decode(raw, lim)
		if e2 != nil {
			t.Fatalf("re-encoded frame %s does not decode: %v (input %q)", raw, e2, b)
		}
		// Compared as JSON, so that an empty list and an absent one count as the same.
		// hello's rooms has no omitempty: {} (subscribe to nothing) stays {}, and an
		// absent rooms (subscribe to all) re-encodes as null, which decodes as absent.
		if again.FrameType() != fr.FrameType() {
			t.Fatalf("round trip changed the type: %#v -> %#v", fr, again)
		}
		if raw2, _ := json.Marshal(again); string(raw2) != string(raw) {
			t.Fatalf("round trip changed the frame:\n%s\n%s", raw, raw2)
		}
	})
}

func checkLimits(t *testing.T, fr protocol.Frame, lim protocol.Limits) {
	t.Helper()
	roomOK := func(r string) {
		if !protocol.ValidRoomRef(r) {
			t.Fatalf("%s frame accepted room %q", fr.FrameType(), r)
		}
	}
	idOK := func(id string) {
		if id == "" || utf8.RuneCountInString(id) > lim.MaxClientMsgID {
			t.Fatalf("%s frame accepted client_msg_id %q", fr.FrameType(), id)
		}
	}
	textOK := func(s string) {
		if s == "" || len(s) > lim.MaxTextBytes || !utf8.ValidString(s) {
			t.Fatalf("%s frame accepted text of %d bytes (valid UTF-8: %v)", fr.FrameType(), len(s), utf8.ValidString(s))
		}
	}
	userOK := func(u string) {
		if !protocol.ValidUsername(u) {
			t.Fatalf("%s frame accepted user %q", fr.FrameType(), u)
		}
	}
	switch f := fr.(type) {
	case *protocol.Send:
		roomOK(f.Room)
		idOK(f.ClientMsgID)
		textOK(f.Text)
	case *protocol.Edit:
		roomOK(f.Room)
		idOK(f.ClientMsgID)
		textOK(f.Text)
		if f.TargetSeq < 1 {
			t.Fatalf("edit accepted target_seq %d", f.TargetSeq)
		}
	case *protocol.Delete:
		roomOK(f.Room)
		idOK(f.ClientMsgID)
		if f.TargetSeq < 1 {
			t.Fatalf("delete accepted target_seq %d", f.TargetSeq)
		}
	case *protocol.DM:
		if !protocol.ValidUsername(f.To) {
			t.Fatalf("dm accepted to %q", f.To)
		}
		idOK(f.ClientMsgID)
		textOK(f.Text)
	case *protocol.Hello:
		if f.Token != "" && f.ReconnectToken != "" {
			t.Fatal("hello accepted both tokens")
		}
		for r, since := range f.Rooms {
			roomOK(r)
			if since < 0 {
				t.Fatalf("hello accepted since_seq %d", since)
			}
		}
	case *protocol.Auth:
		if (f.Token == "") == (f.ReconnectToken == "") {
			t.Fatal("auth accepted zero or two tokens")
		}
	case *protocol.Subscribe:
		roomOK(f.Room)
		if f.SinceSeq != nil && *f.SinceSeq < 0 {
			t.Fatalf("subscribe accepted since_seq %d", *f.SinceSeq)
		}
	case *protocol.History:
		roomOK(f.Room)
		if f.Limit < 0 || f.Limit > lim.MaxHistory || f.BeforeSeq != nil && *f.BeforeSeq < 1 {
			t.Fatalf("history accepted %+v", f)
		}
	case *protocol.Unsubscribe:
		roomOK(f.Room)
	case *protocol.Typing:
		roomOK(f.Room)
	case *protocol.Join:
		roomOK(f.Room)
	case *protocol.Leave:
		roomOK(f.Room)
		if f.Successor != "" && !protocol.ValidUsername(f.Successor) {
			t.Fatalf("leave accepted successor %q", f.Successor)
		}
	case *protocol.Read:
		roomOK(f.Room)
		if f.Seq == nil || *f.Seq < 0 {
			t.Fatalf("read accepted seq %v", f.Seq)
		}
	case *protocol.Notifications:
		if f.Before != "" && !protocol.ValidNotificationID(f.Before) || f.Limit < 0 || f.Limit > 200 {
			t.Fatalf("notifications accepted %+v", f)
		}
	case *protocol.ReadNotifications:
		if f.All == (len(f.IDs) > 0) || len(f.IDs) > protocol.MaxNotificationIDs {
			t.Fatalf("read_notifications accepted %d ids, all %v", len(f.IDs), f.All)
		}
		for _, id := range f.IDs {
			if !protocol.ValidNotificationID(id) {
				t.Fatalf("read_notifications accepted id %q", id)
			}
		}
	case *protocol.SetRole:
		userOK(f.User)
		roomOK(f.Room)
		if f.Role == "" {
			t.Fatal("set_role accepted no role")
		}
	case *protocol.MuteMember:
		roomOK(f.Room)
		userOK(f.User)
	case *protocol.Transfer:
		roomOK(f.Room)
		userOK(f.User)
	case *protocol.UpdateRoom:
		// The values are checked by the gateway (shared with REST), not here.
		roomOK(f.Room)
	case *protocol.Rooms, *protocol.Users, *protocol.Stats, *protocol.Token, *protocol.Ping, *protocol.Quit, *protocol.Directory:
	default:
		// A frame type newer than this test: only the round trip below applies.
	}
}
