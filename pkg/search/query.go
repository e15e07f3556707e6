// The SQL of a search, built for the filters a query has: with a generic "$n IS NULL OR
// column = $n" for each, a cached generic plan could not use an index for the filters
// that are given.

package search

import (
	"strconv"
	"strings"
)

// IndexedText is the SQL of the text the index holds for the text column col: what the
// generated column messages.search is made of (00008_search.sql says why '<' and '>' are
// spaces). It has as many bytes as col, at the same places.
func IndexedText(col string) string { return "translate(" + col + ", '<>', '  ')" }

// MaxRanked bounds the matches a query ranks: the newest MaxRanked matching messages (in
// the user's rooms, after the filters) are ranked, and the pages are drawn from those.
// A query with fewer matches is ranked whole; one with more (a word in half of all
// messages) would otherwise rank every match to return twenty, hundreds of milliseconds
// on a million messages, while its best hits by rank are not better answers than recent
// ones. Page.Capped says when the cap was reached.
const MaxRanked = 5000

// buildQuery returns the SQL and arguments of one page of q (Limit+1 rows: the extra one
// says whether there is a next page) after the cursor c (nil: the first page), searching
// rooms, with the snippets' matches between start and stop.
//
// The candidates are chosen and ranked on the index columns alone; only the page's rows
// are joined for names and run through ts_headline, which re-parses the text and is the
// costly part of a row. The newest-first choice of candidates is what lets the planner
// walk messages_search_sent_at backwards when the words are common, and take the GIN
// index when they are rare. ORDER BY and the cursor's row comparison use the same
// columns in the same (descending) direction, so pages neither overlap nor skip rows; the
// cursor applies after the candidates are chosen, so every page of a query ranks the same
// candidates while no message is stored meanwhile.
func buildQuery(q Query, rooms []string, c *cursor, start, stop string) (string, []any) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	tsq := "websearch_to_tsquery('" + TextConfig + "', " + arg(q.Text) + ")"
	where := []string{
		"m.room_id = ANY(" + arg(rooms) + "::text[])",
		"m.search @@ " + tsq,
	}
	if q.Sender != "" {
		where = append(where, "m.sender = (SELECT id FROM users WHERE username = "+arg(q.Sender)+")")
	}
	if !q.From.IsZero() {
		where = append(where, "m.sent_at >= "+arg(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "m.sent_at < "+arg(q.To))
	}
	after := "true"
	if c != nil {
		after = "(r.rank, r.sent_at, r.room_id, r.seq) < (" +
			arg(c.Rank) + "::real, " + arg(c.SentAt) + "::timestamptz, " + arg(c.Room) + "::text, " + arg(c.Seq) + "::bigint)"
	}
	limit := arg(q.Limit + 1)
	opts := arg("StartSel=" + start + ", StopSel=" + stop + ", HighlightAll=true")
	sql := `WITH cand AS (
	SELECT m.room_id, m.seq, m.sent_at, m.search
	FROM messages m
	WHERE ` + strings.Join(where, "\n\t  AND ") + `
	ORDER BY m.sent_at DESC, m.room_id DESC, m.seq DESC
	LIMIT ` + strconv.Itoa(MaxRanked) + `
), ranked AS (
	SELECT room_id, seq, sent_at, ts_rank(search, ` + tsq + `) AS rank FROM cand
), hits AS (
	SELECT r.* FROM ranked r
	WHERE ` + after + `
	ORDER BY r.rank DESC, r.sent_at DESC, r.room_id DESC, r.seq DESC
	LIMIT ` + limit + `
)
SELECT h.room_id, ro.name, ro.kind, h.seq, m.sender, m.sender_name, h.sent_at, m.edited_at, h.rank,
	m.text, ts_headline('` + TextConfig + `', ` + IndexedText("m.text") + `, ` + tsq + `, ` + opts + `),
	(SELECT count(*) FROM cand) >= ` + strconv.Itoa(MaxRanked) + `
FROM hits h
JOIN messages m ON m.room_id = h.room_id AND m.seq = h.seq
JOIN rooms ro ON ro.id = h.room_id
ORDER BY h.rank DESC, h.sent_at DESC, h.room_id DESC, h.seq DESC`
	return sql, args
}
