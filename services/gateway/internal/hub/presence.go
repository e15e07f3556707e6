package hub

import (
	"slices"
	"sync"
	"time"

	"github.com/kchat/kchat/pkg/event"
)

// PresenceView is the cluster-wide "who is online", built from chat.presence: each
// gateway reports per user how many connections it holds, and heartbeats prove the
// gateway is alive. A user is online while some live gateway reports connections.
// Safe for concurrent use.
type PresenceView struct {
	mu       sync.Mutex
	self     string
	users    map[string]map[string]presenceEntry // user -> gateway -> entry
	gateways map[string]time.Time                // gateway -> last heartbeat
	maxAge   time.Duration
}

type presenceEntry struct {
	name  string
	conns int
	at    time.Time
}

// NewPresenceView returns a view that trusts a gateway for maxAge after its last heartbeat
// (or presence report). Reports by self are ignored: the hub knows its own connections.
func NewPresenceView(self string, maxAge time.Duration) *PresenceView {
	return &PresenceView{self: self, users: map[string]map[string]presenceEntry{}, gateways: map[string]time.Time{}, maxAge: maxAge}
}

// Apply folds one presence or heartbeat event into the view.
func (v *PresenceView) Apply(p event.Payload, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch p := p.(type) {
	case event.PresenceChanged:
		if p.GatewayID == v.self {
			return
		}
		gws := v.users[p.User]
		if gws == nil {
			gws = map[string]presenceEntry{}
			v.users[p.User] = gws
		}
		if p.Status == event.StatusOffline || p.Connections == 0 {
			delete(gws, p.GatewayID)
			if len(gws) == 0 {
				delete(v.users, p.User)
			}
		} else {
			gws[p.GatewayID] = presenceEntry{name: p.UserName, conns: p.Connections, at: p.At}
		}
		// A report is as good as a heartbeat: the gateway was alive when it wrote it.
		if p.At.After(v.gateways[p.GatewayID]) {
			v.gateways[p.GatewayID] = p.At
		}
	case event.GatewayHeartbeat:
		if p.At.After(v.gateways[p.GatewayID]) {
			v.gateways[p.GatewayID] = p.At
		}
	}
}

// Remote is one user's presence on other gateways.
type Remote struct {
	UserID   string
	Username string
	Conns    int
	Gateways []string
}

// Online lists users with connections on other live gateways.
func (v *PresenceView) Online(now time.Time) []Remote {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Remote
	for user, gws := range v.users {
		r := Remote{UserID: user}
		for gw, e := range gws {
			if now.Sub(v.gateways[gw]) > v.maxAge {
				continue // that gateway died without saying goodbye
			}
			r.Username, r.Conns = e.name, r.Conns+e.conns
			r.Gateways = append(r.Gateways, gw)
		}
		if r.Conns > 0 {
			slices.Sort(r.Gateways)
			out = append(out, r)
		}
	}
	return out
}
