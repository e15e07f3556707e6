package routing

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/route"
)

type record struct{ key, value []byte }

func sub(t *testing.T, gw, room string, subscribed bool) record {
	t.Helper()
	e, err := event.New("kchat/gateway/"+gw, event.SubscriptionChanged{GatewayID: gw, RoomID: room, Subscribed: subscribed, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return record{[]byte(route.SubscriptionKey(gw, room)), b}
}

func tombstone(gw, room string) record {
	return record{key: []byte(route.SubscriptionKey(gw, room))}
}

func TestTable_Apply(t *testing.T) {
	tests := []struct {
		name    string
		records func(t *testing.T) []record
		rooms   map[string][]string // expected Gateways per room; rooms not listed must be empty
		all     []string
		stats   Stats
		changes int // records that changed the table
	}{
		{
			name:    "subscribe",
			records: func(t *testing.T) []record { return []record{sub(t, "gw-a", "r1", true)} },
			rooms:   map[string][]string{"r1": {"gw-a"}},
			all:     []string{"gw-a"},
			stats:   Stats{Rooms: 1, Gateways: 1, Subscriptions: 1},
			changes: 1,
		},
		{
			name: "unsubscribe",
			records: func(t *testing.T) []record {
				return []record{sub(t, "gw-a", "r1", true), sub(t, "gw-a", "r2", true), sub(t, "gw-a", "r1", false)}
			},
			rooms:   map[string][]string{"r1": nil, "r2": {"gw-a"}},
			all:     []string{"gw-a"},
			stats:   Stats{Rooms: 1, Gateways: 1, Subscriptions: 1},
			changes: 3,
		},
		{
			name:    "tombstone removes",
			records: func(t *testing.T) []record { return []record{sub(t, "gw-a", "r1", true), tombstone("gw-a", "r1")} },
			rooms:   map[string][]string{"r1": nil},
			all:     []string{},
			stats:   Stats{},
			changes: 2,
		},
		{
			name:    "tombstone for unknown pair is a no-op",
			records: func(t *testing.T) []record { return []record{tombstone("gw-a", "r1")} },
			rooms:   map[string][]string{"r1": nil},
			stats:   Stats{},
		},
		{
			name: "duplicate subscribe counts once",
			records: func(t *testing.T) []record {
				return []record{sub(t, "gw-a", "r1", true), sub(t, "gw-a", "r1", true), sub(t, "gw-a", "r1", true)}
			},
			rooms:   map[string][]string{"r1": {"gw-a"}},
			all:     []string{"gw-a"},
			stats:   Stats{Rooms: 1, Gateways: 1, Subscriptions: 1},
			changes: 1,
		},
		{
			name:    "unsubscribe first is a no-op",
			records: func(t *testing.T) []record { return []record{sub(t, "gw-a", "r1", false)} },
			rooms:   map[string][]string{"r1": nil},
			stats:   Stats{},
		},
		{
			name: "two gateways",
			records: func(t *testing.T) []record {
				return []record{sub(t, "gw-b", "r2", true), sub(t, "gw-a", "r1", true), sub(t, "gw-a", "r2", true)}
			},
			rooms:   map[string][]string{"r1": {"gw-a"}, "r2": {"gw-a", "gw-b"}, "r3": nil},
			all:     []string{"gw-a", "gw-b"},
			stats:   Stats{Rooms: 2, Gateways: 2, Subscriptions: 3},
			changes: 3,
		},
		{
			name: "two gateways, one leaves the shared room",
			records: func(t *testing.T) []record {
				return []record{sub(t, "gw-a", "r2", true), sub(t, "gw-b", "r2", true), tombstone("gw-b", "r2")}
			},
			rooms:   map[string][]string{"r2": {"gw-a"}},
			all:     []string{"gw-a"},
			stats:   Stats{Rooms: 1, Gateways: 1, Subscriptions: 1},
			changes: 3,
		},
		{
			name: "resubscribe after unsubscribe",
			records: func(t *testing.T) []record {
				return []record{sub(t, "gw-a", "r1", true), sub(t, "gw-a", "r1", false), sub(t, "gw-a", "r1", true)}
			},
			rooms:   map[string][]string{"r1": {"gw-a"}},
			all:     []string{"gw-a"},
			stats:   Stats{Rooms: 1, Gateways: 1, Subscriptions: 1},
			changes: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable()
			changes := 0
			for _, r := range tt.records(t) {
				_, changed, err := tab.Apply(r.key, r.value)
				if err != nil {
					t.Fatalf("Apply(%s): %v", r.key, err)
				}
				if changed {
					changes++
				}
			}
			for room, want := range tt.rooms {
				if got := tab.Gateways(room); !slices.Equal(got, want) {
					t.Errorf("Gateways(%s) = %v, want %v", room, got, want)
				}
			}
			if got := tab.AllGateways(); !slices.Equal(got, tt.all) {
				t.Errorf("AllGateways() = %v, want %v", got, tt.all)
			}
			// Keys (records held, routed or not) is not what these cases are about.
			if got := tab.Stats(); (Stats{Rooms: got.Rooms, Gateways: got.Gateways, Subscriptions: got.Subscriptions}) != tt.stats {
				t.Errorf("Stats() = %+v, want %+v", got, tt.stats)
			}
			if changes != tt.changes {
				t.Errorf("%d records changed the table, want %d", changes, tt.changes)
			}
		})
	}
}

func TestParseRecord_rejects(t *testing.T) {
	good := sub(t, "gw-a", "r1", true)
	tests := []struct {
		name       string
		key, value []byte
	}{
		{"garbage value", good.key, []byte("{not json")},
		{"wrong event type", good.key, mustEncode(t, event.Typing{RoomID: "r1", User: "u", UserName: "U", State: event.TypingStarted})},
		{"key without separator", []byte("gw-a"), good.value},
		{"key names another pair", []byte(route.SubscriptionKey("gw-b", "r1")), good.value},
		{"tombstone with malformed key", []byte("nonsense"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable()
			if _, changed, err := tab.Apply(tt.key, tt.value); !errors.Is(err, ErrBadRecord) || changed {
				t.Fatalf("Apply = changed %v, err %v; want ErrBadRecord and no change", changed, err)
			}
			if st := tab.Stats(); st != (Stats{}) {
				t.Fatalf("table changed: %+v", st)
			}
		})
	}
}

func mustEncode(t *testing.T, p event.Payload) []byte {
	t.Helper()
	e, err := event.New("kchat/test", p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTable_readersKeepTheirSnapshot checks the copy-on-write promise: a slice handed to a
// reader never changes under it, whatever writers do afterwards.
func TestTable_readersKeepTheirSnapshot(t *testing.T) {
	tab := NewTable()
	tab.Set("gw-a", "r1", true)
	tab.Set("gw-c", "r1", true)
	snap := tab.Gateways("r1")
	tab.Set("gw-b", "r1", true)
	tab.Set("gw-a", "r1", false)
	if !slices.Equal(snap, []string{"gw-a", "gw-c"}) {
		t.Fatalf("snapshot changed to %v", snap)
	}
	if got := tab.Gateways("r1"); !slices.Equal(got, []string{"gw-b", "gw-c"}) {
		t.Fatalf("Gateways = %v", got)
	}

	// Under -race: concurrent writers and readers.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				tab.Set([]string{"gw-a", "gw-b", "gw-c", "gw-d"}[w], "r1", i%2 == 0)
			}
		})
		wg.Go(func() {
			for range 500 {
				for _, gw := range tab.Gateways("r1") {
					_ = gw
				}
				_ = tab.AllGateways()
			}
		})
	}
	wg.Wait()
}
