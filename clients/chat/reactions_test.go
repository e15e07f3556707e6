package main_test

import (
	"testing"
	"time"
)

// TestReactionSession: reactions from the terminal. Bob reacts to alice's message with
// /react and takes it back with /unreact; both see each toggle as a line of the room; a
// reaction to a join entry is refused with the gateway's message.
func TestReactionSession(t *testing.T) {
	p := startPlatform(t, "gw-a")
	const wait = 30 * time.Second
	run := func(name string) *chatProc {
		c := p.chatRun(t, name, "-url", p.ws("gw-a"), "-user", name, "-password", name+"-secret", "-register", "-connect-timeout", "20s")
		c.expectErr("connected to gw-a", wait)
		return c
	}
	alice, bob := run("alice"), run("bob")
	alice.say("/join den")
	alice.expectOut(clock+`#den \* alice joined$`, wait)
	bob.say("/join den")
	alice.expectOut(clock+`#den \* bob joined$`, wait)
	alice.say("ship it?")
	bob.expectOut(clock+`#den <alice> ship it\?$`, wait) // seq 3

	bob.say("/react 3 👍")
	alice.expectOut(clock+`#den \* bob reacted 👍 on message 3$`, wait)
	bob.say("/unreact #3 👍")
	alice.expectOut(clock+`#den \* bob removed 👍 on message 3$`, wait)
	bob.expectOut(clock+`#den \* bob removed 👍 on message 3$`, wait)
	bob.say("/react 1 👍")
	bob.expectErr("message not sent to #den: ", wait)
	bob.say("/react 3")
	bob.expectErr("/react SEQ EMOJI", wait)

	for _, c := range []*chatProc{alice, bob} {
		c.say("/quit")
		if code := c.exit(wait); code != 0 {
			t.Fatalf("%s exited %d", c.name, code)
		}
	}
}
