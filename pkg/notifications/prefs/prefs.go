// Package prefs holds users' notification preferences and the one function that applies
// them. The notification service and `chatctl rebuild notifications` both call Recipients,
// so a rebuild judges the live table by the very rule that wrote it.
//
// The product rule:
//   - A level filters everything, in-app notifications included. all: everything the room
//     notifies about (DMs, @mentions, replies in threads the user takes part in, and every
//     message of a notify_all room); mentions: DMs, @mentions and thread replies (a reply
//     to a thread one wrote in is addressed to one, like a mention); none: nothing. A
//     room's own level overrides the user's
//     default, and a room set to all notifies of every message even if the room is not
//     notify_all (the user asked for it).
//   - A mute (muted_until) filters everything from that room until the time passes.
//   - Do-not-disturb hours do not remove a notification: it is still created, listed and
//     counted, but marked quiet, and no outside channel (e-mail, Web Push) sends it.
//
// Every time-dependent decision is taken at the message's stored time, not when the
// consumer gets to it, so a rebuild reaches the same answer (as long as the preferences
// were not changed since).
package prefs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/rules"
)

// ErrInvalid wraps every validation error; the message says what is wrong.
var ErrInvalid = errors.New("invalid notification preference")

// Level is how much a user hears about.
type Level string

const (
	LevelAll      Level = "all"      // everything the room notifies about
	LevelMentions Level = "mentions" // DMs and @mentions only
	LevelNone     Level = "none"     // nothing
)

// ParseLevel accepts exactly "all", "mentions" or "none".
func ParseLevel(s string) (Level, error) {
	switch l := Level(s); l {
	case LevelAll, LevelMentions, LevelNone:
		return l, nil
	}
	return "", fmt.Errorf("%w: level must be all, mentions or none, not %q", ErrInvalid, s)
}

// DND is a daily do-not-disturb window in a time zone. Start and End are minutes after
// local midnight; a window whose end is before its start wraps midnight (22:00-07:00).
type DND struct {
	Start, End int
	Zone       string
	loc        *time.Location
}

// ParseDND validates a window given as "HH:MM" local times and an IANA zone name
// ("Europe/Berlin", "UTC"). Start and end must differ.
func ParseDND(start, end, zone string) (*DND, error) {
	s, err := parseClock("start", start)
	if err != nil {
		return nil, err
	}
	e, err := parseClock("end", end)
	if err != nil {
		return nil, err
	}
	if s == e {
		return nil, fmt.Errorf("%w: do-not-disturb start and end are both %s; the window would be empty", ErrInvalid, start)
	}
	return NewDND(s, e, zone)
}

// NewDND is ParseDND for minutes after midnight (as stored).
func NewDND(start, end int, zone string) (*DND, error) {
	if start < 0 || start >= 24*60 || end < 0 || end >= 24*60 {
		return nil, fmt.Errorf("%w: do-not-disturb times must be within a day", ErrInvalid)
	}
	// time.LoadLocation also accepts "" and "Local", which mean this machine's zone: not
	// something a user can mean.
	if zone == "" || zone == "Local" || strings.TrimSpace(zone) != zone {
		return nil, fmt.Errorf("%w: do-not-disturb zone must be an IANA time zone name such as Europe/Berlin, not %q", ErrInvalid, zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown time zone %q", ErrInvalid, zone)
	}
	return &DND{Start: start, End: end, Zone: zone, loc: loc}, nil
}

func parseClock(what, s string) (int, error) {
	bad := fmt.Errorf("%w: do-not-disturb %s must be a 24-hour time HH:MM, not %q", ErrInvalid, what, s)
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, bad
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || h[0] == '+' || m[0] == '+' {
		return 0, bad
	}
	return hh*60 + mm, nil
}

// Clock formats minutes after midnight as HH:MM.
func Clock(minutes int) string { return fmt.Sprintf("%02d:%02d", minutes/60, minutes%60) }

// Active reports whether t falls in the window, judged by the wall clock in the window's
// zone (so the window follows daylight saving time). The start is inside, the end is not.
func (d *DND) Active(t time.Time) bool {
	if d == nil {
		return false
	}
	loc := d.loc
	if loc == nil {
		loc = time.UTC // only for a DND built by hand without NewDND
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	if d.Start < d.End {
		return m >= d.Start && m < d.End
	}
	return m >= d.Start || m < d.End
}

// User is a user's defaults. The zero value is the default: level all, no DND.
type User struct {
	Level Level // "" means LevelAll
	DND   *DND
}

// Room is a user's setting for one room. The zero value changes nothing.
type Room struct {
	Level      Level     // "" means the user's default
	MutedUntil time.Time // zero: not muted
}

// Decision is what the preferences make of one candidate notification.
type Decision struct {
	Notify bool // create the notification at all
	Quiet  bool // in the app only: no outside channel sends it (do-not-disturb)
}

// Decide applies u's and r's preferences to a notification for reason (event.ReasonDM,
// ReasonMention or ReasonRoom) about a message stored at at, in a room whose notify_all
// is roomNotifyAll. Reason room is offered for every message of any room (see
// Recipients); only an all level that asks for it keeps it.
func Decide(u User, r Room, reason string, roomNotifyAll bool, at time.Time) Decision {
	if !r.MutedUntil.IsZero() && at.Before(r.MutedUntil) {
		return Decision{}
	}
	level, own := r.Level, true
	if level == "" {
		level, own = u.Level, false
	}
	if level == "" {
		level = LevelAll
	}
	switch level {
	case LevelNone:
		return Decision{}
	case LevelMentions:
		if reason == event.ReasonRoom {
			return Decision{}
		}
	default: // LevelAll
		// The user's default all follows the room's notify_all; a room's own all asks
		// for every message of that room.
		if reason == event.ReasonRoom && !roomNotifyAll && !own {
			return Decision{}
		}
	}
	return Decision{Notify: true, Quiet: u.DND.Active(at)}
}

// Set is the preferences of the users and rooms at hand (see Load). A missing entry is
// the default. The zero value is a Set of defaults.
type Set struct {
	Users map[string]User
	Rooms map[RoomKey]Room
}

// RoomKey identifies a user's setting for a room.
type RoomKey struct{ User, Room string }

// Recipient is a member to notify, why, and whether only in the app.
type Recipient struct {
	rules.Recipient
	Quiet bool
}

// Recipients returns who is notified of m and how: the rules' recipients (with every
// message offered as reason room, whatever notify_all says), filtered by Decide. The
// decision time is m.StoredAt (now when unset). Sorted by user id.
func Recipients(m event.MessageStored, room rules.Room, set Set, now time.Time) []Recipient {
	at := m.StoredAt
	if at.IsZero() {
		at = now
	}
	wide := room
	wide.NotifyAll = true
	var out []Recipient
	for _, rc := range rules.Recipients(m, wide) {
		d := Decide(set.Users[rc.User], set.Rooms[RoomKey{rc.User, m.RoomID}], rc.Reason, room.NotifyAll, at)
		if d.Notify {
			out = append(out, Recipient{Recipient: rc, Quiet: d.Quiet})
		}
	}
	return out
}
