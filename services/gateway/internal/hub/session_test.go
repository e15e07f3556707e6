package hub

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/broker"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// fakeOut is an Outbound over a real queue; a test decides whether anything drains it.
type fakeOut struct {
	q     *transport.Queue
	done  chan struct{}
	mu    sync.Mutex
	code  protocol.CloseCode
	final []byte
	once  sync.Once
	busy  bool // Go refuses with ErrBusy
}

func newFakeOut(limit int) *fakeOut {
	return &fakeOut{q: transport.NewQueue(limit), done: make(chan struct{})}
}

func (f *fakeOut) ID() string                { return "conn-test" }
func (f *fakeOut) Queue() *transport.Queue   { return f.q }
func (f *fakeOut) Written() map[string]int64 { return map[string]int64{} }
func (f *fakeOut) Done() <-chan struct{}     { return f.done }
func (f *fakeOut) CloseCode() protocol.CloseCode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code
}
func (f *fakeOut) Close(code protocol.CloseCode, _ string, final []byte, _ bool) {
	f.once.Do(func() {
		f.mu.Lock()
		f.code, f.final = code, final
		f.mu.Unlock()
		f.q.Close()
		close(f.done)
	})
}

// Go runs fn at once, on the caller's goroutine, unless busy is set: the tests handle
// frames one after another, as the worker would.
func (f *fakeOut) Go(fn func(context.Context)) error {
	f.mu.Lock()
	busy := f.busy
	f.mu.Unlock()
	if busy {
		return transport.ErrBusy
	}
	fn(context.Background())
	return nil
}

func (f *fakeOut) closed() (protocol.CloseCode, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code, f.final
}

// fakeTimeline serves a room's entries 1..last from memory.
type fakeTimeline struct {
	mu   sync.Mutex
	last map[string]int64
}

func (t *fakeTimeline) setLast(room string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[room] = n
}

func (t *fakeTimeline) MessagesAfter(_ context.Context, room string, after int64, limit int) ([]store.Message, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []store.Message
	for seq := after + 1; seq <= t.last[room] && len(out) < limit; seq++ {
		out = append(out, store.Message{RoomID: room, Seq: seq, Kind: event.KindMessage, Text: "m"})
	}
	return out, nil
}

func (t *fakeTimeline) LastSeqs(_ context.Context, rooms []string) (map[string]int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]int64{}
	for _, r := range rooms {
		out[r] = t.last[r]
	}
	return out, nil
}

func (t *fakeTimeline) Usernames(context.Context, []string) (map[string]string, error) {
	return map[string]string{}, nil
}

func (t *fakeTimeline) MembershipsSince(context.Context, []string, time.Time) ([]store.Membership, time.Time, error) {
	return nil, time.Now(), nil
}

type nopAnnouncer struct{}

func (nopAnnouncer) AnnounceSubscriptions(context.Context, []broker.SubscriptionChange) error {
	return nil
}

// fakePresence records Set calls and doubles as an empty cluster view.
type fakePresence struct {
	mu   sync.Mutex
	sets map[string]int
}

func (p *fakePresence) Set(user, _ string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sets[user] = n
}
func (p *fakePresence) OnlineUsers() []string  { return nil }
func (p *fakePresence) Connections(string) int { return 0 }

// nopChat satisfies Chat; these tests drive sessions directly, not through frames.
type nopChat struct{}

func (nopChat) Authenticate(context.Context, string, string) (chat.User, error) {
	return chat.User{}, protocol.NewError(protocol.CodeInvalidToken, "no")
}
func (nopChat) NewReconnectToken(context.Context, chat.User) (auth.Token, error) {
	return auth.Token{}, nil
}
func (nopChat) SendAsync(_ context.Context, _ chat.User, _ chat.SendRequest, done func(protocol.Ack, error)) {
	done(protocol.Ack{}, nil)
}
func (nopChat) OpenDM(context.Context, chat.User, string) (store.Room, chat.User, error) {
	return store.Room{}, chat.User{}, nil
}
func (nopChat) Access(context.Context, chat.User, string) (store.Room, error) {
	return store.Room{}, nil
}
func (nopChat) Join(context.Context, chat.User, string) (store.Room, error) { return store.Room{}, nil }
func (nopChat) Leave(context.Context, chat.User, string, string) error      { return nil }
func (nopChat) Rooms(context.Context, chat.User) (protocol.RoomList, error) {
	return protocol.RoomList{}, nil
}
func (nopChat) RoomsOf(context.Context, chat.User) ([]store.Room, error) { return nil, nil }
func (nopChat) History(context.Context, chat.User, string, chat.HistoryQuery) (protocol.HistoryPage, error) {
	return protocol.HistoryPage{}, nil
}
func (nopChat) PublishTyping(context.Context, chat.User, string) error { return nil }
func (nopChat) Accepted() int64                                        { return 0 }
func (nopChat) Thread(context.Context, chat.User, string, int64, int64, int) (protocol.ThreadPage, error) {
	return protocol.ThreadPage{}, nil
}
func (nopChat) MarkThreadRead(context.Context, chat.User, string, int64, int64) (protocol.ThreadReadMarker, error) {
	return protocol.ThreadReadMarker{}, nil
}
func (nopChat) MarkRead(context.Context, chat.User, string, int64) (protocol.ReadMarker, error) {
	return protocol.ReadMarker{}, nil
}
func (nopChat) Notifications(context.Context, chat.User, string, int) (protocol.NotificationList, error) {
	return protocol.NotificationList{}, nil
}
func (nopChat) MarkNotificationsRead(context.Context, chat.User, []string, bool) (protocol.NotificationsRead, error) {
	return protocol.NotificationsRead{}, nil
}
func (nopChat) PendingNotifications(context.Context, chat.User, int) ([]protocol.Notification, error) {
	return nil, nil
}

func newTestHub(t *testing.T, tl *fakeTimeline, cfg Config) *Hub {
	t.Helper()
	cfg.GatewayID = "gw-test"
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 5 * time.Second
	}
	pr := &fakePresence{sets: map[string]int{}}
	h, err := New(cfg, nopChat{}, tl, nopAnnouncer{}, pr, pr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newLiveSession returns a session of user u subscribed to room and already live at cursor.
func newLiveSession(t *testing.T, h *Hub, out *fakeOut, room string, cursor int64) *Session {
	t.Helper()
	s := h.Attach(out)
	s.mu.Lock()
	s.user = &chat.User{ID: "u1", Username: "alice"}
	s.subs[room] = &sub{cursor: cursor, base: cursor, pending: cursor}
	s.mu.Unlock()
	h.addSub(room, s)
	return s
}

func stored(room string, seq int64) event.MessageStored {
	return event.MessageStored{RoomID: room, Seq: seq, Kind: event.KindMessage, MessageID: "m", Sender: "u2", SenderName: "bob", Text: "m", RoomKind: event.RoomKindRoom}
}

// drain plays the writer: it takes frames off the queue and returns the timeline seqs seen.
func drain(out *fakeOut, room string, until int64, timeout time.Duration) []int64 {
	var seqs []int64
	deadline := time.After(timeout)
	for {
		for _, it := range out.q.TakeAll() {
			if it.Class == transport.Timeline && it.Room == room {
				seqs = append(seqs, it.Seq)
			}
		}
		if len(seqs) > 0 && seqs[len(seqs)-1] >= until {
			return seqs
		}
		select {
		case <-out.q.Ready():
		case <-deadline:
			return seqs
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func assertContiguous(t *testing.T, seqs []int64, from, to int64) {
	t.Helper()
	if int64(len(seqs)) != to-from+1 {
		t.Fatalf("got %d entries %v, want %d..%d", len(seqs), seqs, from, to)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			t.Fatalf("entry %d is seq %d, want %d (all: %v)", i, s, from+int64(i), seqs)
		}
	}
}

func TestSession_duplicates_dropped_gaps_filled(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{"r": 6}}
	h := newTestHub(t, tl, Config{})
	out := newFakeOut(64)
	s := newLiveSession(t, h, out, "r", 3)

	h.Deliver(context.Background(), event.Envelope{}, stored("r", 2)) // duplicate
	h.Deliver(context.Background(), event.Envelope{}, stored("r", 3)) // duplicate
	h.Deliver(context.Background(), event.Envelope{}, stored("r", 6)) // gap: 4 and 5 missing
	assertContiguous(t, drain(out, "r", 6, 2*time.Second), 4, 6)

	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.subs["r"].syncing })
	tl.setLast("r", 7)
	h.Deliver(context.Background(), event.Envelope{}, stored("r", 7)) // live again
	assertContiguous(t, drain(out, "r", 7, time.Second), 7, 7)
}

func TestSession_overflow_switches_to_catchup_and_recovers(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{}}
	h := newTestHub(t, tl, Config{FillPage: 7})
	out := newFakeOut(4)
	s := newLiveSession(t, h, out, "r", 0)

	// Nobody drains: 4 entries fit, the 5th overflows.
	for seq := int64(1); seq <= 5; seq++ {
		tl.setLast("r", seq)
		h.Deliver(context.Background(), event.Envelope{}, stored("r", seq))
	}
	s.mu.Lock()
	catching, cursor, syncing := s.catchingUp, s.subs["r"].cursor, s.subs["r"].syncing
	s.mu.Unlock()
	if !catching || !syncing {
		t.Fatalf("overflow did not switch to catch-up: catching=%v syncing=%v", catching, syncing)
	}
	if cursor > 4 {
		t.Fatalf("cursor %d ran ahead of what was kept", cursor)
	}
	if h.slowSwitches.Load() != 1 {
		t.Fatalf("slow switches = %d", h.slowSwitches.Load())
	}
	// More traffic while catching up must not be queued out of order.
	for seq := int64(6); seq <= 40; seq++ {
		tl.setLast("r", seq)
		h.Deliver(context.Background(), event.Envelope{}, stored("r", seq))
	}
	seqs := drain(out, "r", 40, 5*time.Second)
	// The frames kept before the overflow may be dropped and re-read; what the client
	// sees must still be 1..40 in order, each once.
	assertContiguous(t, seqs, 1, 40)
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.catchingUp })
	tl.setLast("r", 41)
	h.Deliver(context.Background(), event.Envelope{}, stored("r", 41))
	assertContiguous(t, drain(out, "r", 41, time.Second), 41, 41)
	if code, _ := out.closed(); code != 0 {
		t.Fatalf("connection closed with %d", code)
	}
}

func TestSession_stalled_client_closed_slow_with_cursors(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{}}
	h := newTestHub(t, tl, Config{StallTimeout: 100 * time.Millisecond})
	out := newFakeOut(4)
	newLiveSession(t, h, out, "r", 10)
	for seq := int64(11); seq <= 20; seq++ {
		tl.setLast("r", seq)
		h.Deliver(context.Background(), event.Envelope{}, stored("r", seq))
	}
	waitFor(t, func() bool { code, _ := out.closed(); return code != 0 })
	code, final := out.closed()
	if code != protocol.CloseSlow {
		t.Fatalf("close code %d, want %d", code, protocol.CloseSlow)
	}
	var e protocol.Error
	if err := json.Unmarshal(final, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != protocol.CodeSlow || e.Cursors["r"] != 10 {
		t.Fatalf("final frame %s", final)
	}
	if h.slowCloses.Load() != 1 {
		t.Fatalf("slow closes = %d", h.slowCloses.Load())
	}
}

func TestSession_control_frames_survive_backlog(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{"r": 4}}
	h := newTestHub(t, tl, Config{})
	out := newFakeOut(4)
	s := newLiveSession(t, h, out, "r", 0)
	for seq := int64(1); seq <= 4; seq++ {
		h.Deliver(context.Background(), event.Envelope{}, stored("r", seq))
	}
	s.reply(protocol.TypePong, protocol.Pong{Base: protocol.Base{Type: protocol.TypePong}})
	found := false
	for _, it := range out.q.TakeAll() {
		found = found || it.Type == protocol.TypePong
	}
	if !found {
		t.Fatal("pong lost behind a full queue")
	}
}

func TestHub_presence_counts_connections(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{}}
	h := newTestHub(t, tl, Config{})
	pr := h.presence.(*fakePresence)
	u := chat.User{ID: "u1", Username: "alice"}
	s1, s2 := h.Attach(newFakeOut(4)), h.Attach(&fakeOut{q: transport.NewQueue(4), done: make(chan struct{})})
	for _, s := range []*Session{s1, s2} {
		s.mu.Lock()
		s.user = &u
		s.mu.Unlock()
		h.bind(s, u)
	}
	if pr.sets["u1"] != 2 {
		t.Fatalf("after two connections: %v", pr.sets)
	}
	if users := h.Users(context.Background()); len(users) != 1 || users[0].Here != 2 || users[0].Username != "alice" || users[0].IdleSeconds == nil {
		t.Fatalf("users: %+v", users)
	}
	s1.Closed()
	s2.Closed()
	if pr.sets["u1"] != 0 {
		t.Fatalf("after both closed: %v", pr.sets)
	}
	if st := h.Stats(); st.Connections != 0 || st.Users != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A join entry read before the connection said (hello) what it follows waits: the
// client's own subscription with its since_seq wins, and rooms it did not name are
// followed from the join entry once it has.
func TestSession_timeline_follow_waits_for_the_clients_own_subscriptions(t *testing.T) {
	t.Parallel()
	tl := &fakeTimeline{last: map[string]int64{"r": 3, "q": 7, "d": 5}}
	h := newTestHub(t, tl, Config{})
	out := newFakeOut(64)
	s := h.Attach(out)
	u := chat.User{ID: "u1", Username: "alice"}
	s.mu.Lock()
	s.user = &u
	s.mu.Unlock()
	h.bind(s, u)

	join := func(room string, seq int64) event.MessageStored {
		return event.MessageStored{RoomID: room, Seq: seq, Kind: event.KindJoin, MessageID: "j", Sender: "u1", SenderName: "alice", RoomKind: event.RoomKindRoom}
	}
	h.Deliver(context.Background(), event.Envelope{}, join("r", 3))
	h.Deliver(context.Background(), event.Envelope{}, join("q", 7))
	h.UserJoined("u1", "d", 5) // a DM opened through this gateway by someone else
	s.mu.Lock()
	early := len(s.subs)
	s.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d rooms followed before the client's hello was handled", early)
	}

	// The hello asks for r from the start; then the session settles.
	zero := int64(0)
	s.subscribe(context.Background(), u, "r", &zero, "hello")
	s.subscribe(context.Background(), u, "d", &zero, "hello")
	s.settleFollows()
	s.mu.Lock()
	rBase, dBase, q := s.subs["r"].base, s.subs["d"].base, s.subs["q"]
	s.mu.Unlock()
	if rBase != 0 || dBase != 0 {
		t.Fatalf("r followed from %d, d from %d; want the client's since_seq 0 for both", rBase, dBase)
	}
	if q == nil || q.base != 6 {
		t.Fatalf("q: %+v, want followed from its join entry (cursor 6)", q)
	}
	got := map[string][]int64{}
	deadline := time.Now().Add(2 * time.Second)
	for (len(got["r"]) < 3 || len(got["q"]) < 1 || len(got["d"]) < 5) && time.Now().Before(deadline) {
		for _, it := range out.q.TakeAll() {
			if it.Class == transport.Timeline {
				got[it.Room] = append(got[it.Room], it.Seq)
			}
		}
		select {
		case <-out.q.Ready():
		case <-time.After(5 * time.Millisecond):
		}
	}
	assertContiguous(t, got["r"], 1, 3)
	assertContiguous(t, got["q"], 7, 7)
	assertContiguous(t, got["d"], 1, 5)
}
