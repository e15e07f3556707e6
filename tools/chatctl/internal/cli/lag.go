package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/kchat/kchat/tools/chatctl/internal/consumerlag"
)

func runLag(ctx context.Context, a *app, args []string) error {
	fs := a.newFlagSet("lag", "lag [-group g1,g2] [-brokers list] [-json]")
	brokers := a.brokersFlag(fs)
	groups := fs.String("group", "", "comma-separated consumer groups (default: every consumer group)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each Kafka request")
	if err := parse(fs, args); err != nil {
		return err
	}
	conn, err := a.dialKafka(*brokers, *timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.ping(ctx); err != nil {
		return err
	}
	result, err := consumerlag.Collect(ctx, conn.Client, splitList(*groups))
	if err != nil {
		return conn.wrap(err)
	}
	return writeLag(a.env.Stdout, result, *asJSON)
}

func writeLag(w io.Writer, groups []consumerlag.Group, asJSON bool) error {
	if asJSON {
		if groups == nil {
			groups = []consumerlag.Group{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(groups)
	}
	if len(groups) == 0 {
		fmt.Fprintln(w, "no consumer groups")
		return nil
	}
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "GROUP\tTOPIC\tPARTITION\tCOMMITTED\tLOG START\tLOG END\tLAG\tERROR")
	for _, g := range groups {
		if g.Error != "" {
			fmt.Fprintf(t, "%s\t-\t-\t-\t-\t-\t-\t%s\n", g.Group, g.Error)
			continue
		}
		for _, p := range g.Partitions {
			committed := fmt.Sprint(p.Committed)
			if p.Committed < 0 {
				committed = "none"
			}
			fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n", g.Group, p.Topic, p.Partition, committed, p.LogStart, p.LogEnd, p.Lag, p.Error)
		}
		fmt.Fprintf(t, "%s\t(total)\t\t\t\t\t%d\t\n", g.Group, g.TotalLag)
	}
	return t.Flush()
}
