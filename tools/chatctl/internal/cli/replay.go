package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/rebuild"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/logread"
)

// replayed is one event of a room's replay, as -json prints it.
type replayed struct {
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	Timestamp time.Time       `json:"timestamp"`
	Event     json.RawMessage `json:"event"`
}

// runReplay prints (and optionally re-emits) one room's stored events from an offset or a
// time. A room's events all live in one partition of chat.stored, the one the producer's
// Murmur2 balancer picks for the room key, so only that partition is read; other rooms
// sharing it are skipped by key.
func runReplay(ctx context.Context, a *app, args []string) error {
	fs := a.newFlagSet("replay", "replay -room R (-since RFC3339 | -offset N) [-until RFC3339] [-reemit topic] [-json] [-brokers list] [-topic-prefix p]")
	brokers := a.brokersFlag(fs)
	prefix := fs.String("topic-prefix", a.env.Getenv("TOPIC_PREFIX"), "prefix of every topic name (env TOPIC_PREFIX)")
	room := fs.String("room", "", "the room whose events to replay (required)")
	since := fs.String("since", "", "replay events stored at or after this time (RFC 3339); looked up with ListOffsets by timestamp")
	offset := fs.Int64("offset", -1, "replay from this offset of the room's partition instead")
	until := fs.String("until", "", "stop at events stored after this time (RFC 3339; default: the end of the log at start)")
	reemit := fs.String("reemit", "", "also publish the events, unchanged and keyed by room, to this topic (must exist; not chat.stored itself)")
	asJSON := fs.Bool("json", false, "print one JSON object per event (partition, offset, timestamp, event)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *room == "" {
		return usagef("-room is required")
	}
	if (*since == "") == (*offset < 0) {
		return usagef("give exactly one of -since and -offset")
	}
	var from, to time.Time
	var err error
	if *since != "" {
		if from, err = time.Parse(time.RFC3339, *since); err != nil {
			return usagef("-since: %v", err)
		}
	}
	if *until != "" {
		if to, err = time.Parse(time.RFC3339, *until); err != nil {
			return usagef("-until: %v", err)
		}
	}
	names := topics.Names{Prefix: *prefix}
	topic := names.Of(topics.Stored)
	if *reemit == topic || *reemit == topics.Stored {
		return usagef("-reemit must name another topic: re-emitting into chat.stored would duplicate the room's timeline")
	}
	client, err := a.kafkaClient(*brokers, *timeout)
	if err != nil {
		return err
	}
	n, err := logread.Partitions(ctx, client, topic)
	if err != nil {
		return err
	}
	// The room key's partition, as kafka-go's Murmur2Balancer (and Java's default
	// partitioner) computes it: route.PartitionFor is that hash for any key.
	part := route.PartitionFor(*room, n)
	first, end, err := logread.Bounds(ctx, client, topic, part)
	if err != nil {
		return err
	}
	start := *offset
	if *since != "" {
		off, found, err := logread.OffsetForTime(ctx, client, topic, part, from)
		if err != nil {
			return err
		}
		start = end
		if found {
			start = off
		}
	}
	if start < first {
		a.logger.Warn("offset is before the log start (retention); starting there", "offset", start, "log_start", first)
		start = first
	}
	a.logger.Info("replaying", "room", *room, "topic", topic, "partition", part, "from_offset", start, "to_offset", end)

	var prod *producer.Producer
	if *reemit != "" {
		sec, err := a.kafkaSecurity()
		if err != nil {
			return err
		}
		if prod, err = producer.New(producer.Config{Brokers: splitList(*brokers), Logger: a.logger, Security: sec}); err != nil {
			return err
		}
		defer prod.Close()
	}
	out := a.env.Stdout
	var tw *tabwriter.Writer
	if !*asJSON {
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OFFSET\tSTORED\tSEQ\tKIND\tSENDER\tTARGET\tTEXT")
	}
	count := 0
	var batch []kafka.Message
	flush := func() error {
		if prod == nil || len(batch) == 0 {
			return nil
		}
		err := prod.Write(ctx, batch...)
		batch = batch[:0]
		return err
	}
	err = logread.Read(ctx, client, topic, part, start, end, func(r logread.Record) error {
		if string(r.Key) != *room {
			return nil
		}
		if !to.IsZero() && r.Time.After(to) {
			return nil
		}
		count++
		if *asJSON {
			b, err := json.Marshal(replayed{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Time.UTC(), Event: json.RawMessage(r.Value)})
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
		} else {
			printReplayed(tw, r)
		}
		if prod != nil {
			batch = append(batch, kafka.Message{Topic: *reemit, Key: r.Key, Value: r.Value, Headers: r.Headers})
			if len(batch) >= 500 {
				return flush()
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if tw != nil {
		_ = tw.Flush()
	}
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%d events of room %s (partition %d, offsets %d..%d)", count, *room, part, start, end)
	if prod != nil {
		msg += " re-emitted to " + *reemit
	}
	a.logger.Info(msg)
	return nil
}

func printReplayed(w io.Writer, r logread.Record) {
	e, err := event.Decode(r.Value)
	if err != nil {
		fmt.Fprintf(w, "%d\t%s\t-\t-\t-\t-\tundecodable: %v\n", r.Offset, r.Time.UTC().Format(time.RFC3339Nano), err)
		return
	}
	m, err := event.As[event.MessageStored](e)
	if err != nil {
		fmt.Fprintf(w, "%d\t%s\t-\t%s\t-\t-\t\n", r.Offset, r.Time.UTC().Format(time.RFC3339Nano), e.Type)
		return
	}
	target := "-"
	if m.TargetSeq > 0 {
		target = fmt.Sprint(m.TargetSeq)
	}
	text := strings.ReplaceAll(m.Text, "\n", `\n`)
	fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Offset, m.StoredAt.UTC().Format(time.RFC3339Nano), m.Seq, m.Kind, m.SenderName, target, text)
}

// runRebuild rebuilds a read model from the log. Only the notifications model exists:
// unread counts are computed from the timeline and the read markers when asked, and read
// markers are set by clients, not derived from the log, so there is nothing to rebuild.
func runRebuild(ctx context.Context, a *app, args []string) error {
	_, rest, err := subcommand("rebuild", args, "notifications")
	if err != nil {
		return err
	}
	fs := a.newFlagSet("rebuild notifications", "rebuild notifications [-database-url url] [-brokers list] [-topic-prefix p] [-show N] [-json]")
	brokers := a.brokersFlag(fs)
	dbURL := fs.String("database-url", a.env.Getenv("DATABASE_URL"), "Postgres URL (env DATABASE_URL)")
	prefix := fs.String("topic-prefix", a.env.Getenv("TOPIC_PREFIX"), "prefix of every topic name (env TOPIC_PREFIX)")
	consumer := fs.String("consumer", rebuild.DefaultConsumer, "inbox name of the live notification service")
	show := fs.Int("show", 20, "differences of each kind to print")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, rest); err != nil {
		return err
	}
	if *dbURL == "" {
		return usagef("no database: set DATABASE_URL or -database-url")
	}
	client, err := a.kafkaClient(*brokers, *timeout)
	if err != nil {
		return err
	}
	topic := topics.Names{Prefix: *prefix}.Of(topics.Stored)
	started := time.Now()
	entries, undecodable, err := readStored(ctx, client, topic)
	if err != nil {
		return err
	}
	readTook := time.Since(started)
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("cannot open database: %w", err)
	}
	defer pool.Close()
	res, err := rebuild.Run(ctx, pool, entries, rebuild.Config{Consumer: *consumer})
	if err != nil {
		return err
	}
	took := time.Since(started)
	if *asJSON {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"result": res, "equal": res.Equal(), "undecodable": undecodable,
			"read_seconds": readTook.Seconds(), "seconds": took.Seconds()}); err != nil {
			return err
		}
	} else {
		writeRebuild(a.env.Stdout, res, undecodable, readTook, took, *show)
	}
	if !res.Equal() {
		return &exitError{code: ExitError, msg: fmt.Sprintf("the rebuilt notifications differ from the live table: %d missing, %d extra, %d changed",
			len(res.Missing), len(res.Extra), len(res.Changed))}
	}
	return nil
}

// readStored reads every message.stored event of chat.stored, from each partition's start
// to its end as of now.
func readStored(ctx context.Context, client *kafka.Client, topic string) ([]rebuild.Entry, int, error) {
	n, err := logread.Partitions(ctx, client, topic)
	if err != nil {
		return nil, 0, err
	}
	var entries []rebuild.Entry
	undecodable := 0
	for p := range n {
		first, end, err := logread.Bounds(ctx, client, topic, p)
		if err != nil {
			return nil, 0, err
		}
		err = logread.Read(ctx, client, topic, p, first, end, func(r logread.Record) error {
			e, err := event.Decode(r.Value)
			if err != nil || e.Type != event.TypeMessageStored {
				undecodable++
				return nil
			}
			m, err := event.As[event.MessageStored](e)
			if err != nil {
				undecodable++
				return nil
			}
			entries = append(entries, rebuild.Entry{EventID: e.ID, Msg: m})
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return entries, undecodable, nil
}

func writeRebuild(w io.Writer, res rebuild.Result, undecodable int, readTook, took time.Duration, show int) {
	fmt.Fprintf(w, "read %d message.stored events (%d repeated, %d not decodable) in %s\n",
		res.Entries, res.Duplicates, undecodable, readTook.Round(time.Millisecond))
	fmt.Fprintf(w, "messages %d, handled by the live service %d, not yet handled %d, of deleted rooms %d\n",
		res.Messages, res.Messages-res.Unhandled, res.Unhandled, res.UnknownRooms)
	fmt.Fprintf(w, "rebuilt %d notifications into notifications_rebuild; live table has %d for the same entries (%s in all)\n",
		res.Rebuilt, res.Live, took.Round(time.Millisecond))
	if res.Equal() {
		fmt.Fprintln(w, "no differences")
		return
	}
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "DIFFERENCE\tUSER\tROOM\tSEQ\tREASON\tQUIET\tSENDER\tPREVIEW")
	for _, d := range []struct {
		what string
		rows []rebuild.Row
	}{{"missing in live", res.Missing}, {"extra in live", res.Extra}, {"changed (rebuilt values)", res.Changed}} {
		for i, r := range d.rows {
			if i == show {
				fmt.Fprintf(t, "%s\t... %d more\t\t\t\t\t\t\n", d.what, len(d.rows)-show)
				break
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%v\t%s\t%s\n", d.what, r.User, r.Room, r.Seq, r.Reason, r.Quiet, r.Sender, r.Preview)
		}
	}
	_ = t.Flush()
}
