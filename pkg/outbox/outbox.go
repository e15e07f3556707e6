// Package outbox is the transactional outbox: the table that lets a PostgreSQL change and
// the event announcing it commit together. NewRow and Insert write rows; the Relay (run
// by persistence) publishes every committed row to its topic with its key, payload and
// headers, and marks it sent; Direct lets a writer publish its own rows right after its
// commit, the Relay taking over if it fails; the Cleaner deletes what retention allows.
// A crash between publishing and marking republishes a row, so consumers must be
// idempotent (they dedupe by event id or by room and seq).
//
// Write rows inside the transaction of the change they announce (Insert takes anything
// with Exec, such as a pgx.Tx); a row written outside it is a dual write again.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kchat/kchat/pkg/event"
)

// ErrEmpty reports a row without a topic or key: the relay could not route it.
var ErrEmpty = errors.New("outbox: topic and key are required")

// Row is one outbox row: an encoded event for a real (prefixed) topic name, under key.
type Row struct {
	Topic   string
	Key     string
	Payload []byte
	// Headers is the JSON object of the Kafka headers the relay sets (event.Headers of
	// the payload's envelope: ce_id, ce_type, ...), the same ones pkg/producer.Message sets.
	Headers []byte
	// RelayAfter, if set, keeps the relay off the row until then: its writer publishes it
	// itself right after the commit and then Settles it (see Settle). Zero: the relay's
	// from the start.
	RelayAfter time.Time
}

// NewRow encodes e as the row the relay publishes to topic under key.
func NewRow(topic, key string, e event.Envelope) (Row, error) {
	if topic == "" || key == "" {
		return Row{}, ErrEmpty
	}
	payload, err := event.Encode(e)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode %s: %w", e.Type, err)
	}
	hs := event.Headers(e)
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	headers, err := json.Marshal(m)
	if err != nil {
		return Row{}, fmt.Errorf("cannot encode headers: %w", err)
	}
	return Row{Topic: topic, Key: key, Payload: payload, Headers: headers}, nil
}

// Execer is what Insert needs: a pgx.Tx (the point), a *pgx.Conn or a pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Insert writes rows in the order given, which is the order the relay publishes one
// transaction's rows in (and so, for rows of one key, the order consumers see them).
// Rows without RelayAfter are the relay's from the start: the insert's trigger wakes it
// when the transaction commits.
func Insert(ctx context.Context, db Execer, rows ...Row) error {
	if len(rows) == 0 {
		return nil
	}
	topics, keys, payloads, headers := make([]string, len(rows)), make([]string, len(rows)), make([][]byte, len(rows)), make([]string, len(rows))
	relayAfter := make([]*time.Time, len(rows))
	for i, r := range rows {
		if r.Topic == "" || r.Key == "" {
			return ErrEmpty
		}
		h := r.Headers
		if len(h) == 0 {
			h = []byte("{}")
		}
		topics[i], keys[i], payloads[i], headers[i] = r.Topic, r.Key, r.Payload, string(h)
		if !r.RelayAfter.IsZero() {
			relayAfter[i] = &rows[i].RelayAfter
		}
	}
	// ORDER BY the ordinality keeps the ids (and so the relay's order) as given.
	if _, err := db.Exec(ctx, `
		INSERT INTO outbox (topic, key, payload, headers, relay_after)
		SELECT t, k, p, h::jsonb, a FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::timestamptz[])
			WITH ORDINALITY AS x(t, k, p, h, a, n)
		ORDER BY n`, topics, keys, payloads, headers, relayAfter); err != nil {
		return fmt.Errorf("cannot write outbox: %w", err)
	}
	return nil
}

// Settle records how a writer's own publish of its rows (inserted with RelayAfter, found
// by their events' ids) went: published rows are marked so, and the relay never sends
// them; rows whose publish failed are handed to the relay at once. If Settle itself
// fails, the relay takes the rows when RelayAfter passes: a duplicate at worst, which
// consumers drop by event id.
func Settle(ctx context.Context, db Execer, published bool, eventIDs ...string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	// Only unpublished rows are candidates, which the partial index outbox_pending holds.
	q := `UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND headers->>'ce_id' = ANY($1)`
	if !published {
		q = `WITH handed AS (
				UPDATE outbox SET relay_after = NULL
				WHERE published_at IS NULL AND headers->>'ce_id' = ANY($1) RETURNING 1)
			SELECT pg_notify('` + Channel + `', '') FROM (SELECT 1 FROM handed LIMIT 1) AS any_row`
	}
	if _, err := db.Exec(ctx, q, eventIDs); err != nil {
		return fmt.Errorf("cannot settle outbox rows: %w", err)
	}
	return nil
}
