package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kchat/kchat/pkg/leaders"
	"github.com/kchat/kchat/tools/chatctl/internal/clusterhealth"
)

func runCluster(ctx context.Context, a *app, args []string) error {
	// `chatctl cluster` and `chatctl cluster health` are the same report.
	rest := args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		var sub string
		var err error
		if sub, rest, err = subcommand("cluster", args, "health", "elect-leaders"); err != nil {
			return err
		}
		if sub == "elect-leaders" {
			return runElectLeaders(ctx, a, rest)
		}
	}
	fs := a.newFlagSet("cluster", "cluster [health] [-brokers list] [-expect-brokers 3] [-json] [-wait 0]")
	brokers := a.brokersFlag(fs)
	expect := fs.Int("expect-brokers", 3, "brokers that must be registered (0: do not check)")
	minISR := fs.Int("default-min-isr", 2, "min.insync.replicas assumed when a topic's config cannot be read")
	topics := fs.String("topics", "", "comma-separated topics to check (default: all, internal ones included)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	wait := fs.Duration("wait", 0, "keep checking until healthy or this long has passed (e.g. 2m)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, rest); err != nil {
		return err
	}
	conn, err := a.dialKafka(*brokers, *timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := clusterhealth.Options{ExpectedBrokers: *expect, DefaultMinISR: *minISR, Topics: splitList(*topics)}

	deadline := time.Now().Add(*wait)
	for {
		report, err := clusterhealth.Check(ctx, conn.Client, opts)
		if err == nil && (report.Status == clusterhealth.Healthy || !time.Now().Before(deadline)) {
			if err := writeHealth(a.env.Stdout, report, *asJSON); err != nil {
				return err
			}
			switch report.Status {
			case clusterhealth.Degraded:
				return &exitError{code: ExitDegraded}
			case clusterhealth.Unhealthy:
				return &exitError{code: ExitUnhealthy}
			}
			return nil
		}
		if err != nil && !time.Now().Before(deadline) {
			return conn.wrap(err)
		}
		a.logger.Info("cluster not healthy yet, retrying", "status", report.Status, "error", err, "until", deadline.Format(time.TimeOnly))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func writeHealth(w io.Writer, r clusterhealth.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "status:     %s\n", strings.ToUpper(string(r.Status)))
	fmt.Fprintf(w, "cluster id: %s\n", r.ClusterID)
	if r.Controller != nil {
		fmt.Fprintf(w, "controller: %d (%s:%d)\n", r.Controller.ID, r.Controller.Host, r.Controller.Port)
	} else {
		fmt.Fprintln(w, "controller: none")
	}
	ids := make([]string, len(r.Brokers))
	for i, b := range r.Brokers {
		ids[i] = fmt.Sprintf("%d=%s:%d", b.ID, b.Host, b.Port)
	}
	expected := ""
	if r.ExpectedBrokers > 0 {
		expected = "/" + strconv.Itoa(r.ExpectedBrokers)
	}
	fmt.Fprintf(w, "brokers:    %d%s %s\n\n", len(r.Brokers), expected, strings.Join(ids, " "))

	// Leader and replica spread: where the load is. A broker that holds
	// replicas but is not registered is down (or was removed without moving
	// them away).
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "BROKER\tSTATE\tLEADERS\tREPLICAS\tNOT IN ISR\tPREFERRED LEADER")
	for _, s := range r.Spread {
		state := "up"
		if !s.Registered {
			state = "NOT REGISTERED"
		}
		fmt.Fprintf(t, "%d\t%s\t%d\t%d\t%d\t%d\n", s.ID, state, s.Leaders, s.Replicas, s.OutOfSync, s.PreferredLeader)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	t = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "TOPIC\tPARTITIONS\tMIN ISR\tUNDER-REPLICATED\tBELOW MIN ISR\tOFFLINE")
	for _, tp := range r.Topics {
		fmt.Fprintf(t, "%s\t%d\t%d\t%s\t%s\t%s\n", tp.Name, tp.Partitions, tp.MinISR,
			partList(tp.UnderReplicated), partList(tp.BelowMinISR), partList(tp.Offline))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	return nil
}

func partList(ids []int) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return fmt.Sprintf("%d [%s]", len(ids), strings.Join(s, ","))
}

// runElectLeaders moves leadership back to each partition's preferred replica, the state
// topic creation spreads evenly and a broker restart undoes (Kafka redoes it itself only
// every leader.imbalance.check.interval.seconds, 5 minutes by default). It waits until
// every broker reports the spread or -wait has passed.
func runElectLeaders(ctx context.Context, a *app, args []string) error {
	fs := a.newFlagSet("cluster elect-leaders", "cluster elect-leaders [-brokers list] [-topics a,b] [-wait 1m]")
	brokers := a.brokersFlag(fs)
	topics := fs.String("topics", "", "comma-separated topics (default: all)")
	wait := fs.Duration("wait", time.Minute, "how long to wait for partitions whose preferred replica is still catching up")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *wait <= 0 {
		return usagef("-wait must be positive")
	}
	conn, err := a.dialKafka(*brokers, *timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.ping(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	moved, left, err := leaders.Balance(wctx, conn.Client, splitList(*topics), 250*time.Millisecond)
	fmt.Fprintf(a.env.Stdout, "moved %d partition leaders to their preferred replicas\n", moved)
	if len(left) > 0 {
		t := tabwriter.NewWriter(a.env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t, "TOPIC\tPARTITION\tLEADER\tPREFERRED\tPREFERRED IN SYNC")
		for _, s := range left {
			fmt.Fprintf(t, "%s\t%d\t%d\t%d\t%t\n", s.Topic, s.Partition, s.Leader, s.Preferred, s.InSync)
		}
		_ = t.Flush()
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%d partitions still led by another broker than their preferred one after %s", len(left), *wait)
		}
		return conn.wrap(err)
	}
	return nil
}
