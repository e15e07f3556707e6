package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/kafkasec"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatbench/internal/harness"
	"github.com/kchat/kchat/tools/chatbench/internal/procstat"
	"github.com/kchat/kchat/tools/chatbench/internal/report"
)

// freshDB creates an empty, migrated database and returns its URL and a drop function.
func (b *Bench) freshDB(ctx context.Context, name string) (string, func(), error) {
	admin, err := pgx.Connect(ctx, adminURL(b.cfg.DatabaseURL))
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u := withDatabase(b.cfg.DatabaseURL, name)
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(dctx, adminURL(b.cfg.DatabaseURL)); err == nil {
			_, _ = c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(dctx)
		}
	}
	if _, err := migrations.Up(ctx, u); err != nil {
		drop()
		return "", nil, fmt.Errorf("migrate: %w", err)
	}
	return u, drop, nil
}

type persistRow struct {
	room, eventID, sender, clientID, text string
	seq                                   int64
	sentAt                                time.Time
}

// scenarioPersistence: rows/s the real persistence binary stores (dedupe + sequence +
// outbox, one transaction per batch) draining a pre-filled, prefixed chat.submitted into a
// fresh database, against pgx CopyFrom of the same rows into the same (empty, migrated)
// messages table.
func (b *Bench) scenarioPersistence(ctx context.Context, sc *report.Scenario) error {
	bin := filepath.Join(b.cfg.BinDir, "persistence")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("persistence binary %s: %w (run make build)", bin, err)
	}
	n, nRooms := b.plan.PersistN, b.plan.PersistRooms
	prefix := "bench" + b.run + "p."
	f, err := topics.Load(filepath.Join(b.cfg.Root, "deploy", "topics.yaml"))
	if err != nil {
		return err
	}
	dropTopics, err := b.applyTopics(ctx, f.WithPrefix(prefix))
	if err != nil {
		return err
	}
	defer dropTopics()
	roomID := func(k int) string { return fmt.Sprintf("p-%03d", k) }

	// Pre-fill chat.submitted with n valid events and keep the rows they become.
	topic := prefix + topics.Submitted
	p, err := producer.New(producer.Config{Brokers: b.cfg.Brokers, BatchSize: 1000, Security: b.cfg.KafkaSecurity})
	if err != nil {
		return err
	}
	defer p.Close()
	rows := make([]persistRow, 0, n)
	seqs := make([]int64, nRooms)
	text := strings.Repeat("x", b.plan.TextBytes)
	batch := make([]kafka.Message, 0, 1000)
	t0 := time.Now()
	for i := range n {
		k := i % nRooms
		seqs[k]++
		r := persistRow{room: roomID(k), sender: fmt.Sprintf("bench-u%06d", i%7+1), clientID: fmt.Sprintf("c-%d", i), text: text, seq: seqs[k], sentAt: time.Now().UTC()}
		e, err := event.New("kchat/chatbench", event.MessageSubmitted{RoomID: r.room, Sender: r.sender, SenderName: "bench",
			ClientMsgID: r.clientID, Text: r.text, Kind: event.KindMessage, SubmittedAt: r.sentAt})
		if err != nil {
			return err
		}
		r.eventID = e.ID
		rows = append(rows, r)
		m, err := producer.Message(topic, r.room, e)
		if err != nil {
			return err
		}
		batch = append(batch, m)
		if len(batch) == cap(batch) || i == n-1 {
			if err := p.Write(ctx, batch...); err != nil {
				return fmt.Errorf("pre-fill: %w", err)
			}
			batch = batch[:0]
		}
	}
	sc.Data["prefill_seconds"] = harness.Round(time.Since(t0).Seconds())

	sizes := []int{0}
	if b.cfg.ExtraBatchSize > 0 {
		sizes = append(sizes, b.cfg.ExtraBatchSize)
	}
	runs := map[string]any{}
	var mainRate float64
	for _, size := range sizes {
		r, err := b.persistOnce(ctx, bin, prefix, nRooms, roomID, n, size)
		if err != nil {
			return err
		}
		key := "batch_size_default"
		if size > 0 {
			key = fmt.Sprintf("batch_size_%d", size)
		}
		runs[key] = r
		if size == 0 {
			mainRate = r["rows_per_s"].(float64)
		} else {
			b.add(harness.NewFigure("persistence", fmt.Sprintf("stored rows/s, BATCH_SIZE=%d", size), "rows/s", r["rows_per_s"].(float64), "", nil))
		}
	}
	sc.Data["persistence"] = runs

	// Baseline: CopyFrom of the same rows into an empty messages table.
	dbURL, dropDB, err := b.freshDB(ctx, "bench_"+b.run+"_copy")
	if err != nil {
		return err
	}
	defer dropDB()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := createRoomsDirect(ctx, conn, nRooms, roomID); err != nil {
		return err
	}
	storedAt := time.Now().UTC()
	src := make([][]any, len(rows))
	for i, r := range rows {
		src[i] = []any{r.room, r.seq, r.eventID, "message", r.sender, "bench", r.clientID, r.text, r.sentAt, storedAt}
	}
	t1 := time.Now()
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"messages"},
		[]string{"room_id", "seq", "event_id", "kind", "sender", "sender_name", "client_msg_id", "text", "sent_at", "stored_at"},
		pgx.CopyFromRows(src))
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	copyRate := float64(copied) / time.Since(t1).Seconds()
	sc.Data["copy_rows_per_s"] = harness.Round(copyRate)
	sc.Config = map[string]any{"events": n, "rooms": nRooms, "text_bytes": b.plan.TextBytes,
		"measured": "messages rows from the first row seen to the last (startup, group join excluded)"}
	b.add(harness.NewFigure("persistence", "stored rows/s (dedupe+seq+outbox)", "rows/s", harness.Round(mainRate),
		"pgx CopyFrom", harness.F(harness.Round(copyRate)), harness.Target{Kind: harness.RatioAtLeast, Limit: 0.85}))
	return nil
}

func createRoomsDirect(ctx context.Context, conn *pgx.Conn, n int, roomID func(int) string) error {
	rr := make([][]any, n)
	for k := range n {
		rr[k] = []any{roomID(k), roomID(k), "room"}
	}
	_, err := conn.CopyFrom(ctx, pgx.Identifier{"rooms"}, []string{"id", "name", "kind"}, pgx.CopyFromRows(rr))
	return err
}

// persistOnce runs the persistence binary (own consumer group, fresh database) over the
// pre-filled topic until every event is stored and relayed.
func (b *Bench) persistOnce(ctx context.Context, bin, prefix string, nRooms int, roomID func(int) string, n, batchSize int) (map[string]any, error) {
	name := fmt.Sprintf("bench_%s_p%d", b.run, batchSize)
	dbURL, dropDB, err := b.freshDB(ctx, name)
	if err != nil {
		return nil, err
	}
	defer dropDB()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if err := createRoomsDirect(ctx, conn, nRooms, roomID); err != nil {
		return nil, err
	}
	logDir := filepath.Join(resultsDir(b.cfg), "tmp")
	_ = os.MkdirAll(logDir, 0o755)
	logPath := filepath.Join(logDir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	port := freePort()
	cmd := exec.Command(bin)
	// The child logs in as chatbench does, whether its settings came from flags or
	// variables.
	var env []string
	for _, kv := range os.Environ() {
		if !kafkasec.IsVar(kv) {
			env = append(env, kv)
		}
	}
	env = append(env, b.cfg.KafkaSecurityConfig.Environ()...)
	cmd.Env = append(env, "KAFKA_BROKERS="+strings.Join(b.cfg.Brokers, ","), "DATABASE_URL="+dbURL,
		fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port), "TOPIC_PREFIX="+prefix, "CONSUMER_GROUP=bench-"+b.run+"-"+name, "LOG_LEVEL=warn")
	if batchSize > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("BATCH_SIZE=%d", batchSize))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pids := map[string]int{"persistence": cmd.Process.Pid}
	if pg, ok := b.pids["postgres"]; ok {
		pids["postgres"] = pg
	}
	for _, k := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		if v, ok := b.pids[k]; ok {
			pids[k] = v
		}
	}
	sampler := procstat.NewSampler(pids, "postgres")
	count := func(q string) int64 {
		var c int64
		_ = conn.QueryRow(ctx, q).Scan(&c)
		return c
	}
	var tFirst time.Time
	var cFirst int64
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("persistence exited early; see %s", logPath)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("persistence stored %d of %d within 5 minutes; see %s", count(`SELECT count(*) FROM messages`), n, logPath)
		}
		c := count(`SELECT count(*) FROM messages`)
		if c > 0 && tFirst.IsZero() {
			tFirst, cFirst = time.Now(), c
			sampler.Start()
		}
		if c >= int64(n) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	tStored := time.Now()
	usage := sampler.Stop()
	waitFor(ctx, time.Minute, func() bool { return count(`SELECT count(*) FROM outbox WHERE published_at IS NULL`) == 0 })
	tRelayed := time.Now()
	span := tStored.Sub(tFirst).Seconds()
	rate := 0.0
	if span > 0 {
		rate = float64(int64(n)-cFirst) / span
	}
	r := map[string]any{
		"rows_per_s": harness.Round(rate), "startup_to_first_row_s": harness.Round(tFirst.Sub(started).Seconds()),
		"first_to_last_row_s": harness.Round(span), "relay_done_after_last_row_s": harness.Round(tRelayed.Sub(tStored).Seconds()),
		"cpu_cores": roundMap(usage.Cores), "batch_size": batchSize,
	}
	b.log.Info("persistence", "batch_size", batchSize, "rows_per_s", r["rows_per_s"], "cpu", r["cpu_cores"])
	return r, nil
}
