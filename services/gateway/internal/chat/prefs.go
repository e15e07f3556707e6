// Notification preferences: a user's default level and do-not-disturb hours, and their
// level and mute per room, which the notification service applies
// (pkg/notifications/prefs). E-mail on/off stays in the e-mail settings and is shown here
// alongside, not stored twice.

package chat

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// MaxMute is the longest a room can be muted for; longer is level none.
const MaxMute = 366 * 24 * time.Hour

// DND is the do-not-disturb window as REST and WebSocket show it.
type DND = protocol.DND

// NotificationPrefs is a user's preferences as the API shows them.
type NotificationPrefs struct {
	Level string              `json:"level"`
	DND   *DND                `json:"dnd"` // null: none
	Email EmailSettings       `json:"email"`
	Rooms []prefs.RoomSetting `json:"rooms"`
}

// RoomAccess checks that a user may read a room (*Service does).
type RoomAccess interface {
	Access(ctx context.Context, u User, roomID string) (store.Room, error)
}

// Prefs reads and writes notification preferences. Safe for concurrent use.
type Prefs struct {
	db    prefs.Querier
	rooms RoomAccess
	email *Email
	log   *slog.Logger
	now   func() time.Time
}

// NewPrefs returns the preferences on db; rooms checks membership before a room setting
// is written, email supplies the e-mail switch shown with them.
func NewPrefs(db prefs.Querier, rooms RoomAccess, email *Email, log *slog.Logger) (*Prefs, error) {
	if db == nil || rooms == nil || email == nil {
		return nil, errors.New("chat: notification preferences need a database, room access and e-mail settings")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Prefs{db: db, rooms: rooms, email: email, log: log, now: time.Now}, nil
}

// Get returns u's preferences; a user who never set any gets the defaults.
func (p *Prefs) Get(ctx context.Context, u User) (NotificationPrefs, error) {
	d, rooms, err := prefs.Get(ctx, p.db, u.ID)
	if err != nil {
		return NotificationPrefs{}, p.internal(ctx, "cannot read notification preferences", err)
	}
	email, err := p.email.Settings(ctx, u)
	if err != nil {
		return NotificationPrefs{}, err
	}
	out := NotificationPrefs{Level: string(d.Level), Email: email, Rooms: rooms}
	if out.Rooms == nil {
		out.Rooms = []prefs.RoomSetting{}
	}
	if d.DND != nil {
		out.DND = &DND{Start: prefs.Clock(d.DND.Start), End: prefs.Clock(d.DND.End), Zone: d.DND.Zone}
	}
	return out, nil
}

// SetDefaults replaces u's default level and do-not-disturb window (nil: none).
func (p *Prefs) SetDefaults(ctx context.Context, u User, level string, dnd *DND) (NotificationPrefs, error) {
	l, err := prefs.ParseLevel(level)
	if err != nil {
		return NotificationPrefs{}, badPref(err)
	}
	up := prefs.User{Level: l}
	if dnd != nil {
		if up.DND, err = prefs.ParseDND(dnd.Start, dnd.End, dnd.Zone); err != nil {
			return NotificationPrefs{}, badPref(err)
		}
	}
	if err := prefs.SetUser(ctx, p.db, u.ID, up); err != nil {
		return NotificationPrefs{}, p.internal(ctx, "cannot write notification preferences", err)
	}
	return p.Get(ctx, u)
}

// SetRoom replaces u's setting for a room u is a member of. level nil means the user's
// default; mutedUntil nil means not muted, otherwise it must be in the future and within
// MaxMute. Both nil removes the setting.
func (p *Prefs) SetRoom(ctx context.Context, u User, roomID string, level *string, mutedUntil *time.Time) (prefs.RoomSetting, error) {
	var r prefs.Room
	out := prefs.RoomSetting{Room: roomID}
	if level != nil {
		l, err := prefs.ParseLevel(*level)
		if err != nil {
			return out, badPref(err)
		}
		r.Level, out.Level = l, &l
	}
	if mutedUntil != nil {
		now := p.now()
		switch {
		case !mutedUntil.After(now):
			return out, protocol.NewError(protocol.CodeBadRequest, "muted_until is not in the future; send null to unmute")
		case mutedUntil.Sub(now) > MaxMute:
			return out, protocol.NewError(protocol.CodeBadRequest, "muted_until is more than a year ahead; set level none instead")
		}
		// What timestamptz keeps, so the answer says what is stored.
		t := mutedUntil.UTC().Truncate(time.Microsecond)
		r.MutedUntil, out.MutedUntil = t, &t
	}
	if _, err := p.rooms.Access(ctx, u, roomID); err != nil {
		return out, err
	}
	if level == nil && mutedUntil == nil {
		return out, p.deleteRoom(ctx, u, roomID)
	}
	if err := prefs.SetRoom(ctx, p.db, u.ID, roomID, r); err != nil {
		return out, p.internal(ctx, "cannot write room notification preferences", err)
	}
	return out, nil
}

// DeleteRoom removes u's setting for a room u is a member of: back to the defaults.
func (p *Prefs) DeleteRoom(ctx context.Context, u User, roomID string) (prefs.RoomSetting, error) {
	if _, err := p.rooms.Access(ctx, u, roomID); err != nil {
		return prefs.RoomSetting{}, err
	}
	return prefs.RoomSetting{Room: roomID}, p.deleteRoom(ctx, u, roomID)
}

func (p *Prefs) deleteRoom(ctx context.Context, u User, roomID string) error {
	if err := prefs.DeleteRoom(ctx, p.db, u.ID, roomID); err != nil {
		return p.internal(ctx, "cannot delete room notification preferences", err)
	}
	return nil
}

// badPref turns a validation error of package prefs into a 400 saying what is wrong.
func badPref(err error) *protocol.Error {
	return protocol.NewError(protocol.CodeBadRequest, strings.TrimPrefix(err.Error(), prefs.ErrInvalid.Error()+": "))
}

func (p *Prefs) internal(ctx context.Context, what string, err error) *protocol.Error {
	p.log.ErrorContext(ctx, what, "error", err)
	return errUnavailable(err)
}
