-- Web Push: each user's devices (the PushSubscription a browser hands the web page, added
-- and removed through the gateway's /api/me/push-subscriptions) and one delivery row per
-- (notification, device), which the notification service's push worker plans before it
-- sends and marks after the push service accepted it. The delivery row is the idempotency
-- record: a push is only ever (re)sent for a pending row, a resend after a crash between
-- the push service's acceptance and the mark carries the same notification id (in the
-- payload and the Topic header), and no row is planned twice (the primary key).

-- +goose Up
CREATE TABLE push_subscriptions (
    -- A UUIDv7 minted by the gateway.
    id         text COLLATE "C" PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One device, one row: a browser that subscribes again (or logs in as someone else)
    -- replaces its row.
    endpoint   text NOT NULL UNIQUE CHECK (length(endpoint) BETWEEN 8 AND 2048),
    p256dh     text NOT NULL,
    auth       text NOT NULL,
    -- Only notifications created since are pushed: subscribing never pushes a backlog.
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

CREATE TABLE push_deliveries (
    notification_id text COLLATE "C" NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    -- A subscription the push service reported gone (404/410) is deleted, and its
    -- deliveries with it.
    subscription_id text COLLATE "C" NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    -- pending: planned, not yet accepted (or accepted and not recorded); sent; failed:
    -- refused for good or too many attempts; cancelled: read or expired before it went out.
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    -- Due time of the next attempt; while one runs, the end of its lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text,
    PRIMARY KEY (notification_id, subscription_id)
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX push_deliveries_subscription ON push_deliveries (subscription_id);

-- +goose Down
DROP TABLE push_deliveries;
DROP TABLE push_subscriptions;
