package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/dlq"
)

// dlqFlags are shared by dlq list and dlq replay.
type dlqFlags struct {
	brokers   *string
	prefix    *string
	timeout   *time.Duration
	partition *int
	offset    *int64
	source    *string
	consumer  *string
	eventType *string
}

func (a *app) addDLQFlags(fs *flag.FlagSet) dlqFlags {
	return dlqFlags{
		brokers:   a.brokersFlag(fs),
		prefix:    fs.String("topic-prefix", a.env.Getenv("TOPIC_PREFIX"), "prefix of every topic name, as the services' -topic-prefix (env TOPIC_PREFIX)"),
		timeout:   fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request"),
		partition: fs.Int("partition", -1, "only this partition of the dead-letter topic"),
		offset:    fs.Int64("offset", -1, "only the dead letter at this offset (with -partition when the topic has several)"),
		source:    fs.String("source-topic", "", "only dead letters from this topic (header dlq_topic)"),
		consumer:  fs.String("consumer", "", "only dead letters written by this consumer (header dlq_consumer)"),
		eventType: fs.String("type", "", "only events of this type (header ce_type), e.g. message.stored"),
	}
}

func (f dlqFlags) filter() dlq.Filter {
	return dlq.Filter{Partition: *f.partition, Offset: *f.offset, SourceTopic: *f.source, Consumer: *f.consumer, EventType: *f.eventType}
}

func (f dlqFlags) topic() string { return topics.Names{Prefix: *f.prefix}.Of(topics.DLQ) }

func runDLQ(ctx context.Context, a *app, args []string) error {
	sub, rest, err := subcommand("dlq", args, "list", "replay")
	if err != nil {
		return err
	}
	var usage string
	if sub == "list" {
		usage = "dlq list [-partition p] [-offset n] [-source-topic t] [-consumer c] [-type t] [-json]"
	} else {
		usage = "dlq replay (-partition p -offset n | -all [filters]) [-dry-run]\n\n" +
			"Produces each dead letter's original key, value and headers (without dlq_*) to the topic in its dlq_topic header.\n" +
			"Safe to repeat: the consumers deduplicate by event id (ce_id). The dead letters stay in chat.dlq."
	}
	fs := a.newFlagSet("dlq "+sub, usage)
	f := a.addDLQFlags(fs)
	var (
		asJSON *bool
		all    *bool
		dryRun *bool
	)
	if sub == "list" {
		asJSON = fs.Bool("json", false, "print every dead letter as JSON, value and all headers included")
	} else {
		all = fs.Bool("all", false, "replay every dead letter that matches the filters")
		dryRun = fs.Bool("dry-run", false, "only print what would be replayed")
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if sub == "replay" && *all == (*f.offset >= 0) {
		return usagef("say what to replay: -offset n (one dead letter, see `chatctl dlq list`) or -all (every one matching the filters)")
	}
	conn, err := a.dialKafka(*f.brokers, *f.timeout)
	if err != nil {
		return err
	}
	defer conn.Close()

	filter := f.filter()
	if *f.offset >= 0 && *f.partition < 0 {
		parts, err := dlq.Partitions(ctx, conn.Client, f.topic())
		if err != nil {
			return conn.wrap(err)
		}
		if len(parts) != 1 {
			return usagef("%s has %d partitions: give -partition with -offset (`chatctl dlq list` shows both)", f.topic(), len(parts))
		}
		filter.Partition = parts[0]
	}
	letters, err := dlq.Read(ctx, conn.Client, f.topic(), filter)
	if err != nil {
		return conn.wrap(err)
	}
	if sub == "list" {
		return writeLetters(a.env.Stdout, letters, *asJSON)
	}
	if len(letters) == 0 {
		if *f.offset >= 0 {
			return fmt.Errorf("no dead letter at %s partition %d offset %d", f.topic(), filter.Partition, *f.offset)
		}
		_, err := fmt.Fprintln(a.env.Stdout, "no dead letters match")
		return err
	}
	return a.replay(ctx, *f.brokers, letters, *dryRun)
}

// replay produces each letter's original message to its original topic, one
// at a time and in order, so a failure leaves a clear line of what was done.
func (a *app) replay(ctx context.Context, brokers string, letters []dlq.Letter, dryRun bool) error {
	var p *producer.Producer
	if !dryRun {
		sec, err := a.kafkaSecurity()
		if err != nil {
			return err
		}
		p, err = producer.New(producer.Config{Brokers: splitList(brokers), Logger: a.logger, Security: sec})
		if err != nil {
			return err
		}
		defer p.Close()
	}
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	done, skipped := 0, 0
	for _, l := range letters {
		where := fmt.Sprintf("%s partition %d offset %d", l.Topic, l.Partition, l.Offset)
		if !l.Replayable() {
			skipped++
			fmt.Fprintf(a.env.Stderr, "skipped %s: no %s header, the original topic is unknown\n", where, "dlq_topic")
			continue
		}
		if !dryRun {
			if err := p.Write(ctx, l.Message()); err != nil {
				return fmt.Errorf("replay %s to %s (after %d replayed): %w", where, l.SourceTopic, done, err)
			}
		}
		done++
		fmt.Fprintf(a.env.Stdout, "%s %s -> %s (key %s, ce_type %s, ce_id %s)\n", verb, where, l.SourceTopic,
			printable(l.Key, 60), orNone(l.EventType), orNone(l.EventID))
	}
	fmt.Fprintf(a.env.Stdout, "%s %d dead letters", verb, done)
	if skipped > 0 {
		fmt.Fprintf(a.env.Stdout, ", skipped %d", skipped)
	}
	fmt.Fprintln(a.env.Stdout)
	if skipped > 0 {
		return &exitError{code: ExitError, msg: fmt.Sprintf("%d dead letters could not be replayed", skipped)}
	}
	return nil
}

// letterJSON is a dead letter for -json: everything, value included.
type letterJSON struct {
	dlq.Letter
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Value   json.RawMessage   `json:"value,omitempty"`
	// ValueText holds a value that is not JSON.
	ValueText string `json:"value_text,omitempty"`
}

func writeLetters(w io.Writer, letters []dlq.Letter, asJSON bool) error {
	if asJSON {
		out := make([]letterJSON, 0, len(letters))
		for _, l := range letters {
			j := letterJSON{Letter: l, Key: string(l.Key), Headers: map[string]string{}}
			for _, h := range l.Headers {
				j.Headers[h.Key] = string(h.Value)
			}
			if json.Valid(l.Value) {
				j.Value = l.Value
			} else {
				j.ValueText = string(l.Value)
			}
			out = append(out, j)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(letters) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "PARTITION\tOFFSET\tTIME\tKEY\tCE_TYPE\tCE_ID\tFROM\tCONSUMER\tATTEMPTS\tREASON")
	for _, l := range letters {
		from := "-"
		if l.SourceTopic != "" {
			from = fmt.Sprintf("%s[%d]@%d", l.SourceTopic, l.SourcePartition, l.SourceOffset)
		}
		fmt.Fprintf(t, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Partition, l.Offset, l.Time.Format(time.RFC3339),
			printable(l.Key, 40), orNone(l.EventType), orNone(l.EventID), from, orNone(l.Consumer), l.Attempts,
			printable([]byte(l.Reason), 80))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d dead letters; `chatctl dlq list -json` shows values and every header\n", len(letters))
	return err
}

// printable shortens b to max runes and replaces what a table cannot show.
func printable(b []byte, max int) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("<%d bytes>", len(b))
	}
	s := strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, string(b))
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
