// Package presence knows who is online. Gateways publish, through an Announcer, each
// user's connection count on that gateway and a periodic heartbeat to the compacted topic
// chat.presence; services that need presence (notification, later fanout) keep a View of
// it, rebuilt from the topic at start and kept current by following it.
//
// # Keys
//
// A user may be connected to several gateways at once, and the topic keeps only the latest
// record per key. Keying presence by user alone would let gateway B's "0 connections"
// overwrite gateway A's "2 connections" for the same user, so presence.changed is keyed
// "<user>@<gateway_id>" (UserKey): each gateway's record per user survives compaction.
// gateway.heartbeat is keyed "gw/<gateway_id>" (GatewayKey). Gateway ids must not contain
// "@"; a user id may, because the key is split at its last "@".
//
// # The rule
//
// A user is online while at least one live gateway reports connections > 0 for them. A
// gateway is live while its latest heartbeat is younger than the expiry; a gateway whose
// heartbeats stopped (a crash) no longer counts, and a graceful shutdown deletes its
// heartbeat at once. A presence record counts only if it was written by the gateway's
// current incarnation (its time is not before the heartbeat's started_at), so a gateway
// restarted under the same id does not resurrect the users it had before it crashed.
// Both times come from the gateway's own clock; the expiry is compared with the reader's
// clock, so clocks must agree to well within the expiry.
package presence

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/event"
)

// DefaultExpiry is how long a gateway counts as live after its last heartbeat.
const DefaultExpiry = 30 * time.Second

const gatewayKeyPrefix = "gw/"

// UserKey is the record key of a user's presence as reported by one gateway.
func UserKey(user, gatewayID string) string { return user + "@" + gatewayID }

// GatewayKey is the record key of a gateway's heartbeat.
func GatewayKey(gatewayID string) string { return gatewayKeyPrefix + gatewayID }

// ParseKey tells the two kinds of keys apart. A key of neither kind (e.g. a bare user id
// written under an older convention) yields ok == false.
func ParseKey(key string) (user, gatewayID string, ok bool) {
	if id, found := strings.CutPrefix(key, gatewayKeyPrefix); found {
		return "", id, id != ""
	}
	i := strings.LastIndexByte(key, '@')
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i], key[i+1:], true
}

// ErrUnexpectedType reports an event that does not belong on the presence topic.
var ErrUnexpectedType = errors.New("presence: unexpected event type")

// State is the presence table. It is a plain value without locking or I/O, so that the
// rules can be tested on their own; View guards one with a mutex. Records of one key must
// be applied in offset order; records of different keys in any order.
type State struct {
	expiry   time.Duration
	users    map[string]map[string]report // user -> gateway -> latest report
	gateways map[string]heartbeat
}

type report struct {
	connections int
	at          time.Time
}

type heartbeat struct {
	at, startedAt time.Time
}

// NewState returns an empty table; expiry <= 0 means DefaultExpiry.
func NewState(expiry time.Duration) *State {
	if expiry <= 0 {
		expiry = DefaultExpiry
	}
	return &State{expiry: expiry, users: map[string]map[string]report{}, gateways: map[string]heartbeat{}}
}

// Apply records a presence.changed or gateway.heartbeat event. The payload, not the record
// key, says which user and gateway it is about.
func (s *State) Apply(e event.Envelope) error {
	p, err := event.DecodePayload(e)
	if err != nil {
		return err
	}
	switch p := p.(type) {
	case event.PresenceChanged:
		conns := p.Connections
		if p.Status == event.StatusOffline {
			conns = 0
		}
		s.setReport(p.User, p.GatewayID, report{connections: conns, at: p.At})
	case event.GatewayHeartbeat:
		s.gateways[p.GatewayID] = heartbeat{at: p.At, startedAt: p.StartedAt}
	default:
		return fmt.Errorf("%w: %s", ErrUnexpectedType, e.Type)
	}
	return nil
}

// Delete applies a tombstone: it forgets what the record under key said. Deleting a
// gateway's heartbeat makes it dead at once (graceful shutdown). It reports whether key was
// understood.
func (s *State) Delete(key string) bool {
	user, gw, ok := ParseKey(key)
	switch {
	case !ok:
		return false
	case user == "":
		delete(s.gateways, gw)
	default:
		s.setReport(user, gw, report{})
	}
	return true
}

// ApplyRecord applies a raw record of the topic: a nil value is a tombstone for key,
// anything else must be an encoded presence.changed or gateway.heartbeat. It returns the
// decoded envelope (zero for a tombstone) so callers can log its id.
func (s *State) ApplyRecord(key, value []byte) (event.Envelope, error) {
	if value == nil {
		if !s.Delete(string(key)) {
			return event.Envelope{}, fmt.Errorf("presence: tombstone with unknown key %q", key)
		}
		return event.Envelope{}, nil
	}
	e, err := event.Decode(value)
	if err != nil {
		return event.Envelope{}, err
	}
	return e, s.Apply(e)
}

// setReport stores r, dropping zero reports so that the table holds only connected users.
func (s *State) setReport(user, gw string, r report) {
	byGW := s.users[user]
	if r.connections <= 0 {
		delete(byGW, gw)
		if len(byGW) == 0 {
			delete(s.users, user)
		}
		return
	}
	if byGW == nil {
		byGW = map[string]report{}
		s.users[user] = byGW
	}
	byGW[gw] = r
}

// counts reports whether the report r by gateway gw counts at time now.
func (s *State) counts(gw string, r report, now time.Time) bool {
	hb, ok := s.gateways[gw]
	return ok && r.connections > 0 && now.Sub(hb.at) <= s.expiry && !r.at.Before(hb.startedAt)
}

// Online reports whether user has a connection on a live gateway at time now.
func (s *State) Online(user string, now time.Time) bool {
	for gw, r := range s.users[user] {
		if s.counts(gw, r, now) {
			return true
		}
	}
	return false
}

// Connections returns user's connections on live gateways at time now.
func (s *State) Connections(user string, now time.Time) int {
	n := 0
	for gw, r := range s.users[user] {
		if s.counts(gw, r, now) {
			n += r.connections
		}
	}
	return n
}

// OnlineUsers returns the users online at time now, sorted.
func (s *State) OnlineUsers(now time.Time) []string {
	var out []string
	for user := range s.users {
		if s.Online(user, now) {
			out = append(out, user)
		}
	}
	slices.Sort(out)
	return out
}

// LiveGateways returns the gateways whose heartbeat has not expired at time now, sorted.
func (s *State) LiveGateways(now time.Time) []string {
	var out []string
	for gw, hb := range s.gateways {
		if now.Sub(hb.at) <= s.expiry {
			out = append(out, gw)
		}
	}
	slices.Sort(out)
	return out
}
