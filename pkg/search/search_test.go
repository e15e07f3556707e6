package search_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/search"
	"github.com/kchat/kchat/pkg/stacktest"
)

// newDB returns a migrated database of the test's own holding testdata/rooms.sql.
func newDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	env := stacktest.Get(t)
	pool := env.NewDatabasePool(t)
	fixture, err := os.ReadFile("testdata/rooms.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), string(fixture)); err != nil {
		t.Fatal(err)
	}
	return pool
}

func exec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// rooms returns the rooms of q's hits, sorted.
func rooms(t *testing.T, s *search.Searcher, q search.Query) []string {
	t.Helper()
	p, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range p.Hits {
		out = append(out, h.Room)
	}
	slices.Sort(out)
	return out
}

// TestSearch_authorization: a hit comes only from a room the user is a member of now.
// Every room of the fixture has the word, so a missing room is one the rule kept out and
// an extra room is a leak.
func TestSearch_authorization(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	tests := []struct {
		name, user, room string
		want             []string
	}{
		{"member: public room, private room, own DM", "u-ann", "", []string{"dm:u-ann:u-bob", "general", "plans"}},
		{"member of everything but plans", "u-bob", "", []string{"dm:u-ann:u-bob", "dm:u-bob:u-cat", "general", "old", "random"}},
		{"third user", "u-cat", "", []string{"dm:u-bob:u-cat", "general", "plans"}},
		{"unknown user", "u-nobody", "", nil},
		{"room filter, member", "u-ann", "general", []string{"general"}},
		{"room filter, own DM", "u-ann", "dm:u-ann:u-bob", []string{"dm:u-ann:u-bob"}},
		{"room filter, public room not joined", "u-ann", "random", nil},
		{"room filter, room she left", "u-ann", "old", nil},
		{"room filter, other users' DM", "u-ann", "dm:u-bob:u-cat", nil},
		{"room filter, private room of others", "u-bob", "plans", nil},
		{"room filter, no such room", "u-ann", "nowhere", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rooms(t, s, search.Query{UserID: tc.user, Text: "zebra", Room: tc.room})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%s found zebra in %v, want %v", tc.user, got, tc.want)
			}
		})
	}
	// Leaving ends it at once, for what was said while she was a member too.
	exec(t, db, `DELETE FROM room_members WHERE room_id = 'general' AND user_id = 'u-ann'`)
	if got := rooms(t, s, search.Query{UserID: "u-ann", Text: "zebra"}); !slices.Equal(got, []string{"dm:u-ann:u-bob", "plans"}) {
		t.Fatalf("after leaving general ann finds zebra in %v", got)
	}
	// Joining again gives the room's history back, as history does.
	exec(t, db, `INSERT INTO room_members (room_id, user_id) VALUES ('general', 'u-ann')`)
	if got := rooms(t, s, search.Query{UserID: "u-ann", Text: "zebra", Room: "general"}); !slices.Equal(got, []string{"general"}) {
		t.Fatalf("after joining again ann finds zebra in %v", got)
	}
}

func TestSearch_filters(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		name string
		q    search.Query
		want []string
	}{
		{"sender", search.Query{Sender: "cat"}, []string{"plans"}},
		{"sender with no messages", search.Query{Sender: "ann"}, nil},
		{"unknown sender", search.Query{Sender: "zed"}, nil},
		{"from (inclusive)", search.Query{From: day(4).Add(10 * time.Hour)}, []string{"dm:u-ann:u-bob", "plans"}},
		{"to (exclusive)", search.Query{To: day(4).Add(10 * time.Hour)}, []string{"general"}},
		{"from and to", search.Query{From: day(1), To: day(5)}, []string{"general", "plans"}},
		{"room and sender", search.Query{Room: "general", Sender: "bob"}, []string{"general"}},
		{"room and another sender", search.Query{Room: "general", Sender: "cat"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.UserID, tc.q.Text = "u-ann", "zebra"
			if got := rooms(t, s, tc.q); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Query syntax: a phrase, or, exclusion, case.
	syntax := []struct {
		text string
		want []string
	}{
		{`"zebra crossing"`, []string{"general"}},
		{`"crossing zebra"`, nil},
		{`crossing or private`, []string{"general", "plans"}},
		{`zebra -general -private`, []string{"dm:u-ann:u-bob"}},
		{`ZEBRA Between`, []string{"dm:u-ann:u-bob"}},
	}
	for _, tc := range syntax {
		t.Run(tc.text, func(t *testing.T) {
			if got := rooms(t, s, search.Query{UserID: "u-ann", Text: tc.text}); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSearch_paging: pages of a query are disjoint, together hold every hit once, come
// in rank order and then newest first, and stay so when a message is stored between
// two pages.
func TestSearch_paging(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	ctx := context.Background()
	// 53 hits: three ranks (the word once, twice, three times) and sent_at ties.
	exec(t, db, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at)
		SELECT 'general', g + 1, 'e-pg' || g, 'message', 'u-bob', 'bob',
		       repeat('pager ', 1 + g % 3) || 'number ' || g, '2026-02-01T00:00:00Z'::timestamptz + (g / 4) * interval '1 minute'
		FROM generate_series(1, 53) g`)
	seen := map[int64]bool{}
	var all []search.Hit
	q := search.Query{UserID: "u-ann", Text: "pager", Limit: 7}
	for page := 0; ; page++ {
		p, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if page == 0 {
			// A message stored after the first page: it ranks first, so later pages,
			// which continue after page one's last hit, must neither repeat nor skip.
			exec(t, db, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at)
				VALUES ('general', 100, 'e-late', 'message', 'u-bob', 'bob', 'pager pager pager pager late', now())`)
		}
		for _, h := range p.Hits {
			if seen[h.Seq] {
				t.Fatalf("page %d repeats seq %d", page, h.Seq)
			}
			seen[h.Seq] = true
		}
		all = append(all, p.Hits...)
		if p.NextCursor == "" {
			if len(p.Hits) > 7 {
				t.Fatalf("page of %d hits", len(p.Hits))
			}
			break
		}
		if len(p.Hits) != 7 {
			t.Fatalf("page %d has %d hits and a next cursor", page, len(p.Hits))
		}
		q.Cursor = p.NextCursor
	}
	if len(all) != 53 {
		t.Fatalf("%d hits over all pages, want 53", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.Rank < b.Rank || a.Rank == b.Rank && a.SentAt.Before(b.SentAt) {
			t.Fatalf("hit %d (rank %v, %v) before hit %d (rank %v, %v)", i-1, a.Rank, a.SentAt, i, b.Rank, b.SentAt)
		}
	}
	if all[0].Rank == all[len(all)-1].Rank {
		t.Fatal("every hit has the same rank: the ranks were not exercised")
	}
	// A cursor is for its own query only.
	q.Text = "zebra"
	if _, err := s.Search(ctx, q); !errors.Is(err, search.ErrInvalid) {
		t.Fatalf("cursor of another query: %v", err)
	}
}

// TestSearch_capped: a query matching more than MaxRanked messages ranks the newest
// MaxRanked and says so.
func TestSearch_capped(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	exec(t, db, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at)
		SELECT 'random', g + 1, 'e-fl' || g, 'message', 'u-bob', 'bob',
		       CASE WHEN g = 1 THEN 'flood flood flood oldest' ELSE 'flood ' || g END,
		       '2026-03-01T00:00:00Z'::timestamptz + g * interval '1 second'
		FROM generate_series(1, $1::int) g`, search.MaxRanked+1)
	p, err := s.Search(context.Background(), search.Query{UserID: "u-bob", Text: "flood", Room: "random"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Capped || len(p.Hits) != search.DefaultLimit || p.NextCursor == "" {
		t.Fatalf("capped %v, %d hits, cursor %q", p.Capped, len(p.Hits), p.NextCursor)
	}
	// The oldest would rank first, but it is past the newest MaxRanked.
	if p.Hits[0].Seq == 2 {
		t.Fatal("the oldest match was ranked")
	}
	p, err = s.Search(context.Background(), search.Query{UserID: "u-bob", Text: "zebra"})
	if err != nil || p.Capped {
		t.Fatalf("a small query is capped: %v %v", p.Capped, err)
	}
}

func TestSearch_invalid(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	ok := search.Query{UserID: "u-ann", Text: "zebra", Limit: 1}
	p, err := s.Search(context.Background(), ok)
	if err != nil || p.NextCursor == "" {
		t.Fatalf("setup: %v %+v", err, p)
	}
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		mod  func(*search.Query)
		msg  string
	}{
		{"empty", func(q *search.Query) { q.Text = "" }, "q is required"},
		{"blank", func(q *search.Query) { q.Text = " \t " }, "q is required"},
		{"too long", func(q *search.Query) { q.Text = strings.Repeat("a", search.MaxQueryBytes+1) }, "longer than"},
		{"no words", func(q *search.Query) { q.Text = "!!! ..." }, "no words"},
		{"NUL", func(q *search.Query) { q.Text = "a\x00b" }, "NUL"},
		{"invalid UTF-8", func(q *search.Query) { q.Text = "a\xffb" }, "UTF-8"},
		{"negative limit", func(q *search.Query) { q.Limit = -1 }, "limit"},
		{"limit too large", func(q *search.Query) { q.Limit = search.MaxLimit + 1 }, "limit"},
		{"from after to", func(q *search.Query) { q.From, q.To = day.Add(time.Hour), day }, "from must be before to"},
		{"from equals to", func(q *search.Query) { q.From, q.To = day, day }, "from must be before to"},
		{"garbage cursor", func(q *search.Query) { q.Cursor = "not a cursor" }, "cursor"},
		{"truncated cursor", func(q *search.Query) { q.Cursor = p.NextCursor[:10] }, "cursor"},
		{"cursor of another user", func(q *search.Query) { q.Cursor, q.UserID = p.NextCursor, "u-bob" }, "another query"},
		{"cursor of another filter", func(q *search.Query) { q.Cursor, q.Room = p.NextCursor, "general" }, "another query"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := ok
			tc.mod(&q)
			_, err := s.Search(context.Background(), q)
			var inv *search.InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, search.ErrInvalid) || !strings.Contains(inv.Msg, tc.msg) {
				t.Fatalf("got %v, want an InvalidError saying %q", err, tc.msg)
			}
		})
	}
	// The cursor with its own query, and another page size, is fine.
	q := ok
	q.Cursor, q.Limit = p.NextCursor, 5
	if _, err := s.Search(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// TestSearch_snippet: the snippet is the stored text itself, markup-like parts and all,
// cut around the first match; only matches are marked. Words inside markup are found.
func TestSearch_snippet(t *testing.T) {
	db := newDB(t)
	s := search.New(db)
	long := strings.Repeat("lorem ipsum ", 40) + "needle in a <b>haystack</b> " + strings.Repeat("dolor sit ", 40)
	texts := []string{
		`<script>alert("x")</script> & vector<int> needle &amp; a<b and c>d`,
		long,
	}
	for i, text := range texts {
		exec(t, db, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at)
			VALUES ('general', $1, $2, 'message', 'u-bob', 'bob', $3, now())`, 10+i, fmt.Sprintf("e-sn%d", i), text)
	}
	p, err := s.Search(context.Background(), search.Query{UserID: "u-ann", Text: "needle"})
	if err != nil || len(p.Hits) != 2 {
		t.Fatalf("%v %+v", err, p)
	}
	p2, err := s.Search(context.Background(), search.Query{UserID: "u-ann", Text: "vector int alert"})
	if err != nil || len(p2.Hits) != 1 || p2.Hits[0].Seq != 10 {
		t.Fatalf("words inside markup: %v %+v", err, p2)
	}
	var marked []string
	for _, seg := range p2.Hits[0].Snippet {
		if seg.Match {
			marked = append(marked, seg.Text)
		}
	}
	if !slices.Equal(marked, []string{"alert", "vector", "int"}) {
		t.Fatalf("words inside markup marked %q", marked)
	}
	for _, h := range p.Hits {
		var all strings.Builder
		var marked []string
		for _, seg := range h.Snippet {
			all.WriteString(seg.Text)
			if seg.Match {
				marked = append(marked, seg.Text)
			}
		}
		if !slices.Equal(marked, []string{"needle"}) {
			t.Errorf("seq %d: marked %q", h.Seq, marked)
		}
		switch h.Seq {
		case 10:
			if all.String() != texts[0] {
				t.Errorf("short text altered:\n got %q\nwant %q", all.String(), texts[0])
			}
		case 11:
			got := all.String()
			inner := strings.Trim(got, "…")
			if !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "…") || !strings.Contains(long, inner) ||
				!strings.Contains(got, "needle in a <b>haystack</b>") || len([]rune(got)) > 210 {
				t.Errorf("long text's snippet %q", got)
			}
		}
	}
}
