-- Full-text search over message bodies (pkg/search runs the queries).
--
-- The tsvector is a STORED generated column of messages, so it is written by the same
-- statement, and so in the same transaction, as the text it is made of: persistence's
-- COPY of new messages, an edit's UPDATE of its target's text and a delete's UPDATE that
-- clears it all recompute it, and no writer can forget to. Only a live message has one:
-- edit entries (kind 'edit') carry a later version of a message's text, which is already
-- the message row's own text after the edit, so indexing them too would find a message
-- twice and by its old words after a second edit; joins, leaves, deletes and reactions
-- have no words; a deleted message (deleted_at set, text cleared) must not be found.
--
-- The text search configuration is 'simple' (lower-cased words, no stemming, no stop
-- words), not 'english': nothing says kchat's users write English, and English stemming
-- and stop-word lists applied to another language lose words or conflate unrelated ones;
-- chat is full of names, code identifiers and short forms that stemming mangles; and with
-- stop words dropped, a query such as "to be or not to be" or a search for a room's "who"
-- would find nothing. The cost is that "deploy" does not find "deployed" (users can type
-- `deploy or deployed`); docs/search.md says so. The configuration is spelled out in the
-- expression (it must be, for the expression to be immutable) and pkg/search uses the same
-- one for its queries and snippets.
--
-- '<' and '>' are read as spaces: PostgreSQL's parser takes anything that looks like an
-- HTML or XML tag for one and indexes none of its words, so "<img src=x onerror=...>" or
-- "vector<int>" would keep their words out of the index. translate() keeps every other
-- character at its place (one for one), which pkg/search relies on to mark matches in the
-- stored text.
--
-- Adding a STORED column rewrites the messages table under an ACCESS EXCLUSIVE lock: on a
-- large installation run this migration in a maintenance window (docs/search.md).

-- +goose Up
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN kind = 'message' AND deleted_at IS NULL AND text IS NOT NULL
         THEN to_tsvector('simple'::regconfig, translate(text, '<>', '  ')) END
) STORED;

-- Partial: the rows without words (most timeline entries that are not messages) are not
-- in the index at all. A query's `search @@ q` implies `search IS NOT NULL`, which is what
-- lets the planner use it.
CREATE INDEX messages_search ON messages USING gin (search) WHERE search IS NOT NULL;

-- A query ranks only the newest matches (search.MaxRanked): for a word in half of all
-- messages, walking this index backwards and testing each row finds them in a few
-- milliseconds, where reading every match from the GIN index and ranking it takes
-- hundreds (measured: chatbench search, docs/search.md).
CREATE INDEX messages_search_sent_at ON messages (sent_at) WHERE search IS NOT NULL;

-- +goose Down
DROP INDEX messages_search_sent_at;
DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search;
