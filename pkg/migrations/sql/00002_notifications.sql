-- Notifications for members who were not watching: direct messages, @mentions and rooms
-- whose members asked to hear about every message. Written by the notification service,
-- read by the gateways (REST list, delivery at login).

-- +goose Up
CREATE TABLE notifications (
    -- A UUIDv7 minted by the notification service. COLLATE "C" makes text order byte
    -- order, which for UUIDv7 is creation order: "newest first" and keyset paging are
    -- then an index scan on (user_id, id) whatever the database's default collation.
    id         text COLLATE "C" PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id    text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint NOT NULL CHECK (seq > 0),
    reason     text NOT NULL CHECK (reason IN ('dm', 'mention', 'room')),
    sender     text NOT NULL,
    preview    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    -- The same timeline entry can never notify the same user twice for the same reason,
    -- even if its message.stored event reaches the service again under another event id.
    UNIQUE (user_id, room_id, seq, reason)
);
-- Listing a user's notifications newest first, paged by id.
CREATE INDEX notifications_user_newest ON notifications (user_id, id DESC);
-- Unread ones (delivery at login, unread counts) without scanning the read history.
CREATE INDEX notifications_user_unread ON notifications (user_id, id) WHERE read_at IS NULL;

-- A room-wide setting: notify offline members of every message, not only of mentions.
ALTER TABLE rooms ADD COLUMN notify_all boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE rooms DROP COLUMN notify_all;
DROP TABLE notifications;
