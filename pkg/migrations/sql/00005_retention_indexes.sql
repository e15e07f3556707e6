-- Retention cleanup (persistence's outbox.Cleaner) deletes published outbox rows and
-- inbox entries older than their retention in small batches; these indexes let each
-- batch find its rows without reading the table. The outbox one is partial: pending rows
-- (published_at IS NULL) are never cleaned, and the relay's own index covers them.

-- +goose Up
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP INDEX processed_events_processed_at;
DROP INDEX outbox_published_at;
