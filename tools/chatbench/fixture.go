package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Fixtures are written straight into the platform's tables: registering 10,000 accounts
// through the API would spend minutes in argon2id, which is not what is measured. Users
// ("bench-…") are kept across runs; sessions expire after three hours; rooms are per run.

type user struct{ id, token string }

// users makes sure users prefix000001..prefixN exist and mints a session token for each.
func (b *Bench) users(ctx context.Context, prefix string, n int) ([]user, error) {
	if _, err := b.db.Exec(ctx, `
		INSERT INTO users (id, username, password_hash)
		SELECT $1 || lpad(g::text, 6, '0'), $1 || lpad(g::text, 6, '0'), '!bench-no-login'
		FROM generate_series(1, $2::int) g
		ON CONFLICT DO NOTHING`, prefix, n); err != nil {
		return nil, fmt.Errorf("fixture users: %w", err)
	}
	out := make([]user, n)
	rows := make([][]any, n)
	exp := time.Now().Add(3 * time.Hour)
	for i := range n {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		tok := base64.RawURLEncoding.EncodeToString(raw)
		sum := sha256.Sum256([]byte(tok))
		out[i] = user{id: fmt.Sprintf("%s%06d", prefix, i+1), token: tok}
		rows[i] = []any{sum[:], out[i].id, "session", exp}
	}
	if _, err := b.db.CopyFrom(ctx, pgx.Identifier{"sessions"}, []string{"token_hash", "user_id", "kind", "expires_at"}, pgx.CopyFromRows(rows)); err != nil {
		return nil, fmt.Errorf("fixture sessions: %w", err)
	}
	return out, nil
}

// rooms creates rooms with their members.
func (b *Bench) rooms(ctx context.Context, members map[string][]string) error {
	// Rows written directly, with no join entries in the timeline: the gateways follow a
	// room automatically only from a join entry, so bench connections follow exactly the
	// rooms they subscribe to.
	joined := time.Now().Add(-24 * time.Hour)
	var rrows, mrows [][]any
	for room, us := range members {
		rrows = append(rrows, []any{room, room, "room"})
		for _, u := range us {
			mrows = append(mrows, []any{room, u, joined})
		}
	}
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"rooms"}, []string{"id", "name", "kind"}, pgx.CopyFromRows(rrows)); err != nil {
		return fmt.Errorf("fixture rooms: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"room_members"}, []string{"room_id", "user_id", "joined_at"}, pgx.CopyFromRows(mrows)); err != nil {
		return fmt.Errorf("fixture members: %w", err)
	}
	return tx.Commit(ctx)
}

// storedCount is how many timeline entries the rooms with this prefix hold.
func (b *Bench) storedCount(ctx context.Context, roomPrefix string) (int64, error) {
	var n int64
	err := b.db.QueryRow(ctx, `SELECT coalesce(sum(last_seq), 0)::bigint FROM rooms WHERE id LIKE $1 || '%'`, roomPrefix).Scan(&n)
	return n, err
}

// drain waits until want entries are stored in the rooms with roomPrefix (the platform
// has worked off what the last run submitted), at most plan.Drain. It returns how long
// that took and whether it finished.
func (b *Bench) drain(ctx context.Context, roomPrefix string, want int64) (time.Duration, bool) {
	t0 := time.Now()
	ok := waitFor(ctx, b.plan.Drain, func() bool {
		n, err := b.storedCount(ctx, roomPrefix)
		return err == nil && n >= want
	})
	return time.Since(t0), ok
}
