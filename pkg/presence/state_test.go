package presence_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/presence"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// record is one record of the presence topic: key and encoded value (nil: tombstone).
type record struct {
	key   string
	value []byte
}

func encode(t *testing.T, p event.Payload) []byte {
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

// hb is a heartbeat of gw at second s, started at second started.
func hb(t *testing.T, gw string, s, started float64) record {
	return record{presence.GatewayKey(gw), encode(t, event.GatewayHeartbeat{GatewayID: gw, Addr: "127.0.0.1:1",
		StartedAt: at(started), At: at(s)})}
}

// conns reports user's connections on gw at second s.
func conns(t *testing.T, user, gw string, n int, s float64) record {
	status := event.StatusOnline
	if n == 0 {
		status = event.StatusOffline
	}
	return record{presence.UserKey(user, gw), encode(t, event.PresenceChanged{User: user, UserName: user,
		Status: status, GatewayID: gw, Connections: n, At: at(s)})}
}

func tombstone(key string) record { return record{key: key} }

func TestState_online_rules(t *testing.T) {
	const expiry = 30 * time.Second
	cases := []struct {
		name    string
		records func(t *testing.T) []record
		now     float64
		online  []string // everyone else is offline
	}{
		{
			name:    "connected on a live gateway",
			records: func(t *testing.T) []record { return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 1, 1)} },
			now:     10, online: []string{"ann"},
		},
		{
			name:    "no heartbeat yet: the gateway is not known to be alive",
			records: func(t *testing.T) []record { return []record{conns(t, "ann", "A", 1, 1)} },
			now:     1, online: nil,
		},
		{
			name: "two tabs on two gateways: online while either remains",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), hb(t, "B", 0, 0), conns(t, "ann", "A", 1, 1), conns(t, "ann", "B", 1, 2),
					conns(t, "ann", "A", 0, 3)}
			},
			now: 5, online: []string{"ann"},
		},
		{
			name: "two tabs on two gateways: offline once both are gone",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), hb(t, "B", 0, 0), conns(t, "ann", "A", 1, 1), conns(t, "ann", "B", 1, 2),
					conns(t, "ann", "A", 0, 3), conns(t, "ann", "B", 0, 4)}
			},
			now: 5, online: nil,
		},
		{
			name: "heartbeat exactly at the expiry still counts",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 2, 0)}
			},
			now: 30, online: []string{"ann"},
		},
		{
			name: "heartbeat older than the expiry: the gateway is dead and its users do not count",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), hb(t, "B", 20, 0), conns(t, "ann", "A", 2, 1), conns(t, "bob", "B", 1, 1)}
			},
			now: 31, online: []string{"bob"},
		},
		{
			name: "dead gateway plus a live one: still online through the live one",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), hb(t, "B", 40, 0), conns(t, "ann", "A", 1, 1), conns(t, "ann", "B", 1, 2)}
			},
			now: 45, online: []string{"ann"},
		},
		{
			name: "gateway restarted under the same id: reports of the old incarnation do not count",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 1, 1), conns(t, "bob", "A", 1, 2),
					hb(t, "A", 10, 9), conns(t, "bob", "A", 1, 11)}
			},
			now: 12, online: []string{"bob"},
		},
		{
			name: "offline status wins over a stale count",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 1, 1), {presence.UserKey("ann", "A"),
					encode(t, event.PresenceChanged{User: "ann", UserName: "ann", Status: event.StatusOffline, GatewayID: "A",
						Connections: 3, At: at(2)})}}
			},
			now: 3, online: nil,
		},
		{
			name: "tombstone of a user key forgets that gateway's report only",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), hb(t, "B", 0, 0), conns(t, "ann", "A", 1, 1), conns(t, "ann", "B", 1, 1),
					conns(t, "bob", "A", 1, 1), tombstone(presence.UserKey("ann", "A")), tombstone(presence.UserKey("bob", "A"))}
			},
			now: 2, online: []string{"ann"},
		},
		{
			name: "tombstone of a heartbeat (graceful shutdown): its users are offline at once",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 1, 1), tombstone(presence.GatewayKey("A"))}
			},
			now: 2, online: nil,
		},
		{
			name: "a new heartbeat after the tombstone revives the gateway",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann", "A", 1, 1), tombstone(presence.GatewayKey("A")),
					hb(t, "A", 3, 0)}
			},
			now: 4, online: []string{"ann"},
		},
		{
			// The gateway's own publisher (services/gateway) keys by bare user id today:
			// records are applied by their payload, so those are read correctly too.
			name: "records keyed by a bare user id are applied by payload",
			records: func(t *testing.T) []record {
				a, b := conns(t, "ann", "A", 1, 1), conns(t, "bob", "B", 1, 1)
				a.key, b.key = "ann", "bob"
				return []record{hb(t, "A", 0, 0), hb(t, "B", 0, 0), a, b}
			},
			now: 2, online: []string{"ann", "bob"},
		},
		{
			name: "user ids may contain @: keys split at the last one",
			records: func(t *testing.T) []record {
				return []record{hb(t, "A", 0, 0), conns(t, "ann@corp", "A", 1, 1), conns(t, "bob@corp", "A", 1, 1),
					tombstone(presence.UserKey("bob@corp", "A"))}
			},
			now: 2, online: []string{"ann@corp"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := presence.NewState(expiry)
			for i, r := range tc.records(t) {
				if _, err := s.ApplyRecord([]byte(r.key), r.value); err != nil {
					t.Fatalf("record %d (%s): %v", i, r.key, err)
				}
			}
			now := at(tc.now)
			if got := s.OnlineUsers(now); !slices.Equal(got, tc.online) {
				t.Errorf("OnlineUsers = %v, want %v", got, tc.online)
			}
			for _, u := range []string{"ann", "bob", "ann@corp", "bob@corp"} {
				if got, want := s.Online(u, now), slices.Contains(tc.online, u); got != want {
					t.Errorf("Online(%s) = %v, want %v", u, got, want)
				}
			}
		})
	}
}

func TestState_Connections_sums_live_gateways(t *testing.T) {
	s := presence.NewState(10 * time.Second)
	for _, r := range []record{hb(t, "A", 0, 0), hb(t, "B", 5, 0), hb(t, "C", 5, 0),
		conns(t, "ann", "A", 2, 1), conns(t, "ann", "B", 3, 1), conns(t, "ann", "C", 1, 1)} {
		if _, err := s.ApplyRecord([]byte(r.key), r.value); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Connections("ann", at(5)); got != 6 {
		t.Errorf("at 5s: %d connections, want 6", got)
	}
	if got := s.Connections("ann", at(12)); got != 4 {
		t.Errorf("at 12s (A expired): %d connections, want 4", got)
	}
	if got := s.LiveGateways(at(12)); !slices.Equal(got, []string{"B", "C"}) {
		t.Errorf("live gateways %v, want [B C]", got)
	}
}

func TestState_ApplyRecord_rejects(t *testing.T) {
	typing := encode(t, event.Typing{RoomID: "r", User: "u", UserName: "u", State: event.TypingStarted})
	cases := []struct {
		name  string
		key   string
		value []byte
		is    error
	}{
		{"garbage", "ann@A", []byte("nope"), event.ErrMalformed},
		{"a type that does not belong here", "ann@A", typing, presence.ErrUnexpectedType},
		{"tombstone of a bare user id", "ann", nil, nil},
		{"tombstone of an empty gateway id", "gw/", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := presence.NewState(0)
			_, err := s.ApplyRecord([]byte(tc.key), tc.value)
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want %v", err, tc.is)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	cases := []struct {
		key, user, gw string
		ok            bool
	}{
		{"ann@gw-1", "ann", "gw-1", true},
		{"a@b@gw-1", "a@b", "gw-1", true},
		{"gw/gw-1", "", "gw-1", true},
		{"ann", "", "", false},
		{"@gw-1", "", "", false},
		{"ann@", "", "", false},
		{"gw/", "", "", false},
	}
	for _, tc := range cases {
		user, gw, ok := presence.ParseKey(tc.key)
		if user != tc.user || gw != tc.gw || ok != tc.ok {
			t.Errorf("ParseKey(%q) = %q, %q, %v; want %q, %q, %v", tc.key, user, gw, ok, tc.user, tc.gw, tc.ok)
		}
	}
}
