package main_test

import (
	"strings"
	"testing"
	"time"
)

// TestRolesSession: roles from the terminal, over the WebSocket frames. Alice creates a
// room and makes bob an admin; bob mutes carol, whose message is refused until alice
// unmutes her; bob sets the topic, an overlong one is refused with the gateway's words;
// carol may not rename the room but finds it in the directory; alice hands it to bob and
// cannot do so twice.
func TestRolesSession(t *testing.T) {
	p := startPlatform(t, "gw-a")
	const wait = 30 * time.Second
	run := func(name string) *chatProc { return p.signedIn(t, name, "gw-a") }
	alice, bob, carol := run("alice"), run("bob"), run("carol")
	alice.say("/join hall")
	alice.expectOut(clock+`#hall \* alice joined$`, wait)
	bob.say("/join hall")
	alice.expectOut(clock+`#hall \* bob joined$`, wait)
	carol.say("/join hall")
	alice.expectOut(clock+`#hall \* carol joined$`, wait)

	alice.say("/role bob admin", "/role @bob ADMIN")
	alice.expectErr("bob is now admin in #hall", wait)
	alice.expectErr("bob was admin in #hall already", wait)

	bob.say("/mute carol", "/mute alice")
	bob.expectErr("muted carol in #hall: they read but cannot post until /unmute carol", wait)
	bob.expectErr("/mute: you may only act on members whose role is below yours (admin)", wait)
	carol.say("let me talk")
	carol.expectErr("message not sent to #hall: you are muted in this room", wait)
	alice.say("/unmute carol")
	alice.expectErr("unmuted carol in #hall", wait)
	carol.say("free again")
	bob.expectOut(clock+`#hall <carol> free again$`, wait)

	bob.say("/topic release day", "/topic "+strings.Repeat("t", 501))
	bob.expectErr(`topic of #hall set to "release day"`, wait)
	bob.expectErr("/topic: topic: is longer than 500 bytes", wait)
	alice.say("/rename Great Hall")
	alice.expectErr(`name of #hall set to "Great Hall"`, wait)
	carol.say("/rename Mine", "/directory HAL")
	carol.expectErr("/rename: only a room owner or admin may do this", wait)
	carol.expectErr("#hall Great Hall (3 members) release day", wait)

	alice.say("/transfer bob")
	alice.expectErr("bob now owns #hall; you are an admin", wait)
	alice.say("/transfer bob")
	alice.expectErr("/transfer: you may only act on members whose role is below yours (admin)", wait)

	quitAll(t, alice, bob, carol)
}
