package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/search"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// The search scenario measures full-text search (pkg/search, what GET /api/search runs)
// on a database of its own holding plan.SearchMessages stored messages (issue 16: at least
// a million, p99 of a typical query at most 100 ms on this machine). The database is built
// with COPY, not through the platform: the figure is the query's, and pushing a million
// messages through Kafka and persistence would take most of an hour here.

// searchP99Limit is the target of every query kind, in ms.
const searchP99Limit = 100

// The room set: searchRooms rooms (searchDMs of them DMs between two users) and
// searchUsers users. Each user is in 5-40 public rooms, picked with the rooms' traffic
// as weights (busy rooms have more members), and in the DMs drawn for them.
const (
	searchUsers = 500
	searchRooms = 200
	searchDMs   = 50
	// searchVocab words; their frequency follows Zipf's law (s = 1.1), as word frequency
	// in written and chat text roughly does. The most frequent are real English words.
	searchVocab = 30_000
	// searchSearchers are the users whose rooms are searched, in turn.
	searchSearchers = 20
)

// commonWords are the vocabulary's top ranks, most frequent first.
var commonWords = strings.Fields(`the to i you a and it is that of in for on me this be
have we but not do so just can what my with are was your if at no all get like know
think it's don't will yeah ok one about up out there good now go how time people when
did see would really then want need they got today more also back work going because
sure thanks lol right here make well let some yes still any from could why new build
deploy release test review merge fix issue meeting tomorrow morning team service server
branch ticket error failed broken config logs check update please send call later`)

// searchPhrases are sentences people repeat; one is in about 2% of the messages, so that
// a phrase query finds what it would in a team's chat.
var searchPhrases = []string{"build failed again", "see you tomorrow", "merge request is ready",
	"the release notes", "out of office", "production is down", "can you review"}

// searchQueryKinds are the queries measured, each without and with a room filter (the
// busiest room of the searching user). The words are the vocabulary's by rank, so that
// their frequency is known from the law the text follows.
var searchQueryKinds = []struct{ name, text, what string }{
	{"very common word", "the", "rank 1: in about half of all messages (kept by the 'simple' configuration)"},
	{"common word", "deploy", "rank 89: in about 1% of messages"},
	{"rare word", "", "rank 5000 of the synthetic vocabulary (500 below 500k messages): a few hundred messages"},
	{"phrase", `"build failed"`, "a phrase of three everyday words, in ~0.3% of messages"},
	{"two words", "good time", "two common words (ranks ~50), both required"},
}

// vocabWord returns the word of rank i (0-based): a common word, or a made-up one of two
// or more syllables whose spelling encodes i (so every rank has its own word).
func vocabWord(i int) string {
	if i < len(commonWords) {
		return commonWords[i]
	}
	const cons, vows = "bdfgklmnprstvz", "aeiou"
	n := i + 70 // at least two syllables
	var b strings.Builder
	for n > 0 {
		s := n % (len(cons) * len(vows))
		b.WriteByte(cons[s/len(vows)])
		b.WriteByte(vows[s%len(vows)])
		n /= len(cons) * len(vows)
	}
	return b.String()
}

// searchCorpus is the generated room set.
type searchCorpus struct {
	users     []string            // ids
	rooms     []string            // ids; the first searchRooms-searchDMs are public
	weights   []float64           // traffic share of each room
	members   map[string][]string // room → user ids
	userRooms map[string][]string // user → room ids
}

func newSearchCorpus(rng *rand.Rand) *searchCorpus {
	c := &searchCorpus{members: map[string][]string{}, userRooms: map[string][]string{}}
	for i := range searchUsers {
		c.users = append(c.users, fmt.Sprintf("su%04d", i+1))
	}
	public := searchRooms - searchDMs
	total := 0.0
	for i := range searchRooms {
		id := ""
		if i < public {
			id = fmt.Sprintf("room-%03d", i+1)
		}
		// Traffic: a few busy rooms, a long quiet tail (Zipf-like, s = 0.8); DMs are
		// each as busy as a middling room.
		w := 1 / math.Pow(float64(i+1), 0.8)
		if i >= public {
			for id == "" || c.members[id] != nil { // a pair drawn twice is drawn again
				id = fmt.Sprintf("dm:%s:%s", c.users[rng.IntN(searchUsers/2)], c.users[searchUsers/2+rng.IntN(searchUsers/2)])
			}
			w = 1 / math.Pow(float64(public/2), 0.8)
			a, b, _ := strings.Cut(strings.TrimPrefix(id, "dm:"), ":")
			c.join(id, a)
			c.join(id, b)
		}
		c.rooms = append(c.rooms, id)
		c.weights = append(c.weights, w)
		total += w
	}
	for i := range c.weights {
		c.weights[i] /= total
	}
	for _, u := range c.users {
		n := 5 + rng.IntN(36)
		for range n * 3 { // draws with repeats; stops at n distinct rooms
			if len(c.userRooms[u]) >= n {
				break
			}
			r := c.pick(rng, public)
			if !contains(c.members[c.rooms[r]], u) {
				c.join(c.rooms[r], u)
			}
		}
	}
	for _, r := range c.rooms {
		if len(c.members[r]) == 0 { // every room has someone to send in it
			c.join(r, c.users[rng.IntN(searchUsers)])
		}
	}
	return c
}

func (c *searchCorpus) join(room, user string) {
	c.members[room] = append(c.members[room], user)
	c.userRooms[user] = append(c.userRooms[user], room)
}

// pick draws a room index below n by traffic weight.
func (c *searchCorpus) pick(rng *rand.Rand, n int) int {
	sum := 0.0
	for i := range n {
		sum += c.weights[i]
	}
	x := rng.Float64() * sum
	for i := range n {
		x -= c.weights[i]
		if x <= 0 {
			return i
		}
	}
	return n - 1
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// searchMessage writes message i's text: 1-40 words (most 3-15) drawn from the Zipf
// vocabulary, sometimes with one of the repeated phrases.
func searchMessage(rng *rand.Rand, zipf *rand.Zipf, b *strings.Builder) string {
	b.Reset()
	n := 1 + int(rng.ExpFloat64()*8)
	n = min(n, 40)
	phraseAt := -1
	if rng.IntN(50) == 0 {
		phraseAt = rng.IntN(n)
	}
	for w := range n {
		if w > 0 {
			b.WriteByte(' ')
		}
		if w == phraseAt {
			b.WriteString(searchPhrases[rng.IntN(len(searchPhrases))])
			continue
		}
		b.WriteString(vocabWord(int(zipf.Uint64())))
	}
	return b.String()
}

// scenarioSearch: build the database, then run every query kind as the searchers in
// turn, one query at a time, and report p50/p99 per kind.
func (b *Bench) scenarioSearch(ctx context.Context, sc *report.Scenario) error {
	n := b.plan.SearchMessages
	dbURL, dropDB, err := b.freshDB(ctx, "bench_"+b.run+"_search")
	if err != nil {
		return err
	}
	defer dropDB()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rng := rand.New(rand.NewPCG(16, 8))
	corpus := newSearchCorpus(rng)
	build, err := buildSearchDB(ctx, conn, corpus, rng, n)
	if err != nil {
		return err
	}
	sc.Data["build"] = build
	b.log.Info("search: database built", "messages", n, "seconds", build["total_s"])

	// The searchers: users in about as many rooms as the average, with one busy room.
	searchers := corpus.users[:searchSearchers]
	s := search.New(conn)
	// The rare word: rank 5000 occurs a few hundred times in a million messages, and
	// maybe never in the smoke run's few thousand, where rank 500 stands in for it.
	rareRank := 5000
	if n < 500_000 {
		rareRank = 500
	}
	rare := vocabWord(rareRank)
	kinds := map[string]map[string]any{}
	var figs []harness.Figure
	var worst float64
	for _, k := range searchQueryKinds {
		text := k.text
		if text == "" {
			text = rare
		}
		for _, filtered := range []bool{false, true} {
			name := k.name
			if filtered {
				name += ", one room"
			}
			query := func(i int) search.Query {
				u := searchers[i%len(searchers)]
				q := search.Query{UserID: u, Text: text}
				if filtered {
					q.Room = busiest(corpus, u)
				}
				return q
			}
			// Warm-up: the first queries of a kind read its index pages from disk.
			for i := range len(searchers) {
				if _, err := s.Search(ctx, query(i)); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			rec := harness.NewRecorder()
			var hits, full int
			for i := range b.plan.SearchQueries {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t0 := time.Now()
				p, err := s.Search(ctx, query(i))
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				rec.Record(t0, time.Now())
				hits += len(p.Hits)
				if p.NextCursor != "" {
					full++
				}
			}
			sum := rec.Summary()
			if hits == 0 {
				return fmt.Errorf("%s (%q) found nothing in %d queries: the corpus or the query is broken", name, text, b.plan.SearchQueries)
			}
			kinds[name] = map[string]any{"q": text, "what": k.what, "latency": sum,
				"mean_hits": harness.Round(float64(hits) / float64(b.plan.SearchQueries)), "pages_with_more": full}
			f := harness.NewFigure("search", "search p99, "+name, "ms", sum.P99Ms, "", nil,
				harness.Target{Kind: harness.ValueAtMost, Limit: searchP99Limit})
			f.Note = fmt.Sprintf("q=%s; p50 %.1f ms, max %.1f ms over %d queries; %s", text, sum.P50Ms, sum.MaxMs, sum.Count, k.what)
			figs = append(figs, f)
			worst = max(worst, sum.P99Ms)
			b.log.Info("search", "kind", name, "q", text, "p50_ms", sum.P50Ms, "p99_ms", sum.P99Ms, "mean_hits", kinds[name]["mean_hits"])
		}
	}
	sc.Data["queries"] = kinds
	fb := harness.NewFigure("search", fmt.Sprintf("build %d messages (COPY, GIN index, ANALYZE)", n), "s", build["total_s"].(float64), "", nil)
	fb.Note = fmt.Sprintf("copy %.1f s, index %.1f s, vacuum analyze %.1f s", build["copy_s"], build["index_s"], build["analyze_s"])
	b.add(append(figs, fb)...)
	var rooms []int
	for _, u := range searchers {
		rooms = append(rooms, len(corpus.userRooms[u]))
	}
	sc.Config = map[string]any{
		"messages": n, "rooms": searchRooms, "dms": searchDMs, "users": searchUsers, "vocabulary": searchVocab,
		"zipf_s": 1.1, "words_per_message": "1 + Exp(mean 8), at most 40", "phrase_share": 0.02,
		"searchers": len(searchers), "searcher_rooms": rooms, "queries_per_kind": b.plan.SearchQueries,
		"page": search.DefaultLimit, "config": search.TextConfig,
		"method": "one query at a time through pkg/search on one connection, first page, searchers in turn; " +
			"after a warm-up of one query per searcher",
	}
	b.log.Info("search done", "worst_p99_ms", worst)
	return nil
}

// busiest is the room of u with the most traffic (the corpus lists rooms busiest first).
func busiest(c *searchCorpus, u string) string {
	best := ""
	for _, r := range c.userRooms[u] {
		if best == "" || index(c.rooms, r) < index(c.rooms, best) {
			best = r
		}
	}
	return best
}

func index(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

// buildSearchDB writes the users, rooms, memberships and n messages. The GIN index is
// dropped for the COPY and built after it, as a bulk load would be done (and ten times
// faster than maintaining it row by row); its definition is read back from the database,
// so it is the migration's. VACUUM ANALYZE leaves statistics and the visibility map as a
// long-running database has them.
func buildSearchDB(ctx context.Context, conn *pgx.Conn, c *searchCorpus, rng *rand.Rand, n int) (map[string]any, error) {
	t0 := time.Now()
	if _, err := conn.Exec(ctx, `INSERT INTO users (id, username, password_hash)
		SELECT id, id, '!bench-no-login' FROM unnest($1::text[]) id`, c.users); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	var rrows, mrows [][]any
	for _, r := range c.rooms {
		kind := "room"
		if strings.HasPrefix(r, "dm:") {
			kind = "dm"
		}
		rrows = append(rrows, []any{r, r, kind})
		for _, u := range c.members[r] {
			mrows = append(mrows, []any{r, u})
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"rooms"}, []string{"id", "name", "kind"}, pgx.CopyFromRows(rrows)); err != nil {
		return nil, fmt.Errorf("rooms: %w", err)
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"room_members"}, []string{"room_id", "user_id"}, pgx.CopyFromRows(mrows)); err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	var indexDef string
	if err := conn.QueryRow(ctx, `SELECT pg_get_indexdef('messages_search'::regclass)`).Scan(&indexDef); err != nil {
		return nil, fmt.Errorf("read the search index: %w", err)
	}
	if _, err := conn.Exec(ctx, `DROP INDEX messages_search`); err != nil {
		return nil, err
	}
	zipf := rand.NewZipf(rng, 1.1, 1, searchVocab-1)
	seqs := make([]int64, len(c.rooms))
	start := time.Now().Add(-365 * 24 * time.Hour)
	step := 365 * 24 * time.Hour / time.Duration(max(n, 1))
	var sb strings.Builder
	i := 0
	tCopy := time.Now()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"messages"},
		[]string{"room_id", "seq", "event_id", "kind", "sender", "sender_name", "text", "sent_at", "stored_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			r := c.pick(rng, len(c.rooms))
			seqs[r]++
			ms := c.members[c.rooms[r]]
			sender := ms[rng.IntN(len(ms))]
			at := start.Add(time.Duration(i) * step)
			i++
			return []any{c.rooms[r], seqs[r], "se" + strconv.Itoa(i), "message", sender, sender,
				searchMessage(rng, zipf, &sb), at, at}, nil
		})); err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	copyS := time.Since(tCopy).Seconds()
	if _, err := conn.Exec(ctx, `UPDATE rooms SET last_seq = s.n FROM unnest($1::text[], $2::bigint[]) AS s(id, n) WHERE rooms.id = s.id`,
		c.rooms, seqs); err != nil {
		return nil, err
	}
	tIdx := time.Now()
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '256MB'`); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, indexDef); err != nil {
		return nil, fmt.Errorf("build the search index: %w", err)
	}
	idxS := time.Since(tIdx).Seconds()
	tAn := time.Now()
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE users, rooms, room_members, messages`); err != nil {
		return nil, err
	}
	anS := time.Since(tAn).Seconds()
	var tableMB, indexMB float64
	if err := conn.QueryRow(ctx, `SELECT pg_table_size('messages') / 1048576.0, pg_relation_size('messages_search') / 1048576.0`).
		Scan(&tableMB, &indexMB); err != nil {
		return nil, err
	}
	if i != n {
		return nil, errors.New("messages: the COPY stopped early")
	}
	return map[string]any{"total_s": harness.Round(time.Since(t0).Seconds()), "copy_s": harness.Round(copyS),
		"index_s": harness.Round(idxS), "analyze_s": harness.Round(anS), "rows_per_s": harness.Round(float64(n) / copyS),
		"table_mb": harness.Round(tableMB), "gin_index_mb": harness.Round(indexMB)}, nil
}
