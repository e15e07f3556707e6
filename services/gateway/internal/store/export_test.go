package store

import "github.com/jackc/pgx/v5/pgxpool"

// SendCheckSQL lets tests read the plan of the batched send check.
const SendCheckSQL = sendCheckSQL

// CheckPool is the pool the send checks run on.
func (s *Store) CheckPool() *pgxpool.Pool { return s.checks.checkPool() }
