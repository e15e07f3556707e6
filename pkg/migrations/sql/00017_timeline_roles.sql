-- The roles members hold as of a room's stored timeline. The gateway changes room_members
-- and writes the change's event in one transaction, so by the time persistence stores an
-- entry, room_members may already hold later changes (its author demoted, or gone after
-- handing the room on). Persistence checks a room change, kick or ban against the role its
-- author held at the entry's place in the timeline, kept here as it stores the entries
-- (joins, leaves, removals, role changes, ownership transfers), in room order.

-- +goose Up
CREATE TABLE timeline_roles (
    room_id text NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- No reference to users: a user deleted while their entries are in flight must not
    -- make the batch that stores them fail on every retry.
    user_id text NOT NULL,
    role    text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    PRIMARY KEY (room_id, user_id)
);
-- Rooms that exist already start from their members as they are now.
INSERT INTO timeline_roles (room_id, user_id, role)
SELECT m.room_id, m.user_id, m.role FROM room_members m JOIN rooms r ON r.id = m.room_id AND r.kind = 'room';

-- +goose Down
DROP TABLE timeline_roles;
