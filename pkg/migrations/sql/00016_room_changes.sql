-- Room changes are timeline entries: a member's role set, a mute or unmute, an ownership
-- transfer or a change of the room's name, topic or privacy is stored by persistence as a
-- 'room_change' entry with its own seq, so it is delivered live in room order, replayed
-- from the log and returned by history like a join. Its sender is who made the change;
-- what changed is kept as the stored event wrote it, in room_change:
-- {"change", "target"?, "target_name"?, "role"?, "settings"?{"name"?, "topic"?, "private"?}}.

-- +goose Up
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('message', 'join', 'leave', 'edit', 'delete', 'reaction', 'room_change'));
ALTER TABLE messages ADD COLUMN room_change jsonb;
ALTER TABLE messages ADD CONSTRAINT messages_room_change_check
    CHECK ((kind = 'room_change') = (room_change IS NOT NULL));

-- +goose Down
DELETE FROM messages WHERE kind = 'room_change';
ALTER TABLE messages DROP CONSTRAINT messages_room_change_check;
ALTER TABLE messages DROP COLUMN room_change;
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check
    CHECK (kind IN ('message', 'join', 'leave', 'edit', 'delete', 'reaction'));
