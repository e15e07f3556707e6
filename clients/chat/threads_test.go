package main_test

import (
	"testing"
	"time"
)

// denWithQuestion starts a gateway and two clients, alice and bob, in room den, where
// alice has asked "ship it?" (seq 3, after the two joins) and bob has seen it.
func denWithQuestion(t *testing.T) (alice, bob *chatProc) {
	t.Helper()
	const wait = 30 * time.Second
	p := startPlatform(t, "gw-a")
	alice, bob = p.signedIn(t, "alice", "gw-a"), p.signedIn(t, "bob", "gw-a")
	alice.say("/join den")
	alice.expectOut(clock+`#den \* alice joined$`, wait)
	bob.say("/join den")
	alice.expectOut(clock+`#den \* bob joined$`, wait)
	alice.say("ship it?")
	bob.expectOut(clock+`#den <alice> ship it\?$`, wait)
	return alice, bob
}

// TestThreadSession: threads from the terminal. Alice posts, bob replies with /reply and
// both see the reply marked as one; /history shows the root's reply count; /thread lists
// the root and its replies; a reply to a join is refused with the gateway's message.
func TestThreadSession(t *testing.T) {
	const wait = 30 * time.Second
	alice, bob := denWithQuestion(t)

	bob.say("/reply 3 yes, ship it")
	alice.expectOut(clock+`#den <bob> yes, ship it \(reply to 3\)$`, wait)
	bob.expectOut(clock+`#den <bob> yes, ship it \(reply to 3\)$`, wait)
	bob.say("/reply 1 no")
	bob.expectErr("message not sent to #den: thread_root: only messages can start a thread, not join entries", wait)

	alice.say("/history")
	alice.expectOut(clock+`#den <alice> ship it\? \[1 reply, last [0-9:]{8}, 1 unread: /thread 3\]$`, wait)
	alice.say("/thread 3")
	alice.expectOut(`^--- thread of #den/3: 1 replies shown ---$`, wait)
	alice.expectOut(clock+`#den <alice> ship it\?$`, wait)
	alice.expectOut(clock+`#den <bob> yes, ship it \(reply to 3\)$`, wait)
	alice.expectOut(`^--- end of thread ---$`, wait)
	// /thread marked it read.
	alice.say("/history")
	alice.expectOut(clock+`#den <alice> ship it\? \[1 reply, last [0-9:]{8}: /thread 3\]$`, wait)

	quitAll(t, alice, bob)
}
