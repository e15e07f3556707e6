// Package search is full-text search over the messages a user may read right now: the
// query the gateway's GET /api/search runs and chatbench's search scenario measures.
//
// The index is messages.search, a tsvector generated from a live message's text (see
// pkg/migrations/sql/00008_search.sql): edits are found by their new text only, deleted
// messages not at all, in the same transaction as persistence's write.
//
// Authorization: a hit comes only from a room the user has a room_members row for at the
// time of the query (public rooms they joined, their DMs). Leaving a room deletes that
// row, so a user who left no longer finds its messages, including those sent while they
// were a member; joining (again) makes the room's whole stored history searchable, the
// same history GET /api/rooms/{id}/messages shows a member.
package search

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// TextConfig is the text search configuration of the index and of every query; it must
// be the one in the generated column's expression (00008_search.sql says why 'simple').
const TextConfig = "simple"

// Limits of a query.
const (
	// MaxQueryBytes bounds the query text: a search box's worth, far below what would
	// make websearch_to_tsquery itself costly.
	MaxQueryBytes = 256
	DefaultLimit  = 20
	MaxLimit      = 50
)

// ErrInvalid is matched (errors.Is) by every error about the query itself: the caller
// answers it with a 400 and the error's message.
var ErrInvalid = errors.New("invalid search")

// InvalidError says what is wrong with a query, in words a user can act on.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, a ...any) error { return &InvalidError{Msg: fmt.Sprintf(format, a...)} }

// Query is one search. Zero filters filter nothing.
type Query struct {
	UserID string // whose rooms are searched; required
	// Text is web-search syntax (websearch_to_tsquery): words are ANDed, "a phrase" must
	// appear as written, `or` between words, -word excludes.
	Text string
	Room string // only this room (a room the user is not in yields no hits)
	// Sender is a username: only messages sent by that user.
	Sender string
	// From and To bound the time the message was sent: From <= sent_at < To.
	From, To time.Time
	Limit    int    // hits per page, 1..MaxLimit; 0 means DefaultLimit
	Cursor   string // Page.NextCursor of the previous page of the same query
}

// Validate checks q without touching the database; Search calls it.
func (q Query) Validate() error {
	text := strings.TrimSpace(q.Text)
	switch {
	case q.UserID == "":
		return errors.New("search: no user") // a caller's bug, not the user's input
	case text == "":
		return invalid("q is required: the words to search for")
	case !utf8.ValidString(q.Text):
		return invalid("q must be valid UTF-8")
	case strings.ContainsRune(q.Text, 0):
		return invalid("q must not contain NUL characters")
	case len(q.Text) > MaxQueryBytes:
		return invalid("q is longer than %d bytes", MaxQueryBytes)
	case q.Limit < 0 || q.Limit > MaxLimit:
		return invalid("limit must be between 1 and %d", MaxLimit)
	case !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To):
		return invalid("from must be before to")
	}
	if q.Cursor != "" {
		if _, err := decodeCursor(q.Cursor, q.fingerprint()); err != nil {
			return err
		}
	}
	return nil
}

// Segment is a piece of a snippet: the message's own text, unescaped, and whether it is
// a match of the query. Clients render it as text (never as markup) and mark the matches.
type Segment struct {
	Text  string `json:"text"`
	Match bool   `json:"match,omitempty"`
}

// Hit is one message found.
type Hit struct {
	Room       string     `json:"room"`
	RoomName   string     `json:"room_name"`
	RoomKind   string     `json:"room_kind"` // room or dm
	Seq        int64      `json:"seq"`
	Sender     string     `json:"sender"` // user id
	SenderName string     `json:"sender_name"`
	SentAt     time.Time  `json:"sent_at"`
	EditedAt   *time.Time `json:"edited_at,omitempty"`
	Rank       float32    `json:"rank"`
	// Snippet is the message's text around its first match, matches marked; "…" stands
	// for text left out at either end.
	Snippet []Segment `json:"snippet"`
}

// Page is one page of hits, best first (rank, then newest). NextCursor is set when there
// may be more.
type Page struct {
	Hits       []Hit  `json:"hits"`
	NextCursor string `json:"next_cursor,omitempty"`
	// Capped is set when the query matched more than MaxRanked messages: the hits are
	// the best ranked of the newest MaxRanked, and older matches are not reached. More
	// words or a filter narrow the query.
	Capped bool `json:"capped,omitempty"`
}

// Querier is what Search needs of the database: *pgxpool.Pool, *pgx.Conn and pgx.Tx all
// are one.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Searcher runs searches. It is safe for concurrent use if its Querier is.
type Searcher struct{ db Querier }

// New returns a Searcher on db.
func New(db Querier) *Searcher { return &Searcher{db: db} }

// Search returns one page of q's hits. Errors matching ErrInvalid are about q; others
// are the database's.
func (s *Searcher) Search(ctx context.Context, q Query) (Page, error) {
	if err := q.Validate(); err != nil {
		return Page{}, err
	}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	var after *cursor
	if q.Cursor != "" {
		c, _ := decodeCursor(q.Cursor, q.fingerprint()) // checked by Validate
		after = &c
	}
	// The rooms the user is in now, read first: as a list of ids the planner estimates
	// the rooms' share of the messages from its statistics, which it cannot for a
	// subquery, and that share decides between the query's two plans.
	var rooms []string
	rows, err := s.db.Query(ctx, `SELECT room_id FROM room_members WHERE user_id = $1`, q.UserID)
	if err == nil {
		rooms, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return Page{}, fmt.Errorf("cannot read the user's rooms: %w", err)
	}
	if q.Room != "" {
		if !slices.Contains(rooms, q.Room) {
			rooms = nil // not a member (or no such room): nothing to find, and nothing said about it
		} else {
			rooms = []string{q.Room}
		}
	}
	var page Page
	if len(rooms) > 0 {
		if page, err = s.search(ctx, q, rooms, after); err != nil {
			return Page{}, err
		}
	}
	if len(page.Hits) == 0 {
		// No hit: say so if the query had no words at all (only punctuation or
		// symbols), rather than answer an empty page as if words were searched.
		var nodes int
		if err := s.db.QueryRow(ctx, `SELECT numnode(websearch_to_tsquery('`+TextConfig+`', $1))`, q.Text).Scan(&nodes); err != nil {
			return Page{}, fmt.Errorf("cannot search: %w", err)
		}
		if nodes == 0 {
			return Page{}, invalid("q has no words to search for")
		}
		page.Hits = []Hit{}
	}
	return page, nil
}

// search runs the query on rooms.
func (s *Searcher) search(ctx context.Context, q Query, rooms []string, after *cursor) (Page, error) {
	start, stop := newMarks()
	sql, args := buildQuery(q, rooms, after, start, stop)
	// QueryExecModeExec: an unnamed statement, planned for these values every time. A
	// cached generic plan would not know how common the words are, and a plan that is
	// right for a rare word is ruinous for a common one and the other way round.
	rows, err := s.db.Query(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
	if err != nil {
		return Page{}, fmt.Errorf("cannot search: %w", err)
	}
	var (
		h            Hit
		text, marked string
		page         Page
		hasMore      bool
	)
	_, err = pgx.ForEachRow(rows, []any{&h.Room, &h.RoomName, &h.RoomKind, &h.Seq, &h.Sender, &h.SenderName,
		&h.SentAt, &h.EditedAt, &h.Rank, &text, &marked, &page.Capped}, func() error {
		if len(page.Hits) == q.Limit {
			hasMore = true // the one row past the page: there is a next page
			return nil
		}
		h.Snippet = snippet(text, marked, start, stop)
		page.Hits = append(page.Hits, h)
		h = Hit{}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("cannot search: %w", err)
	}
	if hasMore {
		last := page.Hits[len(page.Hits)-1]
		page.NextCursor = cursor{Rank: last.Rank, SentAt: last.SentAt, Room: last.Room, Seq: last.Seq}.encode(q.fingerprint())
	}
	return page, nil
}

// newMarks returns a pair of highlight markers unique to one query: ts_headline puts them
// around each match, and a stored message cannot contain them by accident or design
// (64 random bits), so splitting on them never mistakes a user's text for a mark.
func newMarks() (start, stop string) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	n := hex.EncodeToString(b)
	return "kchatS" + n, "kchatE" + n
}
