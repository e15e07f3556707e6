package migrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/stacktest"
)

// Services start together on a fresh database: concurrent Up calls must all succeed and
// leave one schema behind.
func TestUp_concurrent_starts_apply_once(t *testing.T) {
	env := stacktest.Get(t)
	url := env.NewDatabase(t) // already migrated once
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied, err := migrations.Up(ctx, url)
			if err == nil && len(applied) != 0 {
				t.Errorf("second run applied %v", applied)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
		AND table_name IN ('users','sessions','rooms','room_members','messages','outbox','processed_events')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 7 {
		t.Fatalf("%d of 7 core tables present", tables)
	}
}
