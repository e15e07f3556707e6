// Package routing keeps fanout's routing table, room → gateways with subscribers there, and
// rebuilds it from the compacted chat.subscriptions topic.
package routing

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/route"
)

// ErrBadRecord marks a chat.subscriptions record that cannot be interpreted; the follower
// skips it (a compacted topic read without a group has no dead-letter path).
var ErrBadRecord = errors.New("bad subscription record")

// Table maps a room to the gateways that announced subscribers for it. It is safe for
// concurrent use: one writer per subscriptions partition, many readers on the hot path.
//
// Reads do not copy: each room's gateway list is an immutable sorted slice that a change
// replaces (copy on write). Subscriptions change rarely compared with the message rate, so
// paying on writes keeps forwarding allocation-free.
type Table struct {
	mu    sync.RWMutex
	rooms map[string][]string
	// perGateway counts each gateway's rooms, to answer AllGateways and drop a gateway
	// from it when its last subscription goes.
	perGateway map[string]int
	all        []string // sorted keys of perGateway, rebuilt when that set changes
	subs       int
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{rooms: map[string][]string{}, perGateway: map[string]int{}}
}

// Set records that gatewayID has (subscribed) or no longer has subscribers for roomID.
// It reports whether the table changed: repeating the current state is a no-op, which
// makes replays of the topic harmless.
func (t *Table) Set(gatewayID, roomID string, subscribed bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.rooms[roomID]
	i, found := slices.BinarySearch(cur, gatewayID)
	switch {
	case subscribed && !found:
		// Clone: readers may hold cur.
		t.rooms[roomID] = slices.Insert(slices.Clone(cur), i, gatewayID)
		t.subs++
		t.perGateway[gatewayID]++
		if t.perGateway[gatewayID] == 1 {
			t.rebuildAll()
		}
		return true
	case !subscribed && found:
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
}

// Stats returns the current size.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return Stats{Rooms: len(t.rooms), Gateways: len(t.perGateway), Subscriptions: t.subs}
}

// Change is what one chat.subscriptions record says.
type Change struct {
	GatewayID  string
	RoomID     string
	Subscribed bool
	EventID    string // empty for a tombstone
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
	return Change{GatewayID: gw, RoomID: room, Subscribed: sc.Subscribed, EventID: e.ID}, nil
}

// Apply parses a record and applies it, reporting whether the table changed.
func (t *Table) Apply(key, value []byte) (Change, bool, error) {
	c, err := ParseRecord(key, value)
	if err != nil {
		return c, false, err
	}
	return c, t.Set(c.GatewayID, c.RoomID, c.Subscribed), nil
}
