-- Direct publishing: a writer that publishes its own outbox rows right after its commit
-- (persistence's message.stored events) inserts them with relay_after set. The relay
-- leaves such rows alone until then, so the two do not publish the same row twice in the
-- normal case; if the writer dies or its publish fails, the relay takes the rows over
-- (at relay_after, or at once when the writer clears it). Rows without relay_after are
-- the relay's from the start, as before.

-- +goose Up
ALTER TABLE outbox ADD COLUMN relay_after timestamptz;

-- +goose StatementBegin
-- Wake the relay only for rows it should publish now: a batch the writer publishes itself
-- would only make it read the table for nothing.
CREATE OR REPLACE FUNCTION outbox_notify_relayable() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE relay_after IS NULL) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify_relayable();

-- +goose Down
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify_relayable();
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
ALTER TABLE outbox DROP COLUMN relay_after;
