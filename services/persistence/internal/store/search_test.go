package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/search"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// TestHandleBatch_search: the search index is written with the messages it indexes, so
// what persistence stores (sends, edits, deletes, in one batch or several) is what search
// finds as soon as the batch commits: an edited message by its new words only, a deleted
// one not at all, an edit entry never as a hit of its own.
func TestHandleBatch_search(t *testing.T) {
	st, pool := newStore(t)
	ctx := context.Background()
	msg := chattest.Message
	edit := func(cmid, text string, target int64) event.Envelope {
		return chattest.Submitted(t, "room-a", "u-alice", cmid, event.KindEdit, text, target)
	}
	del := func(cmid string, target int64) event.Envelope {
		return chattest.Submitted(t, "room-a", "u-alice", cmid, event.KindDelete, "", target)
	}
	batches := [][]event.Envelope{
		{msg(t, "room-a", "u-alice", "1", "the original wording of one"), // seq 1
			msg(t, "room-a", "u-alice", "2", "a message soon deleted"),       // seq 2
			msg(t, "room-a", "u-bob", "3", "bystander talks about wording")}, // seq 3
		{edit("4", "the amended phrasing of one", 1), // seq 4
			del("5", 2)}, // seq 5
		// Edit and delete of the same message in one batch: the index follows both.
		{msg(t, "room-a", "u-alice", "6", "short lived text"), // seq 6
			edit("7", "short lived rewrite", 6), del("8", 6)},
	}
	for _, b := range batches {
		if err := st.HandleBatch(ctx, chattest.Consumed(t, b...)); err != nil {
			t.Fatal(err)
		}
	}
	s := search.New(pool)
	tests := []struct {
		q    string
		want []int64 // seqs found in room-a, any order
	}{
		{"amended", []int64{1}}, // the edit's new words find the message itself
		{"original", nil},       // its old words are gone
		{"wording", []int64{3}}, // only the bystander's message still says it
		{"one", []int64{1}},     // a word both versions have: one hit, not two
		{"deleted", nil},        // a deleted message is not found
		{"short lived", nil},    // edited then deleted in one batch
		{"rewrite", nil},        // the edit entry of a deleted message carries no text
		{`"amended phrasing"`, []int64{1}},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			p, err := s.Search(ctx, search.Query{UserID: "u-alice", Text: tc.q})
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, h := range p.Hits {
				if h.Room != "room-a" {
					t.Errorf("hit in %s", h.Room)
				}
				got = append(got, h.Seq)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("q %q found seqs %v, want %v", tc.q, got, tc.want)
			}
			for _, h := range p.Hits {
				if h.EditedAt == nil && h.Seq == 1 {
					t.Errorf("the edited message's hit has no edited_at")
				}
			}
		})
	}
	// The index holds live messages only: edits, deletes and the deleted have no entry.
	if n := chattest.Count(t, pool, `SELECT count(*) FROM messages WHERE search IS NOT NULL AND (kind <> 'message' OR deleted_at IS NOT NULL)`); n != 0 {
		t.Fatalf("%d non-message or deleted rows are indexed", n)
	}
}
