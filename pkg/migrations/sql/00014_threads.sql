-- Threads: a message may be a reply in a thread rooted at an earlier message of the same
-- room. A reply is an ordinary timeline entry (kind 'message', its own seq) that names its
-- root in thread_root, so it is delivered live in room order and replayable like any
-- message. The thread's summary (reply count, last reply, participants) is kept in
-- threads by persistence in the same transaction as the entries that change it, so that
-- history shows a root's summary without counting its replies.

-- +goose Up
-- Set on replies only: the seq of the root (a message of the same room that is not itself
-- a reply). A root's replies are deleted with it only by retention or a dropped room.
ALTER TABLE messages ADD COLUMN thread_root bigint;
-- A thread's replies in seq order: the thread view's pages and unread counts.
CREATE INDEX messages_thread ON messages (room_id, thread_root, seq) WHERE thread_root IS NOT NULL;

-- One row per root with at least one reply ever. reply_count and last_reply_at count the
-- replies not deleted (a delete of a reply recomputes them); participants are the root's
-- author and every user who replied, first first, which the stored reply event carries so
-- that the notification rules stay a pure function of the log.
CREATE TABLE threads (
    room_id       text NOT NULL,
    root_seq      bigint NOT NULL,
    reply_count   integer NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    last_reply_at timestamptz,
    last_seq      bigint NOT NULL, -- the newest reply's seq, deleted or not
    participants  text[] NOT NULL,
    PRIMARY KEY (room_id, root_seq),
    FOREIGN KEY (room_id, root_seq) REFERENCES messages (room_id, seq) ON DELETE CASCADE
);

-- How far a user has read a thread (per-thread unread counts). Like room_reads it only
-- moves forward. Written by the gateway when the user marks the thread read.
CREATE TABLE thread_reads (
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id       text NOT NULL,
    root_seq      bigint NOT NULL,
    last_read_seq bigint NOT NULL CHECK (last_read_seq >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, room_id, root_seq),
    FOREIGN KEY (room_id, root_seq) REFERENCES threads (room_id, root_seq) ON DELETE CASCADE
);

-- Participants are notified of replies (notification rules, reason 'thread').
ALTER TABLE notifications DROP CONSTRAINT notifications_reason_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_reason_check
    CHECK (reason IN ('dm', 'mention', 'thread', 'room'));

-- +goose Down
DELETE FROM notifications WHERE reason = 'thread';
ALTER TABLE notifications DROP CONSTRAINT notifications_reason_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_reason_check
    CHECK (reason IN ('dm', 'mention', 'room'));
DROP TABLE thread_reads;
DROP TABLE threads;
DROP INDEX messages_thread;
ALTER TABLE messages DROP COLUMN thread_root;
