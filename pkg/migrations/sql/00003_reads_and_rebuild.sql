-- Read markers (per user and room), the notification service's record of whom it did
-- not notify because they were online, the scratch table `chatctl rebuild
-- notifications` fills from the log, and an index for deletes.

-- +goose Up
-- How far a user has read a room. Only ever moves forward (the gateway upserts with
-- greatest()), so a stale device cannot un-read what another device read. Unread counts
-- are computed from it and the timeline when asked; nothing else needs updating when a
-- message arrives.
CREATE TABLE room_reads (
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id       text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    last_read_seq bigint NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, room_id)
);

-- Recipients the rules chose but who were online when the event was handled, written in
-- the same transaction as the notifications. Presence is not in the log, so a rebuild
-- from chat.stored can only agree with the live table if it knows these decisions.
CREATE TABLE notification_skips (
    user_id    text NOT NULL,
    room_id    text NOT NULL,
    seq        bigint NOT NULL,
    reason     text NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq, user_id, reason)
);

-- Filled by `chatctl rebuild notifications` (truncated first) and compared with
-- notifications on (user_id, room_id, seq, reason). Ids and timestamps are not rebuilt:
-- they are minted at creation and mean nothing to the comparison.
CREATE TABLE notifications_rebuild (
    user_id text NOT NULL,
    room_id text NOT NULL,
    seq     bigint NOT NULL,
    reason  text NOT NULL,
    sender  text NOT NULL,
    preview text NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, room_id, seq, reason)
);

-- A delete clears the text of its target's edits too; this finds them without scanning
-- the room.
CREATE INDEX messages_edits ON messages (room_id, target_seq) WHERE kind = 'edit';

-- +goose Down
DROP INDEX messages_edits;
DROP TABLE notifications_rebuild;
DROP TABLE notification_skips;
DROP TABLE room_reads;
