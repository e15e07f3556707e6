-- The members of each room as its stored timeline has them: role and mute. The gateway
-- changes room_members and writes the change's event in one transaction, so by the time
-- persistence stores an entry, room_members may already hold later changes (its author
-- demoted, muted, or gone after handing the room on). Persistence judges a room change,
-- kick, ban, edit or delete by its author's role, and a message by its sender's mute, at
-- the entry's place in the timeline too, kept here as it stores the entries (joins, leaves,
-- removals, role changes, ownership transfers, mutes), in room order.

-- +goose Up
CREATE TABLE timeline_members (
    room_id text    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- No reference to users: a user deleted while their entries are in flight must not
    -- make the batch that stores them fail on every retry.
    user_id text    NOT NULL,
    role    text    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    muted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (room_id, user_id)
);
-- Rooms that exist already start from their members as they are now.
INSERT INTO timeline_members (room_id, user_id, role, muted)
SELECT m.room_id, m.user_id, m.role, m.muted_at IS NOT NULL
FROM room_members m JOIN rooms r ON r.id = m.room_id AND r.kind = 'room';

-- +goose Down
DROP TABLE timeline_members;
