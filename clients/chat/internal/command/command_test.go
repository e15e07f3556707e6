package command

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line    string
		want    Command
		wantErr string // substring of the error; "" for none
	}{
		{"", Command{Kind: Empty}, ""},
		{"   \t", Command{Kind: Empty}, ""},
		{"hello there", Command{Kind: Say, Text: "hello there"}, ""},
		{"  indented stays as typed", Command{Kind: Say, Text: "  indented stays as typed"}, ""},
		{"hi\r\n", Command{Kind: Say, Text: "hi"}, ""},
		{"<script>alert(1)</script>", Command{Kind: Say, Text: "<script>alert(1)</script>"}, ""},
		{"//not a command", Command{Kind: Say, Text: "/not a command"}, ""},
		{"/join general", Command{Kind: Join, Room: "general"}, ""},
		{"/join #general", Command{Kind: Join, Room: "general"}, ""},
		{"/JOIN general", Command{Kind: Join, Room: "general"}, ""},
		{"/join", Command{}, "/join ROOM"},
		{"/join a b", Command{}, "/join ROOM [private]"},
		{"/join #vault private", Command{Kind: Join, Room: "vault", Private: true}, ""},
		{"/join vault PRIVATE", Command{Kind: Join, Room: "vault", Private: true}, ""},
		{"/role @bob ADMIN", Command{Kind: Role, User: "bob", Text: "admin"}, ""},
		{"/role bob member", Command{Kind: Role, User: "bob", Text: "member"}, ""},
		{"/role bob owner", Command{}, "/role USER admin|member"},
		{"/role bob", Command{}, "/role USER admin|member"},
		{"/transfer @bob", Command{Kind: Transfer, User: "bob"}, ""},
		{"/transfer", Command{}, "/transfer USER"},
		{"/topic all hands on deck", Command{Kind: Topic, Text: "all hands on deck"}, ""},
		{"/topic", Command{}, "/topic TEXT"},
		{"/rename Great Hall", Command{Kind: Rename, Text: "Great Hall"}, ""},
		{"/rename", Command{}, "/rename NAME"},
		{"/directory", Command{Kind: Directory}, ""},
		{"/directory go lang", Command{Kind: Directory, Text: "go lang"}, ""},
		{"/invite bob", Command{Kind: Invite, User: "bob"}, ""},
		{"/invite @bob", Command{Kind: Invite, User: "bob"}, ""},
		{"/invite", Command{}, "/invite USER"},
		{"/invite bob carol", Command{}, "/invite USER"},
		{"/invites", Command{Kind: Invites}, ""},
		{"/kick bob", Command{Kind: Kick, User: "bob"}, ""},
		{"/BAN @bob", Command{Kind: Ban, User: "bob"}, ""},
		{"/unban bob", Command{Kind: Unban, User: "bob"}, ""},
		{"/kick", Command{}, "/kick USER"},
		{"/ban a b", Command{}, "/ban USER"},
		{"/accept #vault", Command{Kind: Accept, Room: "vault"}, ""},
		{"/decline vault", Command{Kind: Decline, Room: "vault"}, ""},
		{"/accept", Command{}, "/accept ROOM"},
		{"/decline a b", Command{}, "/decline ROOM"},
		{"/leave", Command{Kind: Leave}, ""},
		{"/leave #random", Command{Kind: Leave, Room: "random"}, ""},
		{"/leave a b", Command{}, "/leave [ROOM] [@SUCCESSOR]"},
		{"/leave @bob", Command{Kind: Leave, User: "bob"}, ""},
		{"/leave #random @bob", Command{Kind: Leave, Room: "random", User: "bob"}, ""},
		{"/leave @bob random", Command{Kind: Leave, Room: "random", User: "bob"}, ""},
		{"/leave @bob @carol", Command{}, "/leave [ROOM] [@SUCCESSOR]"},
		{"/rooms", Command{Kind: Rooms}, ""},
		{"/users", Command{Kind: Users}, ""},
		{"/history", Command{Kind: History, N: 20}, ""},
		{"/history 5", Command{Kind: History, N: 5}, ""},
		{"/history 200", Command{Kind: History, N: 200}, ""},
		{"/history 0", Command{}, "N from 1 to 200"},
		{"/history 201", Command{}, "N from 1 to 200"},
		{"/history ten", Command{}, "N from 1 to 200"},
		{"/history 1 2", Command{}, "/history [N]"},
		{"/react 12 👍", Command{Kind: React, Seq: 12, Text: "👍"}, ""},
		{"/REACT #12 :tada:", Command{Kind: React, Seq: 12, Text: ":tada:"}, ""},
		{"/unreact 12 👍", Command{Kind: Unreact, Seq: 12, Text: "👍"}, ""},
		{"/react 12", Command{}, "/react SEQ EMOJI"},
		{"/react x 👍", Command{}, "/react SEQ EMOJI"},
		{"/react 0 👍", Command{}, "/react SEQ EMOJI"},
		{"/react 12 👍 🎉", Command{}, "/react SEQ EMOJI"},
		{"/unreact 12", Command{}, "/unreact SEQ EMOJI"},
		{"/reply 12 sounds good", Command{Kind: Reply, Seq: 12, Text: "sounds good"}, ""},
		{"/reply #12  spaced ", Command{Kind: Reply, Seq: 12, Text: "spaced"}, ""},
		{"/reply 12", Command{}, "/reply SEQ TEXT"},
		{"/reply x hi", Command{}, "/reply SEQ TEXT"},
		{"/reply 0 hi", Command{}, "/reply SEQ TEXT"},
		{"/thread 12", Command{Kind: Thread, Seq: 12}, ""},
		{"/thread", Command{}, "/thread SEQ"},
		{"/thread -3", Command{}, "/thread SEQ"},
		{"/msg bob hi there", Command{Kind: Msg, User: "bob", Text: "hi there"}, ""},
		{"/msg @bob  spaced   out ", Command{Kind: Msg, User: "bob", Text: "spaced   out"}, ""},
		{"/msg bob", Command{}, "/msg USER TEXT"},
		{"/msg", Command{}, "/msg USER TEXT"},
		{"/search deploy failed", Command{Kind: Search, Text: "deploy failed"}, ""},
		{`/search  "a phrase" -not `, Command{Kind: Search, Text: `"a phrase" -not`}, ""},
		{"/search", Command{}, "/search TEXT"},
		{"/search   ", Command{}, "/search TEXT"},
		{"/notify mentions", Command{Kind: Notify, Text: "mentions"}, ""},
		{"/notify NONE #random", Command{Kind: Notify, Text: "none", Room: "random"}, ""},
		{"/notify default random", Command{Kind: Notify, Text: "default", Room: "random"}, ""},
		{"/notify default", Command{}, "/notify default ROOM"},
		{"/notify loud", Command{}, `not "loud"`},
		{"/notify", Command{}, "/notify all|mentions|none"},
		{"/notify all a b", Command{}, "/notify all|mentions|none"},
		{"/mute 30", Command{Kind: Mute, N: 30}, ""},
		{"/mute 0 #general", Command{Kind: Mute, Room: "general"}, ""},
		{"/mute -5", Command{}, "MINUTES from 0"},
		{"/mute 527041", Command{}, "MINUTES from 0"},
		{"/mute soon later", Command{}, "MINUTES from 0"},
		{"/mute", Command{}, "/mute USER, or /mute MINUTES [ROOM]"},
		// A member to mute in the current room: a word that is no number, or @NAME.
		{"/mute bob", Command{Kind: MuteUser, User: "bob"}, ""},
		{"/mute @bob", Command{Kind: MuteUser, User: "bob"}, ""},
		{"/mute @123", Command{Kind: MuteUser, User: "123"}, ""},
		{"/mute 123", Command{Kind: Mute, N: 123}, ""},
		{"/mute @bob general", Command{}, "/mute USER"},
		{"/MUTE Bob", Command{Kind: MuteUser, User: "Bob"}, ""},
		{"/unmute bob", Command{Kind: UnmuteUser, User: "bob"}, ""},
		{"/unmute @bob", Command{Kind: UnmuteUser, User: "bob"}, ""},
		{"/unmute", Command{}, "/unmute USER"},
		{"/unmute bob carol", Command{}, "/unmute USER"},
		{"/token", Command{Kind: Token}, ""},
		{"/stats", Command{Kind: Stats}, ""},
		{"/quit", Command{Kind: Quit}, ""},
		{"/exit", Command{Kind: Quit}, ""},
		{"/help", Command{Kind: Help}, ""},
		{"/frobnicate", Command{}, "unknown command /frobnicate"},
		{"/", Command{}, "unknown command /"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.line)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrUsage) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}
