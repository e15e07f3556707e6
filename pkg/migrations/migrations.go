// Package migrations holds the platform's SQL schema and applies it.
//
// goose was chosen because its migrations are plain SQL files with up and down sections,
// it runs them from an embed.FS inside the binary that owns them, and its Go API works on
// a *sql.DB without a separate CLI.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var files embed.FS

// Up applies every pending migration and returns the versions it applied.
func Up(ctx context.Context, databaseURL string) ([]int64, error) {
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		return nil, err
	}
	// Several services may start at once on a fresh database; the advisory-lock session
	// locker makes one of them migrate while the others wait.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("cannot load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot apply migrations: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}
