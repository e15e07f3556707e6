package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/service"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/notification/internal/app"
)

// seedChat creates users ann, bob, cat, dan; a DM between ann and bob, one between ann and
// cat; a quiet room with all four, and a notify_all room with ann, bob and cat.
func seedChat(f *fixture) {
	f.exec(`
		INSERT INTO users (id, username, password_hash) VALUES
		  ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x'), ('u-dan', 'dan', 'x');
		INSERT INTO rooms (id, name, kind, notify_all) VALUES
		  ('dm-ab', 'ann+bob', 'dm', false), ('dm-ac', 'ann+cat', 'dm', false),
		  ('r-general', 'general', 'room', false), ('r-loud', 'loud', 'room', true);
		INSERT INTO room_members (room_id, user_id) VALUES
		  ('dm-ab', 'u-ann'), ('dm-ab', 'u-bob'), ('dm-ac', 'u-ann'), ('dm-ac', 'u-cat'),
		  ('r-general', 'u-ann'), ('r-general', 'u-bob'), ('r-general', 'u-cat'), ('r-general', 'u-dan'),
		  ('r-loud', 'u-ann'), ('r-loud', 'u-bob'), ('r-loud', 'u-cat');`)
}

// startApp runs the service in-process until the test ends and waits until it is ready.
func startApp(f *fixture, group string) *service.Admin {
	f.t.Helper()
	admin := service.NewAdmin()
	port := stacktest.FreePort(f.t)
	f.background(func(ctx context.Context) error {
		return app.Run(ctx, app.Config{
			Brokers: f.env.Brokers, Security: f.env.Security, DatabaseURL: f.dbURL, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port),
			TopicPrefix: f.names(""), Group: group, StartOffset: kafka.FirstOffset,
			PresenceExpiry: 10 * time.Second, Admin: admin,
		})
	})
	// /readyz covers Kafka, PostgreSQL and the presence view having caught up.
	stacktest.WaitHTTP(f.t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute)
	return admin
}

type row struct {
	user, room string
	seq        int64
	reason     string
}

func TestNotification_offline_recipients_outbox_and_redelivery(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	f.online("u-cat") // cat has a tab open on gw-1; everyone else is offline

	group := stacktest.UniqueName("notification-")
	admin := startApp(f, group)

	events := []event.Envelope{
		// DM to offline bob: reason dm.
		f.stored("dm-ab", 1, event.KindMessage, "u-ann", "hi bob", event.RoomKindDM, "u-ann", "u-bob"),
		// Mentions: dan is offline (mention); cat is online (nothing); ann is the sender;
		// nobody is unknown; an e-mail address is no mention; bob is not mentioned and the
		// room is quiet (nothing).
		f.stored("r-general", 1, event.KindMessage, "u-ann", "hey @cat, @dan: @ann @nobody mail bob@x.com", event.RoomKindRoom),
		// notify_all room: ann is offline (room); cat is online (nothing).
		f.stored("r-loud", 1, event.KindMessage, "u-bob", "lunch?", event.RoomKindRoom),
		// A join never notifies.
		f.stored("r-loud", 2, event.KindJoin, "u-bob", "", event.RoomKindRoom),
		// DM to online cat: nothing.
		f.stored("dm-ac", 1, event.KindMessage, "u-ann", "you there?", event.RoomKindDM, "u-ann", "u-cat"),
	}
	start := time.Now()
	f.publish(events...)
	f.waitConsumed(group, time.Minute)
	t.Logf("5 events handled in %s", time.Since(start))

	want := []row{
		{"u-ann", "r-loud", 1, event.ReasonRoom},
		{"u-bob", "dm-ab", 1, event.ReasonDM},
		{"u-dan", "r-general", 1, event.ReasonMention},
	}
	checkRows(t, f, want)
	checkOutbox(t, f, events, want)

	// Redelivery: the same envelopes again (a relay republishing after a crash), and the
	// same timeline entries under new event ids (a message.stored rebuilt by someone else).
	f.publish(events...)
	f.publish(
		f.stored("dm-ab", 1, event.KindMessage, "u-ann", "hi bob", event.RoomKindDM, "u-ann", "u-bob"),
		f.stored("r-general", 1, event.KindMessage, "u-ann", "hey @cat, @dan: @ann @nobody mail bob@x.com", event.RoomKindRoom),
		f.stored("r-loud", 1, event.KindMessage, "u-bob", "lunch?", event.RoomKindRoom),
	)
	f.waitConsumed(group, time.Minute)
	checkRows(t, f, want)
	if n := f.count(`SELECT count(*) FROM outbox`); n != len(want) {
		t.Errorf("after redelivery: %d outbox rows, want still %d", n, len(want))
	}
	// cat was online for three entries: those decisions are kept for rebuilds, once each.
	if n := f.count(`SELECT count(*) FROM notification_skips WHERE user_id = 'u-cat'`); n != 3 {
		t.Errorf("%d skip decisions for cat, want 3", n)
	}
	// Four message events + three re-minted ids; the join is not recorded.
	if n := f.count(`SELECT count(*) FROM processed_events WHERE consumer = 'notification'`); n != 7 {
		t.Errorf("inbox holds %d events, want 7", n)
	}

	metrics := map[string]float64{}
	families, err := admin.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if c := m.GetCounter(); c != nil {
				metrics[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = c.GetValue()
			}
		}
	}
	for name, v := range map[string]float64{
		"kchat_notification_created_total{reason=dm}":                    1,
		"kchat_notification_created_total{reason=mention}":               1,
		"kchat_notification_created_total{reason=room}":                  1,
		"kchat_notification_duplicates_skipped_total{kind=event}":        4, // same ids again
		"kchat_notification_duplicates_skipped_total{kind=notification}": 3, // same entries, new ids
		"kchat_notification_skipped_online_total{}":                      5, // cat, in 3 + 2 handled events
		"kchat_notification_sender_failures_total{}":                     0,
	} {
		if metrics[name] != v {
			t.Errorf("%s = %v, want %v", name, metrics[name], v)
		}
	}

	// A batch in which nobody is mentioned reads no usernames (handler.loadRooms): the
	// notify_all room still notifies its offline members, the quiet room nobody, and a
	// name-like word without "@" is no mention.
	f.publish(
		f.stored("r-loud", 3, event.KindMessage, "u-bob", "dinner?", event.RoomKindRoom),
		f.stored("r-general", 2, event.KindMessage, "u-ann", "dan, are you there", event.RoomKindRoom),
	)
	f.waitConsumed(group, time.Minute)
	checkRows(t, f, []row{want[0], {"u-ann", "r-loud", 3, event.ReasonRoom}, want[1], want[2]})
}

func checkRows(t *testing.T, f *fixture, want []row) {
	t.Helper()
	rows, err := f.pool.Query(context.Background(),
		`SELECT user_id, room_id, seq, reason FROM notifications ORDER BY user_id, room_id, seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.user, &x.room, &x.seq, &x.reason)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("notifications:\n got %v\nwant %v", got, want)
	}
}

// checkOutbox verifies one outbox row per notification, carrying a valid
// notification.created for the user-keyed notifications topic, caused by the stored event.
func checkOutbox(t *testing.T, f *fixture, causes []event.Envelope, want []row) {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `
		SELECT o.topic, o.key, o.payload, o.headers, n.id, n.user_id, n.room_id, n.seq, n.reason, n.preview
		FROM outbox o JOIN notifications n ON n.id = convert_from(o.payload, 'UTF8')::jsonb->'data'->>'notification_id'
		ORDER BY n.user_id`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var topic, key, id, user, room, reason, preview string
		var payload []byte
		var headers map[string]string
		var seq int64
		if err := rows.Scan(&topic, &key, &payload, &headers, &id, &user, &room, &seq, &reason, &preview); err != nil {
			t.Fatal(err)
		}
		n++
		if topic != f.names(topics.Notifications) || key != user {
			t.Errorf("outbox row for %s: topic %q key %q, want %q keyed by the user", id, topic, key, f.names(topics.Notifications))
		}
		e, err := event.Decode(payload)
		if err != nil {
			t.Errorf("outbox payload of %s does not decode: %v", id, err)
			continue
		}
		p, err := event.As[event.NotificationCreated](e)
		if err != nil {
			t.Errorf("outbox payload of %s: %v", id, err)
			continue
		}
		if p.NotificationID != id || p.User != user || p.RoomID != room || p.Seq != seq || p.Reason != reason || p.Preview != preview {
			t.Errorf("payload %+v does not match row %s/%s/%s/%d/%s", p, id, user, room, seq, reason)
		}
		if e.Source != "kchat/notification" || e.Subject != user {
			t.Errorf("envelope source %q subject %q", e.Source, e.Subject)
		}
		cause := slices.IndexFunc(causes, func(c event.Envelope) bool { return c.ID == e.CausationID })
		if cause < 0 || causes[cause].Subject != room || e.CorrelationID != causes[cause].ID {
			t.Errorf("notification %s: causation %q / correlation %q is not the stored event of %s", id, e.CausationID, e.CorrelationID, room)
		}
		if headers[event.HeaderID] != e.ID || headers[event.HeaderType] != event.TypeNotificationCreated {
			t.Errorf("outbox headers %v do not describe %s", headers, e.ID)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if total := f.count(`SELECT count(*) FROM outbox`); n != len(want) || total != len(want) {
		t.Errorf("%d matching outbox rows of %d, want %d", n, total, len(want))
	}
}

// TestNotification_throughput measures a quick run: events in notify_all rooms whose five
// other members are offline, i.e. five notifications (and outbox rows) per event.
func TestNotification_throughput(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	f := newFixture(t)
	const rooms, membersPerRoom, events = 12, 6, 1200
	var sql strings.Builder
	for r := range rooms {
		fmt.Fprintf(&sql, "INSERT INTO rooms (id, name, kind, notify_all) VALUES ('r%d', 'r%d', 'room', true);\n", r, r)
		for m := range membersPerRoom {
			u := fmt.Sprintf("u%d-%d", r, m)
			fmt.Fprintf(&sql, "INSERT INTO users (id, username, password_hash) VALUES ('%s', '%s', 'x');\n", u, u)
			fmt.Fprintf(&sql, "INSERT INTO room_members (room_id, user_id) VALUES ('r%d', '%s');\n", r, u)
		}
	}
	f.exec(sql.String())
	group := stacktest.UniqueName("notification-")
	startApp(f, group)
	// Warm up: the first batch also waits for the group to form.
	f.publish(f.stored("r0", 1, event.KindMessage, "u0-0", "warm up", event.RoomKindRoom))
	f.waitConsumed(group, time.Minute)

	es := make([]event.Envelope, events)
	for i := range es {
		r := i % rooms
		es[i] = f.stored(fmt.Sprintf("r%d", r), int64(2+i/rooms), event.KindMessage, fmt.Sprintf("u%d-0", r),
			fmt.Sprintf("message %d", i), event.RoomKindRoom)
	}
	start := time.Now()
	f.publish(es...)
	f.waitConsumed(group, 3*time.Minute)
	took := time.Since(start)
	created := f.count(`SELECT count(*) FROM notifications`)
	if want := (events + 1) * (membersPerRoom - 1); created != want {
		t.Errorf("%d notifications, want %d", created, want)
	}
	t.Logf("%d events -> %d notifications + outbox rows in %s: %.0f events/s, %.0f notifications/s",
		events, events*(membersPerRoom-1), took.Round(time.Millisecond),
		float64(events)/took.Seconds(), float64(events*(membersPerRoom-1))/took.Seconds())
}
