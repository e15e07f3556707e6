package notifications_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/stacktest"
)

// newPool returns a pool on a fresh database holding users ann and bob and room r1.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	env := stacktest.Get(t)
	return env.NewDatabasePool(t, `
		INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x');
		INSERT INTO rooms (id, name, kind) VALUES ('r1', 'general', 'room');`)
}

// seed inserts n notifications for user (seq 1..n, oldest first) and returns their ids.
func seed(t *testing.T, pool *pgxpool.Pool, user string, n int) []string {
	t.Helper()
	ns := make([]notifications.Notification, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = uuid.Must(uuid.NewV7()).String() // monotonic within the process
		ns[i] = notifications.Notification{ID: ids[i], UserID: user, RoomID: "r1", Seq: int64(i + 1),
			Reason: event.ReasonMention, Sender: "u-x", Preview: "hi", CreatedAt: time.Now().UTC()}
	}
	got, err := notifications.Insert(context.Background(), pool, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("inserted %d of %d", len(got), n)
	}
	return ids
}

func ids(ns []notifications.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func TestStore_List_pages_newest_first(t *testing.T) {
	pool := newPool(t)
	st := notifications.NewStore(pool)
	ann := seed(t, pool, "u-ann", 5)
	seed(t, pool, "u-bob", 2)
	newestFirst := reversed(ann)

	cases := []struct {
		name     string
		user     string
		beforeID string
		limit    int
		want     []string
	}{
		{"first page", "u-ann", "", 2, newestFirst[:2]},
		{"second page", "u-ann", newestFirst[1], 2, newestFirst[2:4]},
		{"last page", "u-ann", newestFirst[3], 2, newestFirst[4:]},
		{"past the end", "u-ann", newestFirst[4], 2, []string{}},
		{"default limit", "u-ann", "", 0, newestFirst},
		{"nobody's", "u-carol", "", 10, []string{}},
		{"another user's cursor does not leak rows", "u-bob", newestFirst[0], 10, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.List(context.Background(), tc.user, tc.beforeID, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("got %v, want %v", ids(got), tc.want)
			}
			for _, n := range got {
				if n.UserID != tc.user || n.ReadAt != nil || n.CreatedAt.IsZero() {
					t.Errorf("unexpected row %+v", n)
				}
			}
		})
	}
}

func TestStore_MarkRead_Pending_UnreadCount(t *testing.T) {
	pool := newPool(t)
	st := notifications.NewStore(pool)
	ctx := context.Background()
	ann := seed(t, pool, "u-ann", 4)
	bob := seed(t, pool, "u-bob", 1)

	steps := []struct {
		name        string
		user        string
		mark        []string
		wantChanged int
		wantPending []string // for user after the step
	}{
		{"nothing to mark", "u-ann", nil, 0, ann},
		{"own notifications", "u-ann", []string{ann[0], ann[2]}, 2, []string{ann[1], ann[3]}},
		{"again is a no-op", "u-ann", []string{ann[0]}, 0, []string{ann[1], ann[3]}},
		{"someone else's and unknown ids are ignored", "u-ann", []string{bob[0], "nope"}, 0, []string{ann[1], ann[3]}},
		{"bob still has his", "u-bob", nil, 0, bob},
		{"the rest", "u-ann", []string{ann[1], ann[3]}, 2, []string{}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			n, err := st.MarkRead(ctx, s.user, s.mark)
			if err != nil {
				t.Fatal(err)
			}
			if n != s.wantChanged {
				t.Errorf("MarkRead changed %d, want %d", n, s.wantChanged)
			}
			pending, err := st.Pending(ctx, s.user)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(pending), s.wantPending) {
				t.Errorf("pending %v, want %v (oldest first)", ids(pending), s.wantPending)
			}
			count, err := st.UnreadCount(ctx, s.user)
			if err != nil {
				t.Fatal(err)
			}
			if count != len(s.wantPending) {
				t.Errorf("unread count %d, want %d", count, len(s.wantPending))
			}
		})
	}
	all, err := st.List(ctx, "u-ann", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.ReadAt == nil {
			t.Errorf("%s should be read", n.ID)
		}
	}
}

func TestInsert_skips_duplicates(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	first := seed(t, pool, "u-ann", 1)
	n := func(id string, seq int64, reason string) notifications.Notification {
		return notifications.Notification{ID: id, UserID: "u-ann", RoomID: "r1", Seq: seq, Reason: reason,
			Sender: "u-bob", CreatedAt: time.Now()}
	}
	fresh := uuid.Must(uuid.NewV7()).String()
	other := uuid.Must(uuid.NewV7()).String()
	got, err := notifications.Insert(ctx, pool, []notifications.Notification{
		n(uuid.Must(uuid.NewV7()).String(), 1, event.ReasonMention), // same (user, room, seq, reason) as seeded
		n(first[0], 9, event.ReasonMention),                         // same id
		n(fresh, 1, event.ReasonRoom),                               // same entry, other reason: a new row
		n(other, 2, event.ReasonMention),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fresh, other}; !slices.Equal(ids(got), want) {
		t.Errorf("inserted %v, want %v", ids(got), want)
	}
	count, err := notifications.NewStore(pool).UnreadCount(ctx, "u-ann")
	if err != nil || count != 3 {
		t.Errorf("unread = %d, %v; want 3", count, err)
	}
}

func TestStore_rejects_empty_user(t *testing.T) {
	st := notifications.NewStore(nil) // never reaches the database
	ctx := context.Background()
	calls := map[string]func() error{
		"List":        func() error { _, err := st.List(ctx, "", "", 1); return err },
		"Pending":     func() error { _, err := st.Pending(ctx, ""); return err },
		"UnreadCount": func() error { _, err := st.UnreadCount(ctx, ""); return err },
		"MarkRead":    func() error { _, err := st.MarkRead(ctx, "", []string{"x"}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, notifications.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}
