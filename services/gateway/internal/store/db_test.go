package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/stacktest"
)

// seededDatabase opens a migrated database of the test's own on the local stack's
// PostgreSQL and runs the statements in it.
func seededDatabase(t *testing.T, statements ...string) *pgxpool.Pool {
	t.Helper()
	env := stacktest.Get(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, q := range statements {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}
