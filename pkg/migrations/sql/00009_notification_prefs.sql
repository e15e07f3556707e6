-- Notification preferences: per user a default level and do-not-disturb hours, per room an
-- override level and a mute. Written by the gateway (/api/me/notification-preferences,
-- /api/rooms/{id}/notification-preferences), read by the notification service and
-- `chatctl rebuild notifications`, which decide with the same function
-- (pkg/notifications/prefs). Users without a row get the defaults: level all, no DND.

-- +goose Up
CREATE TABLE notification_prefs (
    user_id    text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- all: everything the room notifies about; mentions: DMs and @mentions only; none.
    level      text NOT NULL DEFAULT 'all' CHECK (level IN ('all', 'mentions', 'none')),
    -- Do-not-disturb hours as minutes after local midnight in dnd_zone (an IANA name). The
    -- window may wrap midnight (22:00-07:00). All three are set, or none.
    dnd_start  smallint CHECK (dnd_start BETWEEN 0 AND 1439),
    dnd_end    smallint CHECK (dnd_end BETWEEN 0 AND 1439),
    dnd_zone   text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((dnd_start IS NULL) = (dnd_end IS NULL) AND (dnd_start IS NULL) = (dnd_zone IS NULL)),
    CHECK (dnd_start IS NULL OR dnd_start <> dnd_end)
);

CREATE TABLE room_notification_prefs (
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id     text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- NULL: the user's default level.
    level       text CHECK (level IN ('all', 'mentions', 'none')),
    -- Nothing from this room before this time (not even an in-app notification).
    muted_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, room_id)
);

-- quiet: created during the recipient's do-not-disturb hours. The notification is in the
-- app (list, unread count, delivery at login) but no outside channel (e-mail, push) sends
-- it. Decided once, when the notification is created, so every channel agrees.
ALTER TABLE notifications ADD COLUMN quiet boolean NOT NULL DEFAULT false;
ALTER TABLE notifications_rebuild ADD COLUMN quiet boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE notifications_rebuild DROP COLUMN quiet;
ALTER TABLE notifications DROP COLUMN quiet;
DROP TABLE room_notification_prefs;
DROP TABLE notification_prefs;
