-- The chat core: accounts, rooms, the per-room timeline, the transactional outbox and
-- the consumers' inbox. Timestamps are timestamptz; ids minted by the platform are text
-- (UUIDv7 strings) so that they read the same in Kafka, JSON and SQL.

-- +goose Up
CREATE TABLE users (
    id            text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Tokens are stored as SHA-256 hashes: a leaked table does not leak live sessions.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('session', 'reconnect')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE rooms (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('room', 'dm')),
    created_by text REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The last sequence number handed out; updated under the row lock, which is what
    -- makes sequences gap-free and totally ordered per room.
    last_seq   bigint NOT NULL DEFAULT 0
);

CREATE TABLE room_members (
    room_id   text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

-- One row per timeline entry: messages, joins, leaves, edits and deletes all take a seq.
CREATE TABLE messages (
    room_id       text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    event_id      text NOT NULL UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('message', 'join', 'leave', 'edit', 'delete')),
    sender        text NOT NULL,
    sender_name   text NOT NULL,
    client_msg_id text,
    text          text,
    target_seq    bigint,
    sent_at       timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    edited_at     timestamptz,
    deleted_at    timestamptz,
    PRIMARY KEY (room_id, seq)
);
-- A client retrying a send reuses its client_msg_id; this makes the retry a no-op.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (room_id, sender, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- The transactional outbox. txid records the writing transaction (xid8) so the relay can
-- read only rows whose transaction is older than every one still running, in commit-safe
-- order, instead of trusting bigserial ids that become visible out of order.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (txid, id) WHERE published_at IS NULL;

-- The consumers' inbox: inserting (consumer, event_id) in the same transaction as the
-- effect makes redelivered events no-ops.
CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- One notification per statement, not per row: the relay only needs a wake-up.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
DROP TABLE processed_events;
DROP TABLE outbox;
DROP TABLE messages;
DROP TABLE room_members;
DROP TABLE rooms;
DROP TABLE sessions;
DROP TABLE users;
