-- Reactions: a user toggles an emoji on a message. A toggle is a timeline entry of its own
-- (kind 'reaction', with its own seq, naming the message in target_seq), written by
-- persistence like an edit, so it is delivered live in room order and replayable. The
-- current state is kept in reactions, maintained in the same transaction as the entry, so
-- that history can show per-message counts without replaying the timeline.

-- +goose Up
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('message', 'join', 'leave', 'edit', 'delete', 'reaction'));
-- Set on reaction entries only: the emoji and whether the toggle added or removed it.
ALTER TABLE messages ADD COLUMN emoji text, ADD COLUMN reaction_on boolean;

-- One row per (message, user, emoji) that is on: toggling on twice is one row. seq is the
-- entry that added it, which orders emoji and names in history (first reacted first).
-- Deleting the message (retention, a dropped room) deletes its reactions; a delete entry
-- removes them in its own transaction.
CREATE TABLE reactions (
    room_id    text NOT NULL,
    target_seq bigint NOT NULL,
    user_id    text NOT NULL,
    emoji      text NOT NULL,
    user_name  text NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (room_id, target_seq, user_id, emoji),
    FOREIGN KEY (room_id, target_seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE reactions;
DELETE FROM messages WHERE kind = 'reaction';
ALTER TABLE messages DROP COLUMN emoji, DROP COLUMN reaction_on;
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('message', 'join', 'leave', 'edit', 'delete'));
