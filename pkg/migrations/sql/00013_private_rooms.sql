-- Private rooms and invitations. A private room is invisible to non-members and is
-- entered only through an invitation the invitee accepts (or an admin adding someone, or
-- creating the room, both recorded as an accepted invitation). An accepted invitation is
-- what persistence checks a private room's join entry against when it stores it; it
-- deletes the invitation in the same transaction, so one acceptance is one join.
-- Room admins may kick members and ban users (public and private rooms alike): a ban keeps
-- the user out (no join, no invitation) until it is lifted.

-- +goose Up
ALTER TABLE rooms ADD COLUMN private boolean NOT NULL DEFAULT false;

-- One invitation per (room, user). A pending one (accepted_at NULL) is usable until
-- expires_at; inviting again after it expired, or after the user left, replaces the row.
-- Declining or revoking deletes it.
CREATE TABLE room_invites (
    room_id     text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    invited_by  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    PRIMARY KEY (room_id, user_id)
);
-- A user's pending invitations (GET /api/me/invites).
CREATE INDEX room_invites_pending ON room_invites (user_id) WHERE accepted_at IS NULL;

-- One row per banned user of a room, until an admin lifts the ban.
CREATE TABLE room_bans (
    room_id   text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_at timestamptz NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Each user's join and leave entries per room, newest last: persistence reads whether a
-- private room's timeline still has the sender in it (their last such entry is a join)
-- as it stores their message. Partial: only the few membership rows are indexed.
CREATE INDEX messages_membership ON messages (room_id, sender, seq) WHERE kind IN ('join', 'leave');

-- +goose Down
DROP INDEX messages_membership;
DROP TABLE room_bans;
DROP TABLE room_invites;
ALTER TABLE rooms DROP COLUMN private;
