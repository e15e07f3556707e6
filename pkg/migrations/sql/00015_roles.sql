-- Roles owner > admin > member, muting and room topics. A room's owner is the one member
-- nobody else may act on; an admin acts on members only. A muted member still reads the
-- room but may not post, edit or react until unmuted. DMs have no owner and no admins.

-- +goose Up
ALTER TABLE room_members DROP CONSTRAINT room_members_role_check;
ALTER TABLE room_members ADD CONSTRAINT room_members_role_check CHECK (role IN ('owner', 'admin', 'member'));
-- muted_at is set while the member is muted; muted_by is who muted them.
ALTER TABLE room_members ADD COLUMN muted_at timestamptz, ADD COLUMN muted_by text REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE rooms ADD COLUMN topic text NOT NULL DEFAULT '';

-- The creator of a room who is still its admin owns it; a room whose creator is gone is
-- owned by its earliest admin, so that every room with an admin has exactly one owner.
UPDATE room_members m SET role = 'owner'
FROM rooms r
WHERE r.id = m.room_id AND r.kind = 'room' AND m.user_id = r.created_by AND m.role = 'admin';
UPDATE room_members m SET role = 'owner'
FROM (
    SELECT DISTINCT ON (x.room_id) x.room_id, x.user_id
    FROM room_members x JOIN rooms r ON r.id = x.room_id AND r.kind = 'room'
    WHERE x.role = 'admin'
      AND NOT EXISTS (SELECT 1 FROM room_members o WHERE o.room_id = x.room_id AND o.role = 'owner')
    ORDER BY x.room_id, x.joined_at, x.user_id
) first
WHERE m.room_id = first.room_id AND m.user_id = first.user_id;

-- +goose Down
UPDATE room_members SET role = 'admin' WHERE role = 'owner';
ALTER TABLE rooms DROP COLUMN topic;
ALTER TABLE room_members DROP COLUMN muted_at, DROP COLUMN muted_by;
ALTER TABLE room_members DROP CONSTRAINT room_members_role_check;
ALTER TABLE room_members ADD CONSTRAINT room_members_role_check CHECK (role IN ('member', 'admin'));
