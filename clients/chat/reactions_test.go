package main_test

import (
	"testing"
	"time"
)

// TestReactionSession: reactions from the terminal. Bob reacts to alice's message with
// /react and takes it back with /unreact; both see each toggle as a line of the room; a
// reaction to a join entry is refused with the gateway's message.
func TestReactionSession(t *testing.T) {
	const wait = 30 * time.Second
	alice, bob := denWithQuestion(t)

	bob.say("/react 3 👍")
	alice.expectOut(clock+`#den \* bob reacted 👍 on message 3$`, wait)
	bob.say("/unreact #3 👍")
	alice.expectOut(clock+`#den \* bob removed 👍 on message 3$`, wait)
	bob.expectOut(clock+`#den \* bob removed 👍 on message 3$`, wait)
	bob.say("/react 1 👍")
	bob.expectErr("message not sent to #den: ", wait)
	bob.say("/react 3")
	bob.expectErr("/react SEQ EMOJI", wait)

	quitAll(t, alice, bob)
}
