package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

func TestRoomDetails(t *testing.T) {
	ctx := context.Background()
	pool := stacktest.Get(t).NewDatabasePool(t,
		`INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cy', 'cy', 'x')`,
		`INSERT INTO rooms (id, name, kind, private, topic) VALUES ('tea', 'Tea', 'room', true, ' scones <b> ')`,
		`INSERT INTO room_members (room_id, user_id, role, muted_at, muted_by) VALUES
			('tea', 'u-ann', 'owner', NULL, NULL), ('tea', 'u-bob', 'member', now(), 'u-ann')`,
	)
	st := store.New(pool)
	t.Cleanup(st.Close)
	room := store.RoomDetails{ID: "tea", Name: "Tea", Kind: "room", Topic: " scones <b> ", Private: true, Members: 2}
	tests := []struct {
		user  string
		role  string
		muted bool
	}{
		{"u-ann", "owner", false},
		{"u-bob", "member", true},
		{"u-cy", "", false}, // not a member: chat decides whether they may see it
	}
	for _, tt := range tests {
		want := room
		want.Role, want.Muted = tt.role, tt.muted
		got, err := st.RoomDetails(ctx, "tea", tt.user)
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.user, got, err, want)
		}
	}
	if _, err := st.RoomDetails(ctx, "nowhere", "u-ann"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("no such room: %v, want ErrNotFound", err)
	}
}
