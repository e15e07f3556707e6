-- Attachments: a file uploaded to a room through a gateway (POST /api/rooms/{id}/uploads),
-- kept in the gateway's blob store under a server-generated key, then referenced by one
-- message. The gateway inserts the row at upload (after the blob is written); persistence
-- links it to the message (message_seq, attached_at) in the message's own transaction,
-- and marks it deleted (deleted_at) in the transaction that stores the message's delete.
-- The gateways' sweeper deletes the blobs and then the row of uploads never attached
-- within the grace period and of deleted (or retained-away) messages.
--
-- No foreign keys: a row must outlive its message or room until the sweeper has deleted
-- its blobs, or the blobs would leak.

-- +goose Up
CREATE TABLE attachments (
    id           text PRIMARY KEY,
    room_id      text NOT NULL,
    uploader     text NOT NULL,
    filename     text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL CHECK (size > 0),
    width        integer,
    height       integer,
    blob_key     text NOT NULL,
    thumb_key    text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    message_seq  bigint,
    position     integer,  -- its place among the message's attachments, from 1
    attached_at  timestamptz,
    deleted_at   timestamptz
);
-- The sweeper's two questions: unattached uploads by age, deleted messages' files by age.
CREATE INDEX attachments_unattached ON attachments (created_at) WHERE message_seq IS NULL;
CREATE INDEX attachments_deleted ON attachments (deleted_at) WHERE deleted_at IS NOT NULL;
-- History reads a page's attachments by message.
CREATE INDEX attachments_message ON attachments (room_id, message_seq) WHERE message_seq IS NOT NULL;

-- +goose Down
DROP TABLE attachments;
