-- Members who asked for every message of a room (their own level all for it), found by
-- room. In a room without notify_all they are, beside the mentioned and a thread's
-- participants, the only members a message can notify, so the notification service reads
-- them instead of every member of the room for every message. The primary key leads with
-- the user, which does not find them by room.

-- +goose Up
CREATE INDEX room_notification_prefs_room_all ON room_notification_prefs (room_id, user_id) WHERE level = 'all';

-- +goose Down
DROP INDEX room_notification_prefs_room_all;
