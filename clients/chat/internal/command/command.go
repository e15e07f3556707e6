// Package command parses what a user types into the terminal client: a line starting with
// "/" is a command, anything else is a message to the current room. It only parses; it
// knows nothing of connections, so every rule is checked by a table test.
package command

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind names what a line asks for.
type Kind int

// The commands. Empty is a blank line, which does nothing.
const (
	Empty      Kind = iota
	Say             // plain text to the current room
	Join            // /join room
	Leave           // /leave [room]
	Rooms           // /rooms
	Users           // /users
	History         // /history [N]
	Msg             // /msg user text
	Token           // /token
	Stats           // /stats
	Quit            // /quit
	Help            // /help
	Search          // /search TEXT
	Notify          // /notify all|mentions|none|default [ROOM]
	Mute            // /mute MINUTES [ROOM]
	Invite          // /invite USER (to the current room)
	Invites         // /invites
	Accept          // /accept ROOM
	Decline         // /decline ROOM
	Kick            // /kick USER (from the current room)
	Ban             // /ban USER (from the current room)
	Unban           // /unban USER (of the current room)
	Reply           // /reply SEQ TEXT (in the current room)
	Thread          // /thread SEQ (of the current room)
	Role            // /role USER admin|member (in the current room)
	Transfer        // /transfer USER (the current room's ownership)
	Topic           // /topic TEXT (of the current room)
	Rename          // /rename NAME (the current room)
	Directory       // /directory [Q]
	MuteUser        // /mute USER (in the current room)
	UnmuteUser      // /unmute USER (in the current room)
	React           // /react SEQ EMOJI (in the current room)
	Unreact         // /unreact SEQ EMOJI (in the current room)
)

// MaxMuteMinutes is the longest /mute (366 days, the gateway's limit; longer is /notify none).
const MaxMuteMinutes = 366 * 24 * 60

// DefaultHistory is /history without N; MaxHistory is the gateway's page limit.
const (
	DefaultHistory = 20
	MaxHistory     = 200
)

// Command is one parsed line.
type Command struct {
	Kind Kind
	Room string // Join, Leave (empty: the current room), Accept, Decline
	User string // Msg, Invite, Kick, Ban, Unban, Role, Transfer, MuteUser, UnmuteUser
	Text string // Say, Msg, Search; Notify: the level ("default": the user's default, rooms only); React, Unreact: the emoji
	N    int    // History; Mute: minutes (0 unmutes)
	Seq  int64  // Reply, Thread: the thread's root; React, Unreact: the message
	// Private is /join ROOM private: create the room private (invitation only) if it
	// does not exist.
	Private bool
}

// ErrUsage is wrapped by every parse error, whose message says what was expected.
var ErrUsage = errors.New("usage")

func usage(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// Usage is the help text, one command per line.
const Usage = `/join ROOM        join (or create) a room and make it current
/join ROOM private  the same, creating it private (invitation only)
/invite USER      invite USER to the current private room (its admins only)
/invites          your pending invitations
/accept ROOM      accept an invitation and make the room current
/decline ROOM     decline an invitation
/kick USER        remove USER from the current room (its admins only)
/ban USER         remove USER from the current room and keep them out (its admins only)
/unban USER       lift USER's ban from the current room
/role USER ROLE   make USER an admin or a member of the current room (its owner only)
/mute USER        USER reads the current room but may not post (its owner and admins only)
/unmute USER      let USER post in the current room again
/transfer USER    make USER the owner of the current room (you become an admin)
/topic TEXT       set the current room's topic (its owner and admins only)
/rename NAME      rename the current room (its owner and admins only)
/directory [Q]    public rooms whose id, name or topic contains Q
/leave [ROOM] [@SUCCESSOR]
                  leave the current room (or ROOM); its owner names who owns it next
/rooms            your rooms and the public ones
/users            who is online
/history [N]      the last N entries of the current room (default 20, at most 200)
/reply SEQ TEXT   reply in the thread of message SEQ of the current room
/thread SEQ       the thread of message SEQ: its root and replies (marks it read)
/react SEQ EMOJI  react to message SEQ of the current room with EMOJI
/unreact SEQ EMOJI  take that reaction back
/msg USER TEXT    a direct message
/search TEXT      find messages in your rooms: words, "a phrase", or, -word (matches in «»)
/notify LEVEL [ROOM]  notifications: all, mentions (and DMs) or none; with ROOM (or "default") for that room only
/mute MINUTES [ROOM]  no notifications from the current room (or ROOM) for MINUTES; 0 unmutes
                  (a number is MINUTES: /mute @NAME mutes a user whose name is a number)
/token            a fresh reconnect token (start another client with -reconnect-token)
/stats            this connection's and the gateway's counters
/quit             leave after unacknowledged messages are sent
TEXT              a message to the current room (start it with // to send a leading /)`

// Parse reads one line of input.
func Parse(line string) (Command, error) {
	line = strings.TrimRight(line, "\r\n")
	if strings.TrimSpace(line) == "" {
		return Command{Kind: Empty}, nil
	}
	if !strings.HasPrefix(line, "/") {
		return Command{Kind: Say, Text: line}, nil
	}
	if strings.HasPrefix(line, "//") {
		// The escape for a message that starts with a slash.
		return Command{Kind: Say, Text: line[1:]}, nil
	}
	name, rest, _ := strings.Cut(line[1:], " ")
	rest = strings.TrimSpace(rest)
	args := strings.Fields(rest)
	switch strings.ToLower(name) {
	case "join":
		if len(args) == 2 && strings.EqualFold(args[1], "private") {
			return Command{Kind: Join, Room: roomArg(args[0]), Private: true}, nil
		}
		if len(args) != 1 {
			return Command{}, usage("/join ROOM [private]")
		}
		return Command{Kind: Join, Room: roomArg(args[0])}, nil
	case "invite":
		if len(args) != 1 {
			return Command{}, usage("/invite USER")
		}
		return Command{Kind: Invite, User: strings.TrimPrefix(args[0], "@")}, nil
	case "invites":
		return Command{Kind: Invites}, nil
	case "kick", "ban", "unban":
		lower := strings.ToLower(name)
		if len(args) != 1 {
			return Command{}, usage("/%s USER", lower)
		}
		k := map[string]Kind{"kick": Kick, "ban": Ban, "unban": Unban}[lower]
		return Command{Kind: k, User: strings.TrimPrefix(args[0], "@")}, nil
	case "role":
		if len(args) != 2 || (!strings.EqualFold(args[1], "admin") && !strings.EqualFold(args[1], "member")) {
			return Command{}, usage("/role USER admin|member")
		}
		return Command{Kind: Role, User: strings.TrimPrefix(args[0], "@"), Text: strings.ToLower(args[1])}, nil
	case "transfer":
		if len(args) != 1 {
			return Command{}, usage("/transfer USER")
		}
		return Command{Kind: Transfer, User: strings.TrimPrefix(args[0], "@")}, nil
	case "topic", "rename":
		k := map[string]Kind{"topic": Topic, "rename": Rename}[strings.ToLower(name)]
		if rest == "" {
			return Command{}, usage(map[Kind]string{Topic: "/topic TEXT", Rename: "/rename NAME"}[k])
		}
		return Command{Kind: k, Text: rest}, nil
	case "directory":
		return Command{Kind: Directory, Text: rest}, nil
	case "accept", "decline":
		if len(args) != 1 {
			return Command{}, usage("/%s ROOM", strings.ToLower(name))
		}
		k := Accept
		if strings.EqualFold(name, "decline") {
			k = Decline
		}
		return Command{Kind: k, Room: roomArg(args[0])}, nil
	case "leave", "part":
		// The owner names a successor with @: a bare word stays a room, as it always was.
		c := Command{Kind: Leave}
		for _, a := range args {
			switch {
			case strings.HasPrefix(a, "@") && c.User == "":
				c.User = strings.TrimPrefix(a, "@")
			case !strings.HasPrefix(a, "@") && c.Room == "":
				c.Room = roomArg(a)
			default:
				return Command{}, usage("/leave [ROOM] [@SUCCESSOR]")
			}
		}
		return c, nil
	case "rooms":
		return Command{Kind: Rooms}, nil
	case "users", "who":
		return Command{Kind: Users}, nil
	case "history":
		c := Command{Kind: History, N: DefaultHistory}
		if len(args) > 1 {
			return Command{}, usage("/history [N]")
		}
		if len(args) == 1 {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > MaxHistory {
				return Command{}, usage("/history [N] with N from 1 to %d", MaxHistory)
			}
			c.N = n
		}
		return c, nil
	case "reply":
		seq, text, _ := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(strings.TrimPrefix(seq, "#"), 10, 64)
		text = strings.TrimSpace(text)
		if err != nil || n < 1 || text == "" {
			return Command{}, usage("/reply SEQ TEXT with SEQ a message's number")
		}
		return Command{Kind: Reply, Seq: n, Text: text}, nil
	case "react", "unreact":
		kind, form := React, "/react"
		if strings.EqualFold(name, "unreact") {
			kind, form = Unreact, "/unreact"
		}
		var n int64
		var err error
		if len(args) == 2 {
			n, err = strconv.ParseInt(strings.TrimPrefix(args[0], "#"), 10, 64)
		}
		if len(args) != 2 || err != nil || n < 1 {
			return Command{}, usage("%s SEQ EMOJI with SEQ a message's number", form)
		}
		return Command{Kind: kind, Seq: n, Text: args[1]}, nil
	case "thread":
		if len(args) != 1 {
			return Command{}, usage("/thread SEQ")
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(args[0], "#"), 10, 64)
		if err != nil || n < 1 {
			return Command{}, usage("/thread SEQ with SEQ a message's number")
		}
		return Command{Kind: Thread, Seq: n}, nil
	case "msg":
		user, text, _ := strings.Cut(rest, " ")
		text = strings.TrimSpace(text)
		if user == "" || text == "" {
			return Command{}, usage("/msg USER TEXT")
		}
		return Command{Kind: Msg, User: strings.TrimPrefix(user, "@"), Text: text}, nil
	case "search", "find":
		if rest == "" {
			return Command{}, usage("/search TEXT")
		}
		return Command{Kind: Search, Text: rest}, nil
	case "notify":
		if len(args) < 1 || len(args) > 2 {
			return Command{}, usage("/notify all|mentions|none [ROOM], or /notify default ROOM")
		}
		c := Command{Kind: Notify, Text: strings.ToLower(args[0])}
		if len(args) == 2 {
			c.Room = roomArg(args[1])
		}
		switch {
		case c.Text == "default" && c.Room == "":
			return Command{}, usage("/notify default ROOM (your default level applies to ROOM again)")
		case c.Text != "all" && c.Text != "mentions" && c.Text != "none" && c.Text != "default":
			return Command{}, usage("/notify all|mentions|none [ROOM], not %q", args[0])
		}
		return c, nil
	case "mute":
		if len(args) < 1 || len(args) > 2 {
			return Command{}, usage("/mute USER, or /mute MINUTES [ROOM]")
		}
		// A lone word that is no number, or @NAME, is a member of the current room to
		// mute; numbers stay notification mutes, which had /mute first.
		user, named := strings.CutPrefix(args[0], "@")
		if _, err := strconv.Atoi(args[0]); err != nil && len(args) == 1 {
			named = true
		}
		if named {
			if len(args) != 1 {
				return Command{}, usage("/mute USER")
			}
			return Command{Kind: MuteUser, User: user}, nil
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 || n > MaxMuteMinutes {
			return Command{}, usage("/mute MINUTES [ROOM] with MINUTES from 0 (unmute) to %d", MaxMuteMinutes)
		}
		c := Command{Kind: Mute, N: n}
		if len(args) == 2 {
			c.Room = roomArg(args[1])
		}
		return c, nil
	case "unmute":
		if len(args) != 1 {
			return Command{}, usage("/unmute USER (/mute 0 [ROOM] unmutes a room's notifications)")
		}
		return Command{Kind: UnmuteUser, User: strings.TrimPrefix(args[0], "@")}, nil
	case "token":
		return Command{Kind: Token}, nil
	case "stats":
		return Command{Kind: Stats}, nil
	case "quit", "exit":
		return Command{Kind: Quit}, nil
	case "help", "?":
		return Command{Kind: Help}, nil
	default:
		return Command{}, fmt.Errorf("%w: unknown command /%s (try /help)", ErrUsage, name)
	}
}

// roomArg accepts "#general" for "general": people type what the client prints.
func roomArg(s string) string { return strings.TrimPrefix(s, "#") }
