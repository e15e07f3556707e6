package main_test

import (
	"testing"
	"time"
)

// TestPrivateRoomSession: a private room from the terminal. Alice creates it with
// /join ROOM private; bob cannot join it without an invitation (the answer of a room that
// does not exist); alice invites him, he lists and accepts the invitation and they talk;
// carol declines hers and then has nothing left to accept. Then alice kicks bob, bans
// carol and lifts the ban.
func TestPrivateRoomSession(t *testing.T) {
	p := startPlatform(t, "gw-a")
	const wait = 30 * time.Second
	run := func(name string) *chatProc { return p.signedIn(t, name, "gw-a") }
	alice, bob, carol := run("alice"), run("bob"), run("carol")

	alice.say("/join vault private")
	alice.expectErr("created #vault, private: /invite USER to let someone in", wait)
	alice.expectOut(clock+`#vault \* alice joined$`, wait)
	bob.say("/join vault")
	bob.expectErr("/join: no such room", wait)

	alice.say("/invite bob", "/invite bob", "/invite nobody")
	alice.expectErr("invited bob to #vault until ", wait)
	alice.expectErr("/invite: bob is invited already", wait)
	alice.expectErr("/invite: no such user", wait)
	bob.say("/invites")
	bob.expectOut(`^--- invitations ---$`, wait)
	bob.expectOut(`^  #vault from alice, until .+: /accept vault or /decline vault$`, wait)
	bob.say("/accept vault")
	bob.expectErr("now in #vault", wait)
	bob.say("only for us")
	alice.expectOut(clock+`#vault \* bob joined$`, wait)
	alice.expectOut(clock+`#vault <bob> only for us$`, wait)
	bob.expectOut(clock+`#vault <bob> only for us$`, wait)

	alice.say("/invite carol")
	alice.expectErr("invited carol to #vault", wait)
	carol.say("/decline vault", "/invites", "/accept vault")
	carol.expectErr("declined #vault", wait)
	carol.expectOut(`^  \(none\)$`, wait)
	carol.expectErr("/accept: no such invitation", wait)

	// Moderation: alice kicks bob (both see who did it), bans carol and lifts it again.
	alice.say("/kick bob")
	alice.expectErr("kicked bob from #vault", wait)
	alice.expectOut(clock+`#vault \* bob left \(kicked by alice\)$`, wait)
	bob.expectErr("you were kicked from #vault", wait)
	bob.say("/kick alice") // vault is no longer his current room
	bob.expectErr("no current room", wait)
	alice.say("/ban carol", "/unban carol", "/unban carol")
	alice.expectErr("banned carol from #vault", wait)
	alice.expectErr("lifted carol's ban from #vault", wait)
	alice.expectErr("carol was not banned from #vault", wait)

	quitAll(t, alice, bob, carol)
}
