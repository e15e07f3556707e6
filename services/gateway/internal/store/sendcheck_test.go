package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// Concurrent sends are checked in shared queries; each must still get its own answer.
func TestCheckSend_concurrent_checks_get_their_own_answers(t *testing.T) {
	env := stacktest.Get(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, env.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, q := range []string{
		`INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x')`,
		`INSERT INTO rooms (id, name, kind, last_seq) VALUES ('general', 'General', 'room', 1), ('dm-1', 'dm', 'dm', 0)`,
		`INSERT INTO room_members (room_id, user_id, role) VALUES ('general', 'u-ann', 'admin'), ('dm-1', 'u-bob', 'member')`,
		`INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, client_msg_id, text, sent_at)
			VALUES ('general', 1, 'ev-1', 'message', 'u-ann', 'ann', 'c-sent', 'hi', now())`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	st := store.New(pool)
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
