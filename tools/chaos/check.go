package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Counts is what the checker found. The fields above the line must be zero; the rest
// describe the run.
type Counts struct {
	Lost            int `json:"acked_lost"`              // acknowledged, not in the database
	StoredTwice     int `json:"stored_twice"`            // one send stored under two seqs
	SeqGaps         int `json:"seq_gaps"`                // holes in a room's seq, or last_seq disagreeing
	Reordered       int `json:"reordered"`               // a client saw a room out of order, or a seq with other content than stored
	NonMember       int `json:"delivered_to_non_member"` // entries shown to someone outside the room
	MissingDelivery int `json:"deliveries_missing"`      // stored entries a subscribed client never got
	ShownDupes      int `json:"duplicates_shown"`        // one message shown twice (after the seq dedupe)
	NotifMissing    int `json:"notifications_missing"`
	NotifDuplicated int `json:"notifications_duplicated"`
	NotifSpurious   int `json:"notifications_unexpected"` // for an offline member, about something that does not notify
	Unacked         int `json:"unacked_at_end"`           // sends still unacknowledged after the drain
	// ----
	Sends          int `json:"sends"`
	Acked          int `json:"acked"`
	AckedDuplicate int `json:"acked_as_duplicate"` // answered from the database: a retry of a stored send
	Writes         int `json:"writes"`             // send frames written, retries included
	Stored         int `json:"stored_messages"`
	Deliveries     int `json:"deliveries"`
	RawDupes       int `json:"raw_duplicate_frames"` // dropped by the client's seq dedupe
	ClientGaps     int `json:"client_gaps"`          // frames past cursor+1 (also counted in Reordered)
	Unrecovered    int `json:"subscriptions_not_recovered"`
	Reconnects     int `json:"reconnects"`
	Errors         int `json:"error_frames"`
	Notifications  int `json:"notifications_stored"`
	ExpectedNotifs int `json:"notifications_expected"`
}

// Zero reports whether every must-be-zero count is zero.
func (c Counts) Zero() bool {
	return c.Lost == 0 && c.StoredTwice == 0 && c.SeqGaps == 0 && c.Reordered == 0 && c.NonMember == 0 &&
		c.MissingDelivery == 0 && c.ShownDupes == 0 && c.NotifMissing == 0 && c.NotifDuplicated == 0 &&
		c.NotifSpurious == 0 && c.Unacked == 0
}

type storedMsg struct {
	room    string
	seq     int64
	eventID string
	kind    string
	sender  string
	cmid    string
	text    string
}

// dbState is what the checker reads from PostgreSQL.
type dbState struct {
	lastSeq  map[string]int64
	kind     map[string]string
	members  map[string]map[string]bool // room -> user id
	msgs     map[string][]storedMsg     // room -> by seq
	byCMID   map[string][]storedMsg     // room|sender|cmid
	userID   map[string]string          // username -> id
	notifs   []notifRow
	byMarker map[string]int // text marker ("<cmid> from") -> rows
}

type notifRow struct {
	user, room, reason string
	seq                int64
}

func readDB(ctx context.Context, dbURL string) (*dbState, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	st := &dbState{lastSeq: map[string]int64{}, kind: map[string]string{}, members: map[string]map[string]bool{},
		msgs: map[string][]storedMsg{}, byCMID: map[string][]storedMsg{}, userID: map[string]string{}, byMarker: map[string]int{}}
	rows, _ := conn.Query(ctx, `SELECT id, kind, last_seq FROM rooms`)
	var id, kind string
	var last int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &kind, &last}, func() error {
		st.lastSeq[id], st.kind[id] = last, kind
		return nil
	}); err != nil {
		return nil, err
	}
	var room, user string
	rows, _ = conn.Query(ctx, `SELECT room_id, user_id FROM room_members`)
	if _, err := pgx.ForEachRow(rows, []any{&room, &user}, func() error {
		if st.members[room] == nil {
			st.members[room] = map[string]bool{}
		}
		st.members[room][user] = true
		return nil
	}); err != nil {
		return nil, err
	}
	var name string
	rows, _ = conn.Query(ctx, `SELECT username, id FROM users`)
	if _, err := pgx.ForEachRow(rows, []any{&name, &id}, func() error { st.userID[name] = id; return nil }); err != nil {
		return nil, err
	}
	var m storedMsg
	var cmid, text *string
	rows, _ = conn.Query(ctx, `SELECT room_id, seq, event_id, kind, sender, client_msg_id, text FROM messages ORDER BY room_id, seq`)
	if _, err := pgx.ForEachRow(rows, []any{&m.room, &m.seq, &m.eventID, &m.kind, &m.sender, &cmid, &text}, func() error {
		mm := m
		if cmid != nil {
			mm.cmid = *cmid
		}
		if text != nil {
			mm.text = *text
		}
		st.msgs[mm.room] = append(st.msgs[mm.room], mm)
		if mm.cmid != "" {
			k := mm.room + "|" + mm.sender + "|" + mm.cmid
			st.byCMID[k] = append(st.byCMID[k], mm)
		}
		if f := strings.Fields(mm.text); len(f) >= 3 && f[2] == "from" {
			st.byMarker[f[1]]++ // "msg <cmid> from <user>" / "dm <cmid> from <user>"
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var n notifRow
	rows, _ = conn.Query(ctx, `SELECT user_id, room_id, seq, reason FROM notifications`)
	if _, err := pgx.ForEachRow(rows, []any{&n.user, &n.room, &n.seq, &n.reason}, func() error {
		st.notifs = append(st.notifs, n)
		return nil
	}); err != nil {
		return nil, err
	}
	return st, nil
}

// Check reads the database and judges the history. problems lists the first few
// findings of each kind, for the test log.
func Check(ctx context.Context, dbURL string, ops []Op, pop *Population) (Counts, []string, error) {
	st, err := readDB(ctx, dbURL)
	if err != nil {
		return Counts{}, nil, err
	}
	var c Counts
	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 40 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	ourRooms := map[string]bool{}
	for _, rs := range pop.Members {
		for _, r := range rs {
			ourRooms[r] = true
		}
	}
	dmOf := map[string]string{} // "user|to" -> room
	for k, room := range pop.DMs {
		a, b, _ := strings.Cut(k, "|")
		dmOf[a+"|"+b], dmOf[b+"|"+a] = room, room
	}

	// 1. Sends: every acknowledged send is stored exactly once.
	type sendInfo struct {
		user, room string
		acked      bool
	}
	sends := map[string]*sendInfo{}
	for _, op := range ops {
		switch op.Kind {
		case OpSend:
			room := op.Room
			if op.To != "" {
				room = dmOf[op.User+"|"+op.To]
			}
			sends[op.CMID] = &sendInfo{user: op.User, room: room}
			c.Sends++
		case OpWrite:
			c.Writes++
		case OpAck:
			s := sends[op.CMID]
			if s == nil {
				report("ack for unknown send %s", op.CMID)
				continue
			}
			if op.Room != s.room {
				report("send %s to %s acknowledged for room %s", op.CMID, s.room, op.Room)
			}
			if !s.acked {
				c.Acked++
				if op.Status == "duplicate" {
					c.AckedDuplicate++
				}
			}
			s.acked = true
		case OpError:
			c.Errors++
		case OpConnect:
			if op.Conn > 1 {
				c.Reconnects++
			}
		case OpSubscribed:
			c.Unrecovered++
		}
	}
	for cmid, s := range sends {
		rows := st.byCMID[s.room+"|"+st.userID[s.user]+"|"+cmid]
		switch {
		case len(rows) > 1:
			c.StoredTwice++
			report("send %s stored %d times", cmid, len(rows))
		case len(rows) == 0 && s.acked:
			c.Lost++
			report("send %s by %s to %s acknowledged but not stored", cmid, s.user, s.room)
		}
		if st.byMarker[cmid] > 1 && len(rows) <= 1 {
			c.StoredTwice++
			report("text of %s stored %d times", cmid, st.byMarker[cmid])
		}
		if !s.acked {
			c.Unacked++
			report("send %s by %s never acknowledged", cmid, s.user)
		}
	}

	// 2. Rooms: gap-free seqs that agree with rooms.last_seq.
	for room := range ourRooms {
		ms := st.msgs[room]
		for i, m := range ms {
			if m.seq != int64(i+1) {
				c.SeqGaps++
				report("room %s: entry %d has seq %d", room, i+1, m.seq)
				break
			}
		}
		if n := int64(len(ms)); n != st.lastSeq[room] {
			c.SeqGaps++
			report("room %s: %d entries, last_seq %d", room, n, st.lastSeq[room])
		}
		for _, m := range ms {
			if m.kind == "message" && m.cmid != "" {
				c.Stored++
			}
		}
	}

	// 3. Deliveries, per user: members only, in order, all of them, each once.
	type seen struct {
		seqs map[int64]bool
		ids  map[string]int64
	}
	perUser := map[string]map[string]*seen{}
	for _, op := range ops {
		switch op.Kind {
		case OpDup:
			c.RawDupes++
		case OpGap:
			c.ClientGaps++
			c.Reordered++
			report("%s: room %s jumped to seq %d (%s)", op.User, op.Room, op.Seq, op.Note)
		case OpDeliver:
			c.Deliveries++
			uid := st.userID[op.User]
			if !st.members[op.Room][uid] {
				c.NonMember++
				report("%s got %s/%d but is not a member", op.User, op.Room, op.Seq)
			}
			ms := st.msgs[op.Room]
			if op.Seq < 1 || op.Seq > int64(len(ms)) || ms[op.Seq-1].eventID != op.MsgID {
				c.Reordered++
				report("%s got %s/%d as %s, stored differently", op.User, op.Room, op.Seq, op.MsgID)
			}
			if perUser[op.User] == nil {
				perUser[op.User] = map[string]*seen{}
			}
			s := perUser[op.User][op.Room]
			if s == nil {
				s = &seen{seqs: map[int64]bool{}, ids: map[string]int64{}}
				perUser[op.User][op.Room] = s
			}
			if prev, ok := s.ids[op.MsgID]; ok && prev != op.Seq {
				c.ShownDupes++
				report("%s was shown message %s twice (seq %d and %d)", op.User, op.MsgID, prev, op.Seq)
			}
			if s.seqs[op.Seq] {
				c.ShownDupes++ // the client's dedupe failed
			}
			s.seqs[op.Seq], s.ids[op.MsgID] = true, op.Seq
		}
	}
	for _, u := range pop.Online {
		for _, room := range u.Rooms {
			got := perUser[u.Name][room]
			for _, m := range st.msgs[room] {
				if got == nil || !got.seqs[m.seq] {
					c.MissingDelivery++
					report("%s never got %s/%d", u.Name, room, m.seq)
				}
			}
		}
	}

	// 4. Notifications. Offline members must get exactly one per DM message and per
	// mention; online members may get some (presence is judged when the message is
	// handled), never two for one entry.
	offline := map[string]string{} // id -> name
	for _, a := range pop.Offline {
		offline[st.userID[a.Name]] = a.Name
	}
	expected := map[string]bool{} // user|room|seq|reason
	for room := range ourRooms {
		for _, m := range st.msgs[room] {
			if m.kind != "message" {
				continue
			}
			for uid, name := range offline {
				if !st.members[room][uid] || uid == m.sender {
					continue
				}
				switch {
				case st.kind[room] == "dm":
					expected[fmt.Sprintf("%s|%s|%d|dm", uid, room, m.seq)] = true
				case strings.Contains(" "+m.text+" ", " @"+name+" "):
					expected[fmt.Sprintf("%s|%s|%d|mention", uid, room, m.seq)] = true
				}
			}
		}
	}
	c.ExpectedNotifs = len(expected)
	perEntry := map[string]int{}
	found := map[string]bool{}
	for _, n := range st.notifs {
		if !ourRooms[n.room] {
			continue
		}
		c.Notifications++
		k := fmt.Sprintf("%s|%s|%d", n.user, n.room, n.seq)
		perEntry[k]++
		if perEntry[k] == 2 {
			c.NotifDuplicated++
			report("notification for %s duplicated", k)
		}
		full := k + "|" + n.reason
		if expected[full] {
			found[full] = true
		} else if _, off := offline[n.user]; off {
			c.NotifSpurious++
			report("unexpected notification %s", full)
		}
	}
	for k := range expected {
		if !found[k] {
			c.NotifMissing++
			report("notification %s missing", k)
		}
	}
	slices.Sort(problems)
	return c, problems, nil
}

// Recovery is, for one injected fault, how long until the platform worked again: the
// first acknowledgement, and the first delivery, of a send made after the fault began.
// Both see partial service (partitions that the fault did not touch keep working), so
// the worst latencies of the sends made while the fault lasted, up to the next fault, are
// kept too: the ack stall (send to ack) and the delivery stall (send to the first copy
// shown to any recipient).
type Recovery struct {
	Fault         string        `json:"fault"`
	Target        string        `json:"target"`
	At            time.Duration `json:"at"`
	Ack           time.Duration `json:"ack_recovery"`
	Delivery      time.Duration `json:"delivery_recovery"`
	WorstAck      time.Duration `json:"worst_ack_latency"`
	WorstDelivery time.Duration `json:"worst_delivery_latency"`
}

// Recoveries measures each fault in ops.
func Recoveries(ops []Op) []Recovery {
	sentAt := map[string]time.Duration{}
	var faults []Op
	for _, op := range ops {
		switch op.Kind {
		case OpSend:
			sentAt[op.CMID] = op.T
		case OpFault:
			faults = append(faults, op)
		}
	}
	var out []Recovery
	for i, f := range faults {
		end := time.Duration(1<<62 - 1)
		if i+1 < len(faults) {
			end = faults[i+1].T
		}
		r := Recovery{Fault: f.Note, Target: f.Gw, At: f.T, Ack: -1, Delivery: -1}
		acked, shown := map[string]bool{}, map[string]bool{}
		for _, op := range ops {
			if op.T < f.T || (op.Kind != OpAck && op.Kind != OpDeliver) {
				continue
			}
			t, ok := sentAt[op.CMID]
			if !ok || t < f.T {
				continue
			}
			lat := op.T - t
			switch {
			case op.Kind == OpAck && !acked[op.CMID]:
				acked[op.CMID] = true
				if r.Ack < 0 {
					r.Ack = op.T - f.T
				}
				if t < end {
					r.WorstAck = max(r.WorstAck, lat)
				}
			case op.Kind == OpDeliver && !shown[op.CMID]:
				shown[op.CMID] = true
				if r.Delivery < 0 {
					r.Delivery = op.T - f.T
				}
				if t < end {
					r.WorstDelivery = max(r.WorstDelivery, lat)
				}
			}
		}
		out = append(out, r)
	}
	return out
}
