// Package app is the terminal client's behaviour: log in over REST, keep a resumable
// WebSocket (internal/client), read commands and messages line by line from its input
// (a terminal or a script) and print what happens as lines. Timeline entries go to the
// output; connection trouble, warnings and errors go to the error stream, so a script can
// read the output as data.
package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kchat/kchat/clients/chat/internal/client"
	"github.com/kchat/kchat/clients/chat/internal/command"
	"github.com/kchat/kchat/clients/chat/internal/render"
	"github.com/kchat/kchat/pkg/protocol"
)

// Options configure one run.
type Options struct {
	URLs           []string // WebSocket URLs, already normalized
	User           string
	Password       string
	Register       bool
	ReconnectToken string // log in with this instead of a password
	Room           string // join (or create) this room first
	ConnectTimeout time.Duration
	Verbose        bool
	In             io.Reader
	Out, Err       io.Writer
	Loc            *time.Location
}

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
)

// App is one run of the client.
type App struct {
	opts       Options
	rest       *rest
	cl         *client.Client
	render     render.Renderer
	registered bool

	outMu sync.Mutex

	mu        sync.Mutex
	me        protocol.User
	session   string
	current   string            // the room plain lines go to
	labels    map[string]string // DM room -> "@other"
	dmTargets map[string]string // client_msg_id of a /msg -> recipient
	httpBase  string            // REST base of the gateway we are connected to
}

// Run runs the client until /quit, end of input, a fatal error or ctx ends, and returns
// the exit code.
func Run(ctx context.Context, opts Options) int {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	a := &App{opts: opts, rest: newREST(), labels: map[string]string{}, dmTargets: map[string]string{}}
	a.render = render.Renderer{Loc: opts.Loc, Label: a.label}
	return a.run(ctx)
}

func (a *App) println(line string) {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	fmt.Fprintln(a.opts.Out, line)
}

func (a *App) printLines(lines []string) {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(a.opts.Out, l)
	}
}

// errf writes one line to the error stream, prefixed so it is clear who is speaking.
func (a *App) errf(format string, args ...any) {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	fmt.Fprintf(a.opts.Err, "chat: "+format+"\n", args...)
}

func (a *App) label(room string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.labels[room]
}

func (a *App) run(ctx context.Context) int {
	s, err := a.authenticate(ctx, true)
	if err != nil {
		a.errf("%v", err)
		return ExitFailure
	}
	a.mu.Lock()
	a.session, a.me = s.Token, protocol.User{ID: s.User.ID, Username: s.User.Username}
	a.httpBase = client.HTTPBase(a.opts.URLs[0])
	a.mu.Unlock()

	a.cl = client.New(client.Config{
		URLs: a.opts.URLs, ConnectTimeout: a.opts.ConnectTimeout, Logf: a.errf,
		Reauth: a.reauth,
	})
	a.cl.Start(ctx, s.Token)
	events := make(chan struct{})
	go func() { defer close(events); a.handleEvents(ctx) }()

	code := a.loop(ctx)
	if code == ExitOK {
		// Nothing the user typed is dropped silently: wait for every ack first.
		wctx, cancel := context.WithTimeout(context.Background(), a.opts.ConnectTimeout+10*time.Second)
		if n := a.cl.WaitPending(wctx); n > 0 {
			a.errf("%d message(s) were not acknowledged by any gateway", n)
			code = ExitFailure
		}
		cancel()
	}
	a.cl.Close()
	<-events // every received line is printed before we exit
	if err := a.cl.Err(); err != nil {
		a.errf("%v", err) // why the connection could not be kept: the last line a script sees
		code = ExitFailure
	}
	return code
}

// reauth logs in again when the gateway refuses both tokens (they expired while the client
// was disconnected); only possible with a password.
func (a *App) reauth(ctx context.Context) (string, error) {
	if a.opts.Password == "" {
		return "", errors.New("the session has expired: log in with -user and -password")
	}
	s, err := a.authenticate(ctx, false)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.session = s.Token
	a.mu.Unlock()
	return s.Token, nil
}

// loop reads input lines until /quit or end of input. It returns ExitFailure when the
// connection is lost for good.
func (a *App) loop(ctx context.Context) int {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(a.opts.In)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-a.cl.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			a.errf("reading input: %v", err)
		}
	}()
	if a.opts.Room != "" {
		if !a.join(ctx, a.opts.Room, false) {
			return ExitFailure
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ExitOK
		case <-a.cl.Done():
			return ExitFailure
		case line, ok := <-lines:
			if !ok {
				return ExitOK
			}
			cmd, err := command.Parse(line)
			if err != nil {
				a.errf("%v", err)
				continue
			}
			if cmd.Kind == command.Quit {
				return ExitOK
			}
			if !a.execute(ctx, cmd) {
				return ExitFailure
			}
		}
	}
}

// ask sends a request frame and returns its typed reply, bounded so that a script never
// hangs on a gateway that stays away.
func ask[T protocol.Frame](ctx context.Context, a *App, req client.Request) (T, error) {
	rctx, cancel := context.WithTimeout(ctx, a.opts.ConnectTimeout+15*time.Second)
	defer cancel()
	var zero T
	f, err := a.cl.Request(rctx, req)
	if err != nil {
		return zero, err
	}
	t, ok := f.(T)
	if !ok {
		return zero, fmt.Errorf("unexpected %q reply to %q", f.FrameType(), req.FrameType())
	}
	return t, nil
}

// reqBase is the header of a request frame; Client.Request sets its ref.
func reqBase(typ string) protocol.Base { return protocol.Base{Type: typ} }

func (a *App) currentRoom() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// execute runs one command; it returns false only when the client has ended.
func (a *App) execute(ctx context.Context, cmd command.Command) bool {
	switch cmd.Kind {
	case command.Empty:
	case command.Help:
		a.printLines(strings.Split(command.Usage, "\n"))
	case command.Say:
		room := a.currentRoom()
		if room == "" {
			a.errf("no current room: /join ROOM first")
			return true
		}
		if _, err := a.cl.Send(ctx, room, cmd.Text); err != nil {
			return false
		}
	case command.Reply:
		room := a.currentRoom()
		if room == "" {
			a.errf("no current room: /join ROOM first")
			return true
		}
		if _, err := a.cl.SendReply(ctx, room, cmd.Seq, cmd.Text); err != nil {
			return false
		}
	case command.React, command.Unreact:
		room := a.currentRoom()
		if room == "" {
			a.errf("no current room: /join ROOM first")
			return true
		}
		if _, err := a.cl.SendReaction(ctx, room, cmd.Seq, cmd.Text, cmd.Kind == command.React); err != nil {
			return false
		}
	case command.Thread:
		return a.thread(ctx, cmd.Seq)
	case command.Msg:
		to := cmd.User
		id, err := a.cl.SendDM(ctx, to, cmd.Text)
		if err != nil {
			return false
		}
		a.mu.Lock()
		a.dmTargets[id] = to
		a.mu.Unlock()
	case command.Join:
		a.join(ctx, cmd.Room, cmd.Private)
	case command.Invite, command.Invites, command.Accept, command.Decline:
		return a.invitation(ctx, cmd)
	case command.Kick, command.Ban, command.Unban:
		return a.moderate(ctx, cmd)
	case command.Role, command.Transfer, command.Topic, command.Rename, command.MuteUser, command.UnmuteUser:
		return a.roomAdmin(ctx, cmd)
	case command.Directory:
		return a.directory(ctx, cmd.Text)
	case command.Leave:
		room := cmd.Room
		if room == "" {
			room = a.currentRoom()
		}
		if room == "" {
			a.errf("no current room to leave")
			return true
		}
		if _, err := ask[*protocol.Membership](ctx, a, &protocol.Leave{Base: reqBase(protocol.TypeLeave), Room: room, Successor: cmd.User}); err != nil {
			return a.reportErr("/leave", err)
		}
		a.mu.Lock()
		if a.current == room {
			a.current = ""
		}
		a.mu.Unlock()
		a.errf("left %s", a.render.RoomLabel(room))
	case command.Rooms:
		f, err := ask[*protocol.RoomList](ctx, a, &protocol.Rooms{Base: reqBase(protocol.TypeRooms)})
		if err != nil {
			return a.reportErr("/rooms", err)
		}
		a.learnLabels(f.Mine)
		a.printLines(a.render.Rooms(f.Mine, f.Public, a.currentRoom()))
	case command.Users:
		f, err := ask[*protocol.UserList](ctx, a, &protocol.Users{Base: reqBase(protocol.TypeUsers)})
		if err != nil {
			return a.reportErr("/users", err)
		}
		a.printLines(render.Users(f.Users))
	case command.History:
		room := a.currentRoom()
		if room == "" {
			a.errf("no current room: /join ROOM first")
			return true
		}
		f, err := ask[*protocol.HistoryPage](ctx, a, &protocol.History{Base: reqBase(protocol.TypeHistory), Room: room, Limit: cmd.N})
		if err != nil {
			return a.reportErr("/history", err)
		}
		ms := f.Messages
		sort.Slice(ms, func(i, j int) bool { return ms[i].Seq < ms[j].Seq })
		out := []string{fmt.Sprintf("--- history of %s: %d entries ---", a.render.RoomLabel(room), len(ms))}
		for i := range ms {
			out = append(out, a.render.Entry(&ms[i]))
		}
		a.printLines(append(out, "--- end of history ---"))
	case command.Search:
		a.mu.Lock()
		base, tok := a.httpBase, a.session
		a.mu.Unlock()
		var page struct {
			Hits       []render.SearchHit `json:"hits"`
			NextCursor string             `json:"next_cursor"`
		}
		if err := a.rest.get(ctx, base+"/api/search?q="+url.QueryEscape(cmd.Text), tok, &page); err != nil {
			a.errf("/search: %v", err)
			return true
		}
		a.printLines(a.render.SearchHits(cmd.Text, page.Hits, page.NextCursor != ""))
	case command.Notify, command.Mute:
		a.setPrefs(ctx, cmd)
	case command.Token:
		f, err := ask[*protocol.TokenReply](ctx, a, &protocol.Token{Base: reqBase(protocol.TypeToken)})
		if err != nil {
			return a.reportErr("/token", err)
		}
		a.println(fmt.Sprintf("reconnect token: %s (valid until %s)", f.ReconnectToken, f.ExpiresAt.In(a.loc()).Format("15:04:05")))
		a.errf("another client can continue this session with -reconnect-token %s", f.ReconnectToken)
	case command.Stats:
		f, err := ask[*protocol.StatsReply](ctx, a, &protocol.Stats{Base: reqBase(protocol.TypeStats)})
		if err != nil {
			return a.reportErr("/stats", err)
		}
		a.printLines(a.render.Stats(f, time.Now()))
	}
	return true
}

func (a *App) loc() *time.Location {
	if a.opts.Loc != nil {
		return a.opts.Loc
	}
	return time.Local
}

// reportErr prints a failed request; it returns false when the client itself has ended.
func (a *App) reportErr(what string, err error) bool {
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		a.errf("%s: %s", what, se.Frame.Message)
	case errors.Is(err, client.ErrClosed):
		return false
	default:
		a.errf("%s: %v", what, err)
	}
	return true
}

// join joins a room, creating it (over REST, which has the only create call; private if
// asked) when it does not exist yet, and makes it the current room.
func (a *App) join(ctx context.Context, room string, private bool) bool {
	_, err := ask[*protocol.Membership](ctx, a, &protocol.Join{Base: reqBase(protocol.TypeJoin), Room: room})
	var se *client.ServerError
	if errors.As(err, &se) && se.Code() == protocol.CodeNotFound {
		a.mu.Lock()
		base, tok := a.httpBase, a.session
		a.mu.Unlock()
		cerr := a.rest.post(ctx, base+"/api/rooms", tok, map[string]any{"id": room, "private": private}, nil)
		var ae *apiError
		switch {
		case cerr == nil && private:
			a.errf("created %s, private: /invite USER to let someone in", "#"+room)
			err = nil
		case cerr == nil:
			a.errf("created %s", "#"+room)
			err = nil
		case errors.As(cerr, &ae) && ae.Code == protocol.CodeConflict:
			// Someone created it a moment ago: join theirs.
			_, err = ask[*protocol.Membership](ctx, a, &protocol.Join{Base: reqBase(protocol.TypeJoin), Room: room})
		case errors.As(cerr, &ae):
			a.errf("/join: cannot create #%s: %s", room, ae.Error())
			return true
		default:
			a.errf("/join: cannot create #%s: %v", room, cerr)
			return true
		}
	}
	if err != nil {
		return a.reportErr("/join", err)
	}
	a.mu.Lock()
	a.current = room
	a.mu.Unlock()
	a.errf("now in %s", a.render.RoomLabel(room))
	return true
}

func (a *App) learnLabels(rooms []protocol.RoomInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range rooms {
		if r.Kind != "dm" {
			continue
		}
		for _, m := range r.Members {
			if m != a.me.Username {
				a.labels[r.ID] = "@" + m
			}
		}
	}
}

// handleEvents prints what the connection delivers until the client ends.
func (a *App) handleEvents(ctx context.Context) {
	for f := range a.cl.Events() {
		switch f := f.(type) {
		case *client.Connected:
			a.mu.Lock()
			a.httpBase = client.HTTPBase(f.URL)
			if f.User.ID != "" {
				a.me = f.User
			}
			a.mu.Unlock()
			if f.Resumed {
				a.errf("reconnected to %s (%s); resuming", f.GatewayID, f.URL)
			} else {
				a.errf("connected to %s (%s) as %s", f.GatewayID, f.URL, a.me.Username)
			}
			// DM labels ("@bob") come from the room list; ask for it off this goroutine,
			// which must keep reading events for the reply to get through.
			go func() {
				if r, err := ask[*protocol.RoomList](ctx, a, &protocol.Rooms{Base: reqBase(protocol.TypeRooms)}); err == nil {
					a.learnLabels(r.Mine)
				}
			}()
		case *client.Disconnected:
			a.errf("disconnected from %s: %s; reconnecting", f.GatewayID, f.Why)
		case *client.SendFailed:
			a.errf("message not sent to %s: %s", a.render.RoomLabel(f.Err.Room), f.Err.Message)
		case *protocol.Message:
			if strings.HasPrefix(f.Room, "dm:") && f.Sender != "" {
				a.mu.Lock()
				if _, ok := a.labels[f.Room]; !ok && f.Sender != a.me.ID {
					a.labels[f.Room] = "@" + f.SenderName
				}
				a.mu.Unlock()
			}
			a.println(a.render.Entry(f))
		case *protocol.Ack:
			a.mu.Lock()
			if to, ok := a.dmTargets[f.ClientMsgID]; ok {
				a.labels[f.Room] = "@" + to
				delete(a.dmTargets, f.ClientMsgID)
			}
			a.mu.Unlock()
			if a.opts.Verbose {
				a.errf("ack %s %s in %s (%s)", f.ClientMsgID, f.MessageID, a.render.RoomLabel(f.Room), f.Status)
			}
		case *protocol.Subscribed:
			if !f.Recovered {
				a.errf("warning: %s could not be fully recovered (%s); some entries may be missing", a.render.RoomLabel(f.Room), f.Reason)
			}
		case *protocol.Unsubscribed:
			a.mu.Lock()
			if a.current == f.Room {
				a.current = ""
			}
			a.mu.Unlock()
			if f.Reason == "kicked" || f.Reason == "banned" {
				a.errf("you were %s from %s", f.Reason, a.render.RoomLabel(f.Room))
			}
		case *protocol.Notification:
			a.println(a.render.Notification(f))
		case *protocol.Error:
			a.errf("gateway: %s (%s)", f.Message, f.Code)
		case *protocol.TypingNotice:
			if a.opts.Verbose {
				a.errf("%s is typing in %s", render.Clean(f.UserName), a.render.RoomLabel(f.Room))
			}
		}
	}
}
