-- Who is where, for search_test.go. ann is in general, her DM with bob and the private
-- room "plans" (with cat); she left "old" (her room_members row is gone, as POST .../leave leaves
-- it); bob and cat have a DM of their own; "random" has only bob.
INSERT INTO users (id, username, password_hash) VALUES
    ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x');
INSERT INTO rooms (id, name, kind) VALUES
    ('general', 'General', 'room'), ('random', 'Random', 'room'), ('old', 'Old', 'room'),
    ('plans', 'Plans', 'room'), ('dm:u-ann:u-bob', 'dm', 'dm'), ('dm:u-bob:u-cat', 'dm', 'dm');
INSERT INTO room_members (room_id, user_id) VALUES
    ('general', 'u-ann'), ('general', 'u-bob'), ('general', 'u-cat'),
    ('random', 'u-bob'),
    ('old', 'u-bob'),
    ('plans', 'u-ann'), ('plans', 'u-cat'),
    ('dm:u-ann:u-bob', 'u-ann'), ('dm:u-ann:u-bob', 'u-bob'),
    ('dm:u-bob:u-cat', 'u-bob'), ('dm:u-bob:u-cat', 'u-cat');
-- Every room says "zebra" once, sent by bob (cat in plans), a day apart from 2026-01-01:
-- whatever room a hit comes from, the word was there to be found.
INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at) VALUES
    ('general', 1, 'e-g1', 'message', 'u-bob', 'bob', 'zebra crossing in general', '2026-01-01T10:00:00Z'),
    ('random', 1, 'e-r1', 'message', 'u-bob', 'bob', 'zebra sighting in random', '2026-01-02T10:00:00Z'),
    ('old', 1, 'e-o1', 'message', 'u-bob', 'bob', 'zebra from the old days', '2026-01-03T10:00:00Z'),
    ('plans', 1, 'e-p1', 'message', 'u-cat', 'cat', 'zebra plans are private', '2026-01-04T10:00:00Z'),
    ('dm:u-ann:u-bob', 1, 'e-d1', 'message', 'u-bob', 'bob', 'zebra between ann and bob', '2026-01-05T10:00:00Z'),
    ('dm:u-bob:u-cat', 1, 'e-d2', 'message', 'u-bob', 'bob', 'zebra between bob and cat', '2026-01-06T10:00:00Z');
UPDATE rooms SET last_seq = 1;
UPDATE rooms SET private = true WHERE id = 'plans';
