package localstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/devcert"
	"github.com/kchat/kchat/pkg/migrations"
)

// PostgreSQL serves TLS, so that sslmode=verify-full — what production should use — is
// exercised here: the server's certificate is checked against the stack's CA and its
// host name, and the schema migrates over such a connection. A client given another CA
// is refused.
func TestPostgres_verify_full(t *testing.T) {
	st, err := New(throwawayConfig(t, repoRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = st.Down(context.Background()) })
	if err := os.MkdirAll(st.logDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.upPostgres(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := devcert.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, other.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	url := func(host, mode, ca string) string {
		return fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=%s&sslrootcert=%s", host, st.cfg.PostgresPort, mode, ca)
	}
	ca := st.Info().PostgresCAFile
	for _, tc := range []struct {
		name, url, wantErr string
	}{
		{"verify-full by IP", url("127.0.0.1", "verify-full", ca), ""},
		{"verify-full by name", url("localhost", "verify-full", ca), ""},
		{"another CA", url("127.0.0.1", "verify-full", otherCA), "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, tc.url)
			if tc.wantErr != "" {
				if err == nil {
					conn.Close(ctx)
					t.Fatal("connected")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var ssl bool
			if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if !ssl {
				t.Fatal("connection is not encrypted")
			}
		})
	}
	if _, err := migrations.Up(ctx, url("127.0.0.1", "verify-full", ca)); err != nil {
		t.Fatalf("migrating over verify-full: %v", err)
	}
}
