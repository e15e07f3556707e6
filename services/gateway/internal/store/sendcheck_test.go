package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Concurrent sends are checked in shared queries; each must still get its own answer.
func TestCheckSend_concurrent_checks_get_their_own_answers(t *testing.T) {
	ctx := context.Background()
	pool := stacktest.Get(t).NewDatabasePool(t,
		`INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x')`,
		`INSERT INTO rooms (id, name, kind, last_seq) VALUES ('general', 'General', 'room', 1), ('dm-1', 'dm', 'dm', 0)`,
		`INSERT INTO room_members (room_id, user_id, role) VALUES ('general', 'u-ann', 'admin'), ('dm-1', 'u-bob', 'member')`,
		`INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, client_msg_id, text, sent_at)
			VALUES ('general', 1, 'ev-1', 'message', 'u-ann', 'ann', 'c-sent', 'hi', now())`,
	)
	st := store.New(pool)
	t.Cleanup(st.Close)
	tests := []struct {
		room, user, clientMsgID string
		want                    store.SendCheck
	}{
		{"general", "u-ann", "c-new", store.SendCheck{RoomFound: true, Kind: "room", Name: "General", Member: true, Role: "admin"}},
		{"general", "u-ann", "c-sent", store.SendCheck{RoomFound: true, Kind: "room", Name: "General", Member: true, Role: "admin", DupSeq: 1, DupID: "ev-1"}},
		{"general", "u-bob", "c-sent", store.SendCheck{RoomFound: true, Kind: "room", Name: "General"}},
		{"dm-1", "u-bob", "c-x", store.SendCheck{RoomFound: true, Kind: "dm", Name: "dm", Member: true, Role: "member"}},
		{"nowhere", "u-ann", "c-x", store.SendCheck{}},
	}
	// Many at once, so that most of them share a query with others.
	const rounds = 40
	var wg sync.WaitGroup
	errs := make(chan error, rounds*len(tests))
	for r := range rounds {
		for _, tt := range tests {
			wg.Go(func() {
				got, err := st.CheckSend(ctx, tt.room, tt.user, tt.clientMsgID)
				if err != nil {
					errs <- err
				} else if got != tt.want {
					errs <- fmt.Errorf("round %d, %s/%s/%s: got %+v, want %+v", r, tt.room, tt.user, tt.clientMsgID, got, tt.want)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The check reads the sender's membership by both key columns: in a large room among many
// small ones it must not read every member and filter the sender out (it did, 255 rows
// per check in the benchmark's rooms).
func TestCheckSend_reads_one_member_row_in_a_large_room(t *testing.T) {
	const members = 1000
	ctx := context.Background()
	pool := stacktest.Get(t).NewDatabasePool(t,
		`INSERT INTO users (id, username, password_hash) SELECT 'u-' || i, 'user' || i, 'x' FROM generate_series(1, 1000) i`,
		`INSERT INTO rooms (id, name, kind) VALUES ('big', 'Big', 'room')`,
		`INSERT INTO room_members (room_id, user_id) SELECT 'big', 'u-' || i FROM generate_series(1, 1000) i`,
		// Many small rooms besides, as on a real server (and the benchmark's database):
		// they make the planner expect a handful of members per room.
		`INSERT INTO rooms (id, name, kind) SELECT 'dm-' || i, 'dm', 'dm' FROM generate_series(1, 3000) i`,
		`INSERT INTO room_members (room_id, user_id) SELECT 'dm-' || i, 'u-' || (i % 1000 + 1) FROM generate_series(1, 3000) i`,
		`INSERT INTO room_members (room_id, user_id) SELECT 'dm-' || i, 'u-' || ((i + 1) % 1000 + 1) FROM generate_series(1, 3000) i`,
		`ANALYZE users, rooms, room_members, messages`,
	)
	var plan []map[string]any
	err := pool.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+store.SendCheckSQL,
		[]string{"big", "big"}, []string{"u-7", "u-700"}, []string{"c-1", "c-2"}).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	var memberRows, removed float64
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Relation Name"] == "room_members" {
			memberRows += n["Actual Rows"].(float64) * n["Actual Loops"].(float64)
		}
		for _, k := range []string{"Rows Removed by Join Filter", "Rows Removed by Filter"} {
			if v, ok := n[k].(float64); ok {
				removed += v
			}
		}
		children, _ := n["Plans"].([]any)
		for _, c := range children {
			walk(c.(map[string]any))
		}
	}
	walk(plan[0]["Plan"].(map[string]any))
	if memberRows > 2 || removed > 0 {
		t.Fatalf("two checks in a %d-member room read %v member rows and filtered out %v rows, want at most 2 and 0", members, memberRows, removed)
	}
}

// The check is planned once per session, not once per send: PostgreSQL kept re-planning
// it for the actual arguments, which cost more than running it.
func TestCheckSend_is_planned_once(t *testing.T) {
	ctx := context.Background()
	pool := stacktest.Get(t).NewDatabasePool(t, `INSERT INTO rooms (id, name, kind) VALUES ('general', 'General', 'room')`)
	st := store.New(pool)
	t.Cleanup(st.Close)
	const checks = 12 // PostgreSQL decides between custom and generic plans after 5
	for i := range checks {
		if _, err := st.CheckSend(ctx, "general", "u-ann", fmt.Sprint("c-", i)); err != nil {
			t.Fatal(err)
		}
	}
	var generic, custom int64
	err := st.CheckPool().QueryRow(ctx, `SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)
		FROM pg_prepared_statements WHERE statement LIKE '%WITH ORDINALITY AS q(room, usr, cmid, i)%'`).Scan(&generic, &custom)
	if err != nil {
		t.Fatal(err)
	}
	if custom != 0 || generic < checks {
		t.Fatalf("%d checks ran with %d generic and %d custom plans, want at least %d and 0", checks, generic, custom, checks)
	}
}
