package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/dlq"
)

func runLive(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Env{
		Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

// withKafka adds the stack's Kafka login (stacktest.Env.KafkaEnv: TLS and SCRAM as the
// super user on a secured cluster) to vars, the environment chatctl is run with.
func withKafka(env *stacktest.Env, vars map[string]string) map[string]string {
	for _, kv := range env.KafkaEnv {
		k, v, _ := strings.Cut(kv, "=")
		if _, set := vars[k]; !set {
			vars[k] = v
		}
	}
	return vars
}

// The operator commands against the real three-broker cluster.
func TestLive_topics_health_and_lag(t *testing.T) {
	senv := stacktest.Get(t)
	vars := withKafka(senv, map[string]string{"KAFKA_BROKERS": strings.Join(senv.Brokers, ",")})

	file := filepath.Join(senv.Root, "deploy", "topics.yaml")
	if code, out, errs := runLive(t, vars, "topics", "plan", "-file", file); code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("topics plan on the applied stack: exit %d\n%s%s", code, out, errs)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("topics:\n  - name: chat.submitted\n    partitions: 1\n    replication_factor: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runLive(t, vars, "topics", "plan", "-file", bad); code == 0 || !strings.Contains(errs, "cannot be lowered") {
		t.Fatalf("lowering partitions must be refused with a clear error: exit %d, %s", code, errs)
	}

	code, out, errs := runLive(t, vars, "cluster", "health", "-json")
	if code != 0 {
		t.Fatalf("cluster health: exit %d\n%s%s", code, out, errs)
	}
	var report map[string]any
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("health -json is not JSON: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"healthy"`) && !strings.Contains(out, `"ok"`) {
		t.Errorf("health report does not say healthy:\n%s", out)
	}

	// A group that consumed 3 of 5 messages has lag 2.
	topic := senv.Topics(t)(topics.Submitted)
	p, err := producer.New(producer.Config{Brokers: senv.Brokers, Security: senv.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 {
		e, err := event.New("kchat/test", event.MessageSubmitted{RoomID: "lag-room", Sender: "u", SenderName: "u",
			ClientMsgID: string(rune('a' + i)), Text: "x", Kind: event.KindMessage, SubmittedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(context.Background(), topic, "lag-room", e); err != nil {
			t.Fatal(err)
		}
	}
	group := stacktest.UniqueName("lag-")
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	r, err := consumer.New(consumer.Config{Brokers: senv.Brokers, Security: senv.Security, GroupID: group, Topics: []string{topic}, BatchSize: 1},
		func(context.Context, *consumer.Message) error {
			seen++
			if seen == 3 {
				cancel()
			}
			if seen > 3 {
				return context.Canceled // leave the rest uncommitted
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runLive(t, vars, "lag", "-group", group, "-json")
	if code != 0 {
		t.Fatalf("lag: exit %d\n%s%s", code, out, errs)
	}
	var total int64
	var groups []struct {
		Partitions []struct {
			Lag int64 `json:"lag"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &groups); err != nil {
		t.Fatalf("lag -json: %v\n%s", err, out)
	}
	for _, g := range groups {
		for _, p := range g.Partitions {
			total += p.Lag
		}
	}
	if total != 2 {
		t.Fatalf("total lag %d, want 2\n%s", total, out)
	}
}

// A broker in the middle of dying accepts a connection and resets it. The
// health check is run exactly then, so it must go on to the next bootstrap
// broker instead of failing (make test once failed this way right after a
// broker was killed).
func TestLive_cluster_answers_past_a_resetting_broker(t *testing.T) {
	senv := stacktest.Get(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0) // close sends RST, as a killed process does
			c.Close()
		}
	}()
	vars := withKafka(senv, map[string]string{"KAFKA_BROKERS": ln.Addr().String() + "," + strings.Join(senv.Brokers, ",")})
	// kafka-go alone shuffles the bootstrap list, so it meets the resetting
	// broker first on one try in four: eight tries make that near certain.
	for range 8 {
		code, out, errs := runLive(t, vars, "cluster", "-json", "-topics", senv.Topics(t)(topics.Submitted))
		var r struct {
			Brokers []json.RawMessage `json:"brokers"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Brokers) == 0 {
			t.Fatalf("cluster -json with a resetting first broker: exit %d, %v\n%s%s", code, err, out, errs)
		}
	}
}

// A broker that dies shows up in `chatctl cluster`: its replicas fall out of
// the ISR (under-replicated partitions, exit code "degraded") and the spread
// shows it holding replicas while not registered. Once it is back the
// cluster heals and the command says so.
func TestLive_cluster_reports_a_dead_broker(t *testing.T) {
	senv := stacktest.Get(t)
	if senv.Stack == nil {
		t.Skip("needs the local stack to kill a broker (KAFKA_BROKERS points elsewhere)")
	}
	vars := withKafka(senv, map[string]string{"KAFKA_BROKERS": strings.Join(senv.Brokers, ",")})
	name := senv.Topics(t)
	// Only this test's topics: other tests create and delete theirs meanwhile.
	checked := name(topics.Submitted) + "," + name(topics.Stored)

	type report struct {
		Status string `json:"status"`
		Spread []struct {
			ID         int  `json:"id"`
			Registered bool `json:"registered"`
			Leaders    int  `json:"leaders"`
			Replicas   int  `json:"replicas"`
			OutOfSync  int  `json:"out_of_sync"`
			Preferred  int  `json:"preferred_leader"`
		} `json:"spread"`
		Topics []struct {
			Name            string `json:"name"`
			Partitions      int    `json:"partitions"`
			UnderReplicated []int  `json:"under_replicated"`
			BelowMinISR     []int  `json:"below_min_isr"`
			Offline         []int  `json:"offline"`
		} `json:"topics"`
	}
	check := func(args ...string) (int, report, string) {
		t.Helper()
		code, out, errs := runLive(t, vars, append([]string{"cluster", "-json", "-topics", checked}, args...)...)
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("cluster -json: exit %d, %v\n%s%s", code, err, out, errs)
		}
		return code, r, out
	}

	senv.ExclusiveFaults(t)
	// Another test may have a broker down right now; start from healthy.
	if code, _, out := check("-wait", "3m"); code != cli.ExitOK {
		t.Fatalf("cluster not healthy before the test: exit %d\n%s", code, out)
	}

	const victim = 3
	if err := senv.Stack.KillBroker(victim); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if restarted {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := senv.Stack.StartBroker(ctx, victim); err != nil {
			t.Errorf("restart broker %d: %v", victim, err)
		}
	})
	killed := time.Now()

	// The controller fences the broker after its session times out (9 s by
	// default) and shrinks the ISRs; poll until the report shows that.
	var (
		code int
		r    report
		out  string
	)
	for {
		code, r, out = check()
		urp := 0
		for _, tp := range r.Topics {
			urp += len(tp.UnderReplicated)
		}
		if code == cli.ExitDegraded && urp > 0 && len(r.Spread) == 3 && !r.Spread[victim-1].Registered {
			break
		}
		if time.Since(killed) > 90*time.Second {
			t.Fatalf("no under-replicated partitions reported %s after killing broker %d: exit %d\n%s", time.Since(killed), victim, code, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("degraded reported %s after the kill", time.Since(killed).Round(time.Millisecond))
	total := 0
	for _, tp := range r.Topics {
		total += tp.Partitions
		// RF 3 on three brokers: every partition had a replica on the victim.
		if len(tp.UnderReplicated) != tp.Partitions {
			t.Errorf("%s: %d of %d partitions under-replicated, want all", tp.Name, len(tp.UnderReplicated), tp.Partitions)
		}
		if len(tp.BelowMinISR) != 0 || len(tp.Offline) != 0 {
			t.Errorf("%s: one broker down must leave every partition writable: below min ISR %v, offline %v", tp.Name, tp.BelowMinISR, tp.Offline)
		}
	}
	dead := r.Spread[victim-1]
	if dead.ID != victim || dead.Leaders != 0 || dead.Replicas != total || dead.OutOfSync != total {
		t.Errorf("spread of the dead broker = %+v, want 0 leaders and %d replicas, all out of sync", dead, total)
	}
	leaders := 0
	for _, s := range r.Spread {
		leaders += s.Leaders
	}
	if leaders != total {
		t.Errorf("leaders over the live brokers = %d, want %d (every partition led)", leaders, total)
	}
	// The table says the same to a person. It is a second request, possibly answered by
	// another broker whose metadata has not yet caught up with the fencing, so it is
	// polled like the report above.
	for {
		code, text, _ := runLive(t, vars, "cluster", "-topics", checked)
		if code == cli.ExitDegraded && strings.Contains(text, "NOT REGISTERED") && strings.Contains(text, "under-replicated partitions") {
			break
		}
		if time.Since(killed) > 90*time.Second {
			t.Fatalf("table output (exit %d) does not show the dead broker:\n%s", code, text)
		}
		time.Sleep(time.Second)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := senv.Stack.StartBroker(ctx, victim); err != nil {
		t.Fatalf("restart broker %d: %v", victim, err)
	}
	restarted = true
	code, r, out = check("-wait", "3m")
	if code != cli.ExitOK || r.Status != "healthy" {
		t.Fatalf("cluster did not heal after broker %d came back: exit %d\n%s", victim, code, out)
	}
	for _, s := range r.Spread {
		if !s.Registered || s.OutOfSync != 0 || s.Replicas != total {
			t.Errorf("after the restart broker %d = %+v, want registered, %d replicas, all in sync", s.ID, s, total)
		}
	}
	t.Logf("healthy again %s after the kill", time.Since(killed).Round(time.Millisecond))

	// Back, the victim leads nothing until Kafka's imbalance check (5 minutes): the
	// election hands its partitions back, and every broker leads what it prefers.
	if r.Spread[victim-1].Leaders != 0 {
		t.Logf("broker %d already leads %d partitions again", victim, r.Spread[victim-1].Leaders)
	}
	code, text, errs := runLive(t, vars, "cluster", "elect-leaders", "-topics", checked, "-wait", "1m")
	if code != cli.ExitOK || !strings.Contains(text, "moved ") {
		t.Fatalf("cluster elect-leaders: exit %d\n%s%s", code, text, errs)
	}
	t.Log(strings.TrimSpace(text))
	_, r, out = check()
	for _, s := range r.Spread {
		if s.Leaders != s.Preferred {
			t.Errorf("after elect-leaders broker %d leads %d partitions, prefers %d\n%s", s.ID, s.Leaders, s.Preferred, out)
		}
	}
}

// Dead letters written by the real dead-letter middleware are listed with
// their origin and event headers, and replayed (one by offset, then all) to
// their original topic with the original key, value and headers minus dlq_*.
func TestLive_dlq_list_and_replay(t *testing.T) {
	senv := stacktest.Get(t)
	name := senv.Topics(t)
	prefix := name("")
	source, dlqTopic := name(topics.Submitted), name(topics.DLQ)
	vars := withKafka(senv, map[string]string{"KAFKA_BROKERS": strings.Join(senv.Brokers, ","), "TOPIC_PREFIX": prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p, err := producer.New(producer.Config{Brokers: senv.Brokers, Security: senv.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if code, out, errs := runLive(t, vars, "dlq", "list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("empty dlq: exit %d\n%s%s", code, out, errs)
	}

	// Three events that a consumer rejects for good.
	type sent struct{ id, key string }
	var events []sent
	for i, room := range []string{"room-a", "room-b", "room-a"} {
		e, err := event.New("kchat/test", event.MessageSubmitted{RoomID: room, Sender: "u", SenderName: "u",
			ClientMsgID: fmt.Sprintf("m%d", i), Text: "poison", Kind: event.KindMessage, SubmittedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, source, room, e); err != nil {
			t.Fatal(err)
		}
		events = append(events, sent{e.ID, room})
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	r, err := consumer.New(consumer.Config{Brokers: senv.Brokers, Security: senv.Security, GroupID: stacktest.UniqueName("dlq-"), Topics: []string{source}},
		func(context.Context, *consumer.Message) error {
			return consumer.Permanent(errors.New("poison: cannot handle"))
		},
		consumer.DeadLetter(p, dlqTopic, "test-consumer", nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- r.Run(runCtx) }()
	// A dead letter without dlq_* headers (written by hand, say) cannot be
	// replayed: chatctl must say so rather than guess a topic.
	if err := p.Write(ctx, kafka.Message{Topic: dlqTopic, Key: []byte("stray"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}

	type letter struct {
		Partition       int               `json:"partition"`
		Offset          int64             `json:"offset"`
		Key             string            `json:"key"`
		SourceTopic     string            `json:"source_topic"`
		SourcePartition int               `json:"source_partition"`
		SourceOffset    int64             `json:"source_offset"`
		Reason          string            `json:"reason"`
		Consumer        string            `json:"consumer"`
		Attempts        int               `json:"attempts"`
		EventType       string            `json:"ce_type"`
		EventID         string            `json:"ce_id"`
		Headers         map[string]string `json:"headers"`
		Value           json.RawMessage   `json:"value"`
		ValueText       string            `json:"value_text"`
	}
	list := func(args ...string) []letter {
		t.Helper()
		code, out, errs := runLive(t, vars, append([]string{"dlq", "list", "-json"}, args...)...)
		if code != 0 {
			t.Fatalf("dlq list: exit %d\n%s%s", code, out, errs)
		}
		var ls []letter
		if err := json.Unmarshal([]byte(out), &ls); err != nil {
			t.Fatalf("dlq list -json: %v\n%s", err, out)
		}
		return ls
	}
	var letters []letter
	for deadline := time.Now().Add(time.Minute); ; {
		letters = list("-source-topic", source)
		if len(letters) == len(events) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if len(letters) != len(events) {
		t.Fatalf("dlq list shows %d dead letters from %s, want %d", len(letters), source, len(events))
	}
	byID := map[string]letter{}
	for _, l := range letters {
		byID[l.EventID] = l
		if l.SourceTopic != source || l.Consumer != "test-consumer" || l.Attempts != 1 || !strings.Contains(l.Reason, "poison") ||
			l.EventType != "message.submitted" || l.SourcePartition < 0 || l.SourceOffset < 0 {
			t.Errorf("dead letter %+v lacks its origin or event headers", l)
		}
		if l.Headers["dlq_topic"] != source || l.Headers["ce_id"] != l.EventID || len(l.Value) == 0 {
			t.Errorf("dead letter at %d/%d: headers %v, value %q", l.Partition, l.Offset, l.Headers, l.Value)
		}
	}
	for _, e := range events {
		if l, ok := byID[e.id]; !ok || l.Key != e.key {
			t.Errorf("event %s (key %s) not listed with its key: %+v", e.id, e.key, l)
		}
	}
	if all := list(); len(all) != len(events)+1 {
		t.Errorf("unfiltered list has %d dead letters, want %d (the stray one too)", len(all), len(events)+1)
	}
	if ls := list("-type", "message.submitted", "-consumer", "test-consumer"); len(ls) != len(events) {
		t.Errorf("filtered by type and consumer: %d, want %d", len(ls), len(events))
	}
	code, table, _ := runLive(t, vars, "dlq", "list")
	for _, want := range []string{"CE_TYPE", "message.submitted", events[0].id, source + "[", "test-consumer", "poison: cannot handle", "stray"} {
		if code != 0 || !strings.Contains(table, want) {
			t.Errorf("dlq list table (exit %d) lacks %q:\n%s", code, want, table)
		}
	}

	// Bad requests are refused before anything is produced.
	for _, bad := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"dlq", "replay"}, cli.ExitUsage, "-offset n"},
		{[]string{"dlq", "replay", "-offset", "0"}, cli.ExitUsage, "give -partition with -offset"},
		{[]string{"dlq", "replay", "-partition", "0", "-offset", "999999"}, cli.ExitError, "no dead letter at"},
		{[]string{"dlq", "replay", "-all", "-offset", "1"}, cli.ExitUsage, "-offset n"},
	} {
		if code, _, errs := runLive(t, vars, bad.args...); code != bad.code || !strings.Contains(errs, bad.err) {
			t.Errorf("%v: exit %d, want %d with %q\n%s", bad.args, code, bad.code, bad.err, errs)
		}
	}

	// Replay one by partition and offset.
	first := byID[events[0].id]
	code, out, errs := runLive(t, vars, "dlq", "replay", "-partition", fmt.Sprint(first.Partition), "-offset", fmt.Sprint(first.Offset))
	if code != 0 || !strings.Contains(out, "replayed 1 dead letters") || !strings.Contains(out, "-> "+source) {
		t.Fatalf("replay one: exit %d\n%s%s", code, out, errs)
	}
	originals := readTopic(ctx, t, senv.Client(), source)
	if len(originals) != len(events)+1 {
		t.Fatalf("%s has %d messages after one replay, want %d", source, len(originals), len(events)+1)
	}
	var orig, replayed *dlq.Letter
	for i := range originals {
		if originals[i].EventID == events[0].id {
			if orig == nil {
				orig = &originals[i]
			} else {
				replayed = &originals[i]
			}
		}
	}
	if orig == nil || replayed == nil {
		t.Fatalf("event %s not found twice in %s", events[0].id, source)
	}
	if string(replayed.Key) != string(orig.Key) || string(replayed.Value) != string(orig.Value) || replayed.Partition != orig.Partition {
		t.Errorf("replayed message differs: key %q/%q, partition %d/%d, value equal %v",
			replayed.Key, orig.Key, replayed.Partition, orig.Partition, string(replayed.Value) == string(orig.Value))
	}
	if !slices.EqualFunc(replayed.Headers, orig.Headers, func(a, b kafka.Header) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
		t.Errorf("replayed headers %v, want the original %v (no dlq_*)", replayed.Headers, orig.Headers)
	}

	// A dry run of "all" shows what would happen, changes nothing, and
	// says that the stray letter cannot be replayed.
	code, out, errs = runLive(t, vars, "dlq", "replay", "-all", "-dry-run")
	if code != cli.ExitError || !strings.Contains(out, "would replay 3 dead letters, skipped 1") || !strings.Contains(errs, "no dlq_topic header") {
		t.Errorf("dry run of all: exit %d\n%s%s", code, out, errs)
	}
	if n := len(readTopic(ctx, t, senv.Client(), source)); n != len(events)+1 {
		t.Errorf("a dry run produced messages: %d in %s", n, source)
	}
	// Replay every letter from the source topic; the one replayed before
	// goes again, which the consumers' dedupe by event id absorbs.
	code, out, errs = runLive(t, vars, "dlq", "replay", "-all", "-source-topic", source)
	if code != 0 || !strings.Contains(out, "replayed 3 dead letters") {
		t.Fatalf("replay all: exit %d\n%s%s", code, out, errs)
	}
	after := readTopic(ctx, t, senv.Client(), source)
	ids := map[string]int{}
	for _, m := range after {
		ids[m.EventID]++
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "dlq_") {
				t.Errorf("replayed message carries %s", h.Key)
			}
		}
	}
	if len(after) != 2*len(events)+1 || len(ids) != len(events) {
		t.Errorf("after replaying all: %d messages with %d distinct event ids, want %d and %d", len(after), len(ids), 2*len(events)+1, len(events))
	}
	// The dead letters stay where they were: chat.dlq is the record.
	if n := len(list()); n != len(events)+1 {
		t.Errorf("replay removed dead letters: %d left", n)
	}
}

// readTopic returns every message of a topic, headers and all.
func readTopic(ctx context.Context, t *testing.T, client *kafka.Client, topic string) []dlq.Letter {
	t.Helper()
	ms, err := dlq.Read(ctx, client, topic, dlq.Any)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}
