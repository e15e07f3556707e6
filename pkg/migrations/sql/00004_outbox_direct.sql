-- Direct publishing: a writer that publishes its own outbox rows right after its commit
-- (persistence's message.stored events) inserts them with relay_after set. The relay
-- leaves such rows alone until then, so the two do not publish the same row twice in the
-- normal case; if the writer dies or its publish fails, the relay takes the rows over
-- (at relay_after, or at once when the writer clears it). Rows without relay_after are
-- the relay's from the start, as before.

-- +goose Up
ALTER TABLE outbox ADD COLUMN relay_after timestamptz;

-- Wake the relay only for rows it should publish now: a batch the writer publishes itself
-- would only make it read the table for nothing. A row trigger whose WHEN is false costs
-- nothing more than the test (no event is queued); PostgreSQL folds the notifications of
-- one transaction into one.
DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH ROW WHEN (NEW.relay_after IS NULL) EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
ALTER TABLE outbox DROP COLUMN relay_after;
