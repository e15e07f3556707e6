package attach

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// sweepBatch is how many attachments one sweep transaction deletes at most.
const sweepBatch = 100

// Run sweeps every SweepInterval until ctx ends. Every gateway runs it: each sweep locks
// the rows it takes with FOR UPDATE SKIP LOCKED, so two gateways share the work instead
// of deleting the same files, and persistence's lock on an upload it is attaching keeps
// the sweeper off that row.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var lastGone time.Time
	for {
		gone := time.Since(lastGone) >= s.cfg.GoneInterval
		if gone {
			lastGone = time.Now()
		}
		if _, err := s.Sweep(ctx, gone); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "attachment sweep failed; next one retries", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep deletes, batch by batch, the files and rows of uploads never attached within
// OrphanGrace and of messages deleted more than DeletedGrace ago; with gone, also of
// attachments whose message is gone (retention deleted it), a question that reads every
// attached row and is therefore asked only every GoneInterval. A row is deleted only
// after its blobs are: a failure leaves the row, and the next sweep tries again. It
// returns how many it deleted.
func (s *Service) Sweep(ctx context.Context, gone bool) (int, error) {
	total := 0
	for {
		n, err := s.sweepOnce(ctx, gone)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}

// Due rows: the first two conditions use the partial indexes of migration 00011.
const (
	dueQuery = `
		SELECT a.id, a.blob_key, a.thumb_key
		FROM attachments a
		WHERE (a.message_seq IS NULL AND a.created_at < $1)
		   OR (a.deleted_at < $2)
		LIMIT $3
		FOR UPDATE OF a SKIP LOCKED`
	dueOrGoneQuery = `
		SELECT a.id, a.blob_key, a.thumb_key
		FROM attachments a
		WHERE (a.message_seq IS NULL AND a.created_at < $1)
		   OR (a.deleted_at < $2)
		   OR (a.message_seq IS NOT NULL AND NOT EXISTS
		          (SELECT 1 FROM messages m WHERE m.room_id = a.room_id AND m.seq = a.message_seq))
		LIMIT $3
		FOR UPDATE OF a SKIP LOCKED`
)

func (s *Service) sweepOnce(ctx context.Context, gone bool) (n int, err error) {
	now := s.cfg.Now().UTC()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := dueQuery
	if gone {
		q = dueOrGoneQuery
	}
	rows, err := tx.Query(ctx, q, now.Add(-s.cfg.OrphanGrace), now.Add(-s.cfg.DeletedGrace), sweepBatch)
	if err != nil {
		return 0, err
	}
	type victim struct {
		id, blob string
		thumb    *string
	}
	var vs []victim
	var v victim
	if _, err := pgx.ForEachRow(rows, []any{&v.id, &v.blob, &v.thumb}, func() error {
		vs = append(vs, v)
		return nil
	}); err != nil {
		return 0, err
	}
	var ids []string
	for _, v := range vs {
		keys := []string{v.blob}
		if v.thumb != nil {
			keys = append(keys, *v.thumb)
		}
		ok := true
		for _, k := range keys {
			if err := s.blobs.Delete(ctx, k); err != nil {
				s.log.WarnContext(ctx, "cannot delete attachment blob; kept for the next sweep", "attachment_id", v.id, "key", k, "error", err)
				ok = false
			}
		}
		if ok {
			ids = append(ids, v.id)
		}
	}
	if len(ids) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM attachments WHERE id = ANY($1::text[])`, ids); err != nil {
			return 0, fmt.Errorf("cannot delete swept attachments: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	if len(ids) > 0 {
		s.log.InfoContext(ctx, "attachments swept", "count", len(ids))
	}
	// Rows whose blobs could not be deleted are not counted, so that Sweep does not loop
	// over them.
	return len(ids), nil
}
