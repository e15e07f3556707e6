// The page cursor: the sort key of a page's last hit, bound to the query it came from.

package search

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// cursor is the last hit of a page in the result order (rank, sent_at, room, seq, all
// descending). Keyset paging from it is stable: a message stored meanwhile does not shift
// later pages by one (as an offset would), it is simply on a page already passed or still
// to come.
type cursor struct {
	Rank   float32
	SentAt time.Time
	Room   string
	Seq    int64
}

// fingerprint identifies the query a cursor belongs to: the words and filters, not the
// page size (a client may change that between pages). A cursor presented with another
// query is refused instead of paging that query from a foreign position.
func (q Query) fingerprint() uint32 {
	h := fnv.New32a()
	for _, s := range []string{q.UserID, q.Text, q.Room, q.Sender, stamp(q.From), stamp(q.To)} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum32()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// encode lays the cursor out as fingerprint(4) rank bits(4) sent_at µs(8) seq(8) room,
// base64url: opaque to clients, exact for the float (its bits, not a decimal rendering).
func (c cursor) encode(fp uint32) string {
	b := make([]byte, 24, 24+len(c.Room))
	binary.BigEndian.PutUint32(b[0:], fp)
	binary.BigEndian.PutUint32(b[4:], math.Float32bits(c.Rank))
	binary.BigEndian.PutUint64(b[8:], uint64(c.SentAt.UnixMicro()))
	binary.BigEndian.PutUint64(b[16:], uint64(c.Seq))
	b = append(b, c.Room...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, fp uint32) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) <= 24 || len(b) > 24+256 {
		return cursor{}, invalid("cursor is not one this API returned")
	}
	if binary.BigEndian.Uint32(b[0:]) != fp {
		return cursor{}, invalid("cursor belongs to another query: repeat the same q and filters, or start without a cursor")
	}
	c := cursor{
		Rank:   math.Float32frombits(binary.BigEndian.Uint32(b[4:])),
		SentAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[8:]))),
		Seq:    int64(binary.BigEndian.Uint64(b[16:])),
		Room:   string(b[24:]),
	}
	if math.IsNaN(float64(c.Rank)) || math.IsInf(float64(c.Rank), 0) || c.Seq < 1 || !utf8.ValidString(c.Room) || strings.ContainsRune(c.Room, 0) {
		return cursor{}, invalid("cursor is not one this API returned")
	}
	return c, nil
}
