-- E-mail digests of notifications: each user's e-mail settings (written by the gateway's
-- /api/me/email and unsubscribe link), and the digests the notification service plans and
-- sends. A digest is planned (its row and the notifications it covers) in one transaction
-- before anything is sent, so what a digest says is fixed once: a resend after a crash
-- between the SMTP server's acceptance and the commit of "sent" carries the same content
-- and the same Message-ID (derived from the digest id), which is the idempotency key a
-- receiver can deduplicate on. A notification is covered by at most one digest (the
-- primary key of email_digest_items), so it is never mailed in two different digests.

-- +goose Up
CREATE TABLE email_settings (
    user_id         text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Validated by the gateway (one bare addr-spec); the length is RFC 5321's path limit.
    address         text NOT NULL CHECK (length(address) BETWEEN 3 AND 254),
    enabled         boolean NOT NULL DEFAULT true,
    -- The batching window: one digest per user at most this often, sent this long after
    -- the oldest notification it covers, so that a burst becomes one e-mail.
    digest_interval interval NOT NULL DEFAULT interval '5 minutes' CHECK (digest_interval >= interval '1 second'),
    -- When e-mail was last switched on. Only notifications created since are mailed: turning
    -- e-mail on must not mail a backlog of months.
    enabled_at      timestamptz NOT NULL DEFAULT now(),
    -- When the last digest was planned; the next is not planned before this + interval.
    last_digest_at  timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_digests (
    -- A UUIDv7 minted by the notification service; the Message-ID is <id@from-domain>.
    id              text COLLATE "C" PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- pending: planned, not yet accepted by an SMTP server (or accepted and not recorded);
    -- sent; failed: given up (a permanent SMTP refusal or too many attempts); cancelled:
    -- e-mail was switched off, or nothing it covered still exists, before it went out.
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    -- Due time of the next attempt; while one runs, the end of its lease, so that another
    -- instance (or this one after a crash) takes it over only once the lease has expired.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text
);
-- One digest in flight per user: the next is planned only once this one is settled.
CREATE UNIQUE INDEX email_digests_one_pending ON email_digests (user_id) WHERE status = 'pending';
CREATE INDEX email_digests_due ON email_digests (next_attempt_at) WHERE status = 'pending';

CREATE TABLE email_digest_items (
    notification_id text COLLATE "C" PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    digest_id       text COLLATE "C" NOT NULL REFERENCES email_digests (id) ON DELETE CASCADE
);
CREATE INDEX email_digest_items_digest ON email_digest_items (digest_id);

-- +goose Down
DROP TABLE email_digest_items;
DROP TABLE email_digests;
DROP TABLE email_settings;
