package cli

import (
	"context"
	"fmt"

	"github.com/kchat/kchat/pkg/migrations"
)

func runMigrate(ctx context.Context, a *app, args []string) error {
	fs := a.newFlagSet("migrate", "migrate [-database-url postgres://...] [-wait 0]")
	dbURL := fs.String("database-url", a.env.Getenv("DATABASE_URL"), "Postgres URL (env DATABASE_URL)")
	wait := fs.Duration("wait", 0, "retry while Postgres is unreachable, for up to this long (e.g. 1m)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dbURL == "" {
		return usagef("no database: set DATABASE_URL or -database-url")
	}
	return retryUntil(ctx, a, *wait, "migrate", func() error {
		applied, err := migrations.Up(ctx, *dbURL)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			_, err = fmt.Fprintln(a.env.Stdout, "no pending migrations")
			return err
		}
		_, err = fmt.Fprintf(a.env.Stdout, "applied migrations %v\n", applied)
		return err
	}, func(error) bool { return false })
}
