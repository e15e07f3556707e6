// Package routing keeps fanout's routing table, room → gateways with subscribers there, and
// rebuilds it from the compacted chat.subscriptions topic; the gateways' heartbeats on
// chat.presence expire the routes of gateways that died, and the Expirer deletes their
// keys from chat.subscriptions.
package routing

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/route"
)

// ErrBadRecord marks a chat.subscriptions record that cannot be interpreted; the follower
// skips it (a compacted topic read without a group has no dead-letter path).
var ErrBadRecord = errors.New("bad subscription record")

// TableConfig configures a Table. Zero values mean the defaults given on each field.
type TableConfig struct {
	// Expiry is how long a gateway counts as live after its last heartbeat (default
	// presence.DefaultExpiry): the gateways' -presence-expiry, well above their heartbeat
	// interval. The heartbeat's time is the gateway's clock and is compared with Now, so
	// clocks must agree to well within it (as for presence).
	Expiry time.Duration
	Now    func() time.Time // default time.Now
}

// Table maps a room to the gateways that announced subscribers for it. It is safe for
// concurrent use: one writer per subscriptions and presence partition, many readers on
// the hot path.
//
// Reads do not copy: each room's gateway list is an immutable sorted slice that a change
// replaces (copy on write). Subscriptions change rarely compared with the message rate, so
// paying on writes keeps forwarding allocation-free.
//
// # Routes expire with the gateway heartbeats
//
// Besides the latest subscription record per (gateway, room) key, the table keeps each
// gateway's latest gateway.heartbeat (from chat.presence). A (gateway, room) pair is a
// route while its latest record says subscribed and
//   - the gateway is not down: no heartbeat was ever seen for it (gateways that do not
//     heartbeat keep their routes, as before), or its latest heartbeat is younger than
//     Expiry and not deleted (a clean stop tombstones it); and
//   - the record is from the gateway's current run: its time is not before the latest
//     heartbeat's started_at. A gateway restarted under the same id re-announces what it
//     has; what the previous run announced and this one did not stops routing as soon as
//     the new run's heartbeat is read.
//
// A heartbeat that comes back (the same run after a stall, or a new run) restores the
// routes its records still qualify for. Stale lists the keys nobody will ever clear (a
// gateway down for a while, or a previous run's leftovers), for the Expirer to tombstone.
type Table struct {
	cfg TableConfig

	mu    sync.RWMutex
	rooms map[string][]string // the routes
	// perGateway counts each gateway's routes, to answer AllGateways and drop a gateway
	// from it when its last route goes.
	perGateway map[string]int
	all        []string // sorted keys of perGateway, rebuilt when that set changes
	subs       int

	keys     map[string]map[string]subRecord // gateway -> room -> latest record
	gateways map[string]*gatewayState        // gateways a heartbeat (or its tombstone) was seen for
}

type subRecord struct {
	subscribed bool
	at         time.Time // the gateway's clock when it announced it
}

type gatewayState struct {
	at, startedAt time.Time // latest heartbeat, gateway clock
	runSeen       time.Time // local time startedAt was first seen
	down          bool      // heartbeat expired or deleted
	downSince     time.Time // local time it went down
}

// NewTable returns an empty table with the default configuration.
func NewTable() *Table { return NewTableWith(TableConfig{}) }

// NewTableWith returns an empty table.
func NewTableWith(cfg TableConfig) *Table {
	if cfg.Expiry <= 0 {
		cfg.Expiry = presence.DefaultExpiry
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Table{cfg: cfg, rooms: map[string][]string{}, perGateway: map[string]int{},
		keys: map[string]map[string]subRecord{}, gateways: map[string]*gatewayState{}}
}

// Set records that gatewayID has (subscribed) or no longer has subscribers for roomID, as a
// record without a time (older than any run of a gateway that heartbeats). It reports
// whether the routes changed: repeating the current state is a no-op, which makes replays
// of the topic harmless.
func (t *Table) Set(gatewayID, roomID string, subscribed bool) bool {
	return t.setRecord(gatewayID, roomID, &subRecord{subscribed: subscribed})
}

// setRecord stores the latest record of a key (nil: deleted) and reports whether the
// routes changed.
func (t *Table) setRecord(gatewayID, roomID string, rec *subRecord) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	byRoom := t.keys[gatewayID]
	switch {
	case rec != nil && byRoom == nil:
		byRoom = map[string]subRecord{}
		t.keys[gatewayID] = byRoom
		fallthrough
	case rec != nil:
		byRoom[roomID] = *rec
	default:
		delete(byRoom, roomID)
		if len(byRoom) == 0 {
			delete(t.keys, gatewayID)
		}
	}
	return t.route(gatewayID, roomID, t.active(gatewayID, rec))
}

// active reports whether rec, the latest record of gatewayID's key for some room, makes a
// route. The caller holds mu.
func (t *Table) active(gatewayID string, rec *subRecord) bool {
	if rec == nil || !rec.subscribed {
		return false
	}
	g := t.gateways[gatewayID]
	return g == nil || (!g.down && !rec.at.Before(g.startedAt))
}

// route adds or removes the route (gatewayID, roomID) and reports whether that changed
// anything. The caller holds mu.
func (t *Table) route(gatewayID, roomID string, on bool) bool {
	cur := t.rooms[roomID]
	i, found := slices.BinarySearch(cur, gatewayID)
	switch {
	case on && !found:
		// Clone: readers may hold cur.
		t.rooms[roomID] = slices.Insert(slices.Clone(cur), i, gatewayID)
		t.subs++
		t.perGateway[gatewayID]++
		if t.perGateway[gatewayID] == 1 {
			t.rebuildAll()
		}
		return true
	case !on && found:
		if len(cur) == 1 {
			delete(t.rooms, roomID)
		} else {
			t.rooms[roomID] = slices.Delete(slices.Clone(cur), i, i+1)
		}
		t.subs--
		t.perGateway[gatewayID]--
		if t.perGateway[gatewayID] == 0 {
			delete(t.perGateway, gatewayID)
			t.rebuildAll()
		}
		return true
	default:
		return false
	}
}

// refresh re-derives gatewayID's routes from its records after its liveness or run
// changed, and returns how many routes changed. The caller holds mu.
func (t *Table) refresh(gatewayID string) int {
	n := 0
	for room, rec := range t.keys[gatewayID] {
		if t.route(gatewayID, room, t.active(gatewayID, &rec)) {
			n++
		}
	}
	return n
}

// Heartbeat applies a gateway.heartbeat: the gateway's latest heartbeat time and the start
// of its current run (its run id). It returns how many routes changed.
func (t *Table) Heartbeat(gatewayID string, at, startedAt time.Time) int {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gateways[gatewayID]
	if g == nil {
		g = &gatewayState{}
		t.gateways[gatewayID] = g
	}
	newRun := !g.startedAt.Equal(startedAt)
	if newRun {
		g.startedAt, g.runSeen = startedAt, now
	}
	g.at = at
	down := now.Sub(at) > t.cfg.Expiry
	changed := down != g.down
	if changed {
		g.down, g.downSince = down, now
	}
	if !newRun && !changed {
		return 0
	}
	return t.refresh(gatewayID)
}

// GatewayGone applies the tombstone of a gateway's heartbeat (a clean stop): the gateway is
// down at once. It returns how many routes changed.
func (t *Table) GatewayGone(gatewayID string) int {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.gateways[gatewayID]
	if g == nil {
		g = &gatewayState{runSeen: now}
		t.gateways[gatewayID] = g
	}
	if g.down {
		return 0
	}
	g.down, g.downSince = true, now
	return t.refresh(gatewayID)
}

// Expire marks down every gateway whose latest heartbeat is older than the expiry now, and
// returns them, sorted.
func (t *Table) Expire() []string {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id, g := range t.gateways {
		if !g.down && now.Sub(g.at) > t.cfg.Expiry {
			g.down, g.downSince = true, now
			t.refresh(id)
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Key is one (gateway, room) key of chat.subscriptions.
type Key struct{ GatewayID, RoomID string }

// Stale returns the keys whose records no gateway will ever replace, sorted: every key of
// a gateway down for at least grace, and the keys of a live gateway's previous runs once
// its current run has been seen for at least grace. The grace lets a gateway that comes
// back (or a new run's announcements still on their way) be read before its keys are
// deleted; a tombstone that still overtakes a new announcement only delays that route
// until the gateway's next re-announcement.
func (t *Table) Stale(grace time.Duration) []Key {
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Key
	for id, g := range t.gateways {
		switch {
		case g.down && now.Sub(g.downSince) >= grace:
			for room := range t.keys[id] {
				out = append(out, Key{id, room})
			}
		case !g.down && now.Sub(g.runSeen) >= grace:
			for room, rec := range t.keys[id] {
				if rec.at.Before(g.startedAt) {
					out = append(out, Key{id, room})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Key) int {
		return cmp.Or(strings.Compare(a.GatewayID, b.GatewayID), strings.Compare(a.RoomID, b.RoomID))
	})
	return out
}

func (t *Table) rebuildAll() {
	all := make([]string, 0, len(t.perGateway))
	for gw := range t.perGateway {
		all = append(all, gw)
	}
	slices.Sort(all)
	t.all = all
}

// Gateways returns the gateways subscribed to roomID, sorted. The slice is shared: callers
// must not modify it.
func (t *Table) Gateways(roomID string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rooms[roomID]
}

// AllGateways returns every gateway with at least one subscription, sorted. The slice is
// shared: callers must not modify it.
func (t *Table) AllGateways() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.all
}

// Stats is the table's size, for metrics.
type Stats struct {
	Rooms, Gateways, Subscriptions int
	// Keys counts the subscription keys held (every gateway, routed or not);
	// GatewaysDown the gateways whose heartbeat expired or was deleted.
	Keys, GatewaysDown int
}

// Stats returns the current size.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st := Stats{Rooms: len(t.rooms), Gateways: len(t.perGateway), Subscriptions: t.subs}
	for _, byRoom := range t.keys {
		st.Keys += len(byRoom)
	}
	for _, g := range t.gateways {
		if g.down {
			st.GatewaysDown++
		}
	}
	return st
}

// Change is what one chat.subscriptions record says.
type Change struct {
	GatewayID  string
	RoomID     string
	Subscribed bool
	At         time.Time // when the gateway announced it; zero for a tombstone
	EventID    string    // empty for a tombstone
}

// ParseRecord interprets a chat.subscriptions record. The key names the (gateway, room)
// pair, since it is the unit compaction keeps; a nil value is a tombstone and means
// unsubscribed. A value whose payload names a different pair than its key is rejected:
// applying either side could leave a subscription that no later record for the key removes.
func ParseRecord(key, value []byte) (Change, error) {
	gw, room, ok := route.ParseSubscriptionKey(string(key))
	if value == nil {
		if !ok {
			return Change{}, fmt.Errorf("%w: tombstone with malformed key %q", ErrBadRecord, key)
		}
		return Change{GatewayID: gw, RoomID: room}, nil
	}
	e, err := event.Decode(value)
	if err != nil {
		return Change{}, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	sc, err := event.As[event.SubscriptionChanged](e)
	if err != nil {
		return Change{EventID: e.ID}, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if !ok {
		return Change{EventID: e.ID}, fmt.Errorf("%w: malformed key %q", ErrBadRecord, key)
	}
	if sc.GatewayID != gw || sc.RoomID != room {
		return Change{EventID: e.ID}, fmt.Errorf("%w: key %q does not match payload %s/%s", ErrBadRecord, key, sc.GatewayID, sc.RoomID)
	}
	return Change{GatewayID: gw, RoomID: room, Subscribed: sc.Subscribed, At: sc.At, EventID: e.ID}, nil
}

// Apply parses a chat.subscriptions record and applies it, reporting whether the routes
// changed.
func (t *Table) Apply(key, value []byte) (Change, bool, error) {
	c, err := ParseRecord(key, value)
	if err != nil {
		return c, false, err
	}
	var rec *subRecord
	if value != nil {
		rec = &subRecord{subscribed: c.Subscribed, at: c.At}
	}
	return c, t.setRecord(c.GatewayID, c.RoomID, rec), nil
}

// ApplyPresence applies a chat.presence record: a gateway.heartbeat (key "gw/<id>") or its
// tombstone. Users' presence records are not routing's business and are ignored. It
// returns how many routes changed.
func (t *Table) ApplyPresence(key, value []byte) (int, error) {
	user, gw, ok := presence.ParseKey(string(key))
	if !ok {
		return 0, fmt.Errorf("%w: presence key %q", ErrBadRecord, key)
	}
	if user != "" {
		return 0, nil
	}
	if value == nil {
		return t.GatewayGone(gw), nil
	}
	e, err := event.Decode(value)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	hb, err := event.As[event.GatewayHeartbeat](e)
	if err != nil {
		return 0, fmt.Errorf("%w: event %s: %w", ErrBadRecord, e.ID, err)
	}
	if hb.GatewayID != gw {
		return 0, fmt.Errorf("%w: key %q does not match heartbeat of %s", ErrBadRecord, key, hb.GatewayID)
	}
	return t.Heartbeat(gw, hb.At, hb.StartedAt), nil
}
