package hub

import "testing"

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cursor, seq int64
		want        Decision
	}{
		{0, 1, Deliver},
		{5, 6, Deliver},
		{5, 5, Duplicate},
		{5, 1, Duplicate},
		{5, 7, Gap},
		{0, 3, Gap},
	}
	for _, tc := range tests {
		if got := Decide(tc.cursor, tc.seq); got != tc.want {
			t.Errorf("Decide(%d, %d) = %v, want %v", tc.cursor, tc.seq, got, tc.want)
		}
	}
}

func TestSub_observe_and_rewind(t *testing.T) {
	t.Parallel()
	s := &sub{cursor: 10, base: 4}
	if s.observe(9) || s.syncing {
		t.Fatal("an old seq must not start a fill")
	}
	if !s.observe(12) || !s.syncing || s.pending != 12 {
		t.Fatalf("a newer seq must start a fill: %+v", s)
	}
	if s.observe(15) || s.pending != 15 {
		t.Fatalf("while syncing only pending moves: %+v", s)
	}
	s = &sub{cursor: 20, base: 4}
	s.rewind(18) // frames 18..20 were queued and dropped
	if s.cursor != 17 || s.pending != 20 {
		t.Fatalf("rewind: %+v", s)
	}
	s.rewind(19) // a later dropped frame of the same room does not move it forward
	if s.cursor != 17 {
		t.Fatalf("rewind forward: %+v", s)
	}
}
