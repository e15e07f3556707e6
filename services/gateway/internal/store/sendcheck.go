package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// maxChecksPerQuery bounds one batched send check.
const maxChecksPerQuery = 256

// checkTimeout bounds one batched query; the callers' contexts bound their own waits.
const checkTimeout = 10 * time.Second

// sendChecks batches the send checks of concurrent sends into one query. Every send is
// checked (room, membership, an earlier message with the same client_msg_id); one query
// per send cost as much PostgreSQL and gateway CPU as the rest of the send together. As
// with the producer's lanes, the first check goes at once and the checks that arrive
// while it runs go together as the next query, so a batch grows with load and an idle
// gateway adds no wait.
type sendChecks struct {
	mu      sync.Mutex
	pending []*pendingCheck
	running bool

	main     *pgxpool.Pool // the store's pool, whose settings the check pool copies
	poolOnce sync.Once
	pool     *pgxpool.Pool // nil until the first check
}

// checkPool returns the pool the checks run on, opening it on first use (the main pool
// once the store is closed).
func (c *sendChecks) checkPool() *pgxpool.Pool {
	c.poolOnce.Do(func() { c.pool = newCheckPool(c.main) })
	if c.pool == nil {
		return c.main
	}
	return c.pool
}

func (c *sendChecks) close() {
	c.poolOnce.Do(func() {}) // a check starting now runs on the main pool
	if c.pool != nil && c.pool != c.main {
		c.pool.Close()
	}
}

// newCheckPool opens a pool like main whose sessions plan the send check once. A
// prepared statement is planned anew for every execution while PostgreSQL expects the
// plan for the actual arguments to be cheaper than its generic one, and for the check it
// always does (it knows the array length): planning took 0.25-0.55 ms of the ~0.35 ms a
// check costs, at one check per send at 500 msg/s. The generic plan must be index
// lookups, and with PostgreSQL's default random_page_cost (4) it was not: guessing ten
// checks per query, it read the whole rooms table into a hash (0.73 ms a check with 620
// rooms, growing with every room) instead of three lookups a check (0.10 ms). Data that
// is read at every send is in memory, so the pool prices a random read as one in
// memory. Only the checks run here, one query at a time (see sendChecks), so these
// settings change no other query. If the copy cannot be opened the checks use main.
func newCheckPool(main *pgxpool.Pool) *pgxpool.Pool {
	cfg := main.Config()
	cfg.MinConns, cfg.MaxConns = 0, 1
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	cfg.ConnConfig.RuntimeParams["random_page_cost"] = "1.1"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return main
	}
	return pool
}

type pendingCheck struct {
	room, user, clientMsgID string
	res                     SendCheck
	err                     error
	done                    chan struct{}
}

// CheckSend reads the room kind, the sender's membership and any earlier message with the
// same client_msg_id. A room that does not exist gives RoomFound false.
func (s *Store) CheckSend(ctx context.Context, roomID, userID, clientMsgID string) (SendCheck, error) {
	c := &pendingCheck{room: roomID, user: userID, clientMsgID: clientMsgID, done: make(chan struct{})}
	s.checks.mu.Lock()
	s.checks.pending = append(s.checks.pending, c)
	if !s.checks.running {
		s.checks.running = true
		go s.runChecks()
	}
	s.checks.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return SendCheck{}, fmt.Errorf("cannot check send: %w", ctx.Err())
	}
}

// runChecks queries batches until none is pending.
func (s *Store) runChecks() {
	for {
		s.checks.mu.Lock()
		n := min(len(s.checks.pending), maxChecksPerQuery)
		if n == 0 {
			s.checks.running = false
			s.checks.pending = nil
			s.checks.mu.Unlock()
			return
		}
		batch := s.checks.pending[:n:n]
		s.checks.pending = s.checks.pending[n:]
		s.checks.mu.Unlock()

		err := s.checkBatch(batch)
		for _, c := range batch {
			if err != nil {
				c.err = err
			}
			close(c.done)
		}
	}
}

// sendCheckSQL answers a batch of checks ($1 rooms, $2 users, $3 client_msg_ids), one row
// per check whose room exists, numbered by q.i. It joins members and messages on q.room,
// not r.id, though the two are equal: with r.id PostgreSQL looked members up by room
// alone and filtered the sender out of all of them (255 rows read per check in a
// 255-member room); with q.room it uses both columns of the primary key.
const sendCheckSQL = `SELECT q.i, r.kind, r.private, r.name, m.user_id IS NOT NULL, m.role, m.muted_at IS NOT NULL, d.seq, d.event_id
	FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q(room, usr, cmid, i)
	JOIN rooms r ON r.id = q.room
	LEFT JOIN room_members m ON m.room_id = q.room AND m.user_id = q.usr
	LEFT JOIN messages d ON d.room_id = q.room AND d.sender = q.usr AND d.client_msg_id = q.cmid`

func (s *Store) checkBatch(batch []*pendingCheck) error {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	rooms, users, ids := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	for i, c := range batch {
		rooms[i], users[i], ids[i] = c.room, c.user, c.clientMsgID
	}
	rows, err := s.checks.checkPool().Query(ctx, sendCheckSQL, rooms, users, ids)
	if err != nil {
		return fmt.Errorf("cannot check send: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int64
		var c SendCheck
		var role, dupID *string
		var muted *bool
		var dupSeq *int64
		if err := rows.Scan(&i, &c.Kind, &c.Private, &c.Name, &c.Member, &role, &muted, &dupSeq, &dupID); err != nil {
			return fmt.Errorf("cannot check send: %w", err)
		}
		if i < 1 || int(i) > len(batch) {
			return fmt.Errorf("cannot check send: row for check %d of %d", i, len(batch))
		}
		c.RoomFound = true
		if role != nil {
			c.Role = *role
		}
		c.Muted = muted != nil && *muted
		if dupSeq != nil {
			c.DupSeq = *dupSeq
		}
		if dupID != nil {
			c.DupID = *dupID
		}
		batch[i-1].res = c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot check send: %w", err)
	}
	return nil
}
