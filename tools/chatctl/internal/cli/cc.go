package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/kchat/kchat/tools/chatctl/internal/cruisecontrol"
)

// ccFlags are shared by every cc subcommand.
type ccFlags struct {
	url     *string
	asJSON  *bool
	timeout *time.Duration
	poll    *time.Duration
}

func (a *app) addCCFlags(fs *flag.FlagSet) ccFlags {
	return ccFlags{
		url:     fs.String("url", a.envOr("CRUISE_CONTROL_URL", DefaultCruiseControlURL), "Cruise Control base URL (env CRUISE_CONTROL_URL)"),
		asJSON:  fs.Bool("json", false, "print Cruise Control's answer as JSON instead of a table"),
		timeout: fs.Duration("timeout", 10*time.Minute, "give up waiting for Cruise Control after this long"),
		poll:    fs.Duration("poll", 2*time.Second, "interval between polls of a long-running request"),
	}
}

// execFlags are shared by the subcommands that can move data.
type execFlags struct {
	execute   *bool
	goals     *string
	reason    *string
	excluded  *string
	throttle  *int64
	brokerIDs *string
}

func addExecFlags(fs *flag.FlagSet, withBrokers, withGoals bool) execFlags {
	f := execFlags{
		execute:  fs.Bool("execute", false, "really move replicas/leaders; without it the request is a dry run (dryrun=true) that moves nothing"),
		reason:   fs.String("reason", "", "reason recorded by Cruise Control with the task"),
		excluded: fs.String("excluded-topics", "", "regular expression of topics whose replicas must not move"),
		throttle: fs.Int64("throttle", 0, "replication throttle in bytes/s while moving replicas (0: Cruise Control's default)"),
	}
	if withGoals {
		f.goals = fs.String("goals", "", "comma-separated goals, e.g. ReplicaDistributionGoal,LeaderReplicaDistributionGoal (default: default.goals)")
	}
	if withBrokers {
		f.brokerIDs = fs.String("brokers", "", "comma-separated broker ids (required)")
	}
	return f
}

func (f execFlags) options() cruisecontrol.ExecutionOptions {
	o := cruisecontrol.ExecutionOptions{
		// -execute is the operator's explicit yes; nothing else turns a
		// request into a real execution.
		Execute:             *f.execute,
		Confirmed:           *f.execute,
		Reason:              *f.reason,
		ExcludedTopics:      *f.excluded,
		ReplicationThrottle: *f.throttle,
	}
	if f.goals != nil {
		o.Goals = splitList(*f.goals)
	}
	return o
}

func runCC(ctx context.Context, a *app, args []string) error {
	sub, rest, err := subcommand("cc", args,
		"state", "load", "proposals", "rebalance", "add-broker", "remove-broker", "demote-broker", "stop", "user-tasks")
	if err != nil {
		return err
	}
	usage := "cc " + sub + " [flags]"
	switch sub {
	case "rebalance":
		usage = "cc rebalance [-execute] [-goals g1,g2] [flags]\n\nA dry run (nothing moves) unless -execute is given; long requests are followed with a progress line."
	case "add-broker", "remove-broker", "demote-broker":
		usage = "cc " + sub + " -brokers ids [-execute] [flags]\n\nA dry run (nothing moves) unless -execute is given; long requests are followed with a progress line."
	}
	fs := a.newFlagSet("cc "+sub, usage)
	common := a.addCCFlags(fs)

	var (
		run    func(ctx context.Context, c *cruisecontrol.Client) (any, error)
		render func(w io.Writer, v any) error
	)
	switch sub {
	case "state":
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) { return c.State(ctx) }
		render = func(w io.Writer, v any) error { return cruisecontrol.RenderState(w, v.(*cruisecontrol.State)) }
	case "load":
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) { return c.Load(ctx) }
		render = func(w io.Writer, v any) error { return cruisecontrol.RenderLoad(w, v.(*cruisecontrol.BrokerStats)) }
	case "user-tasks":
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) { return c.UserTasks(ctx) }
		render = func(w io.Writer, v any) error { return cruisecontrol.RenderUserTasks(w, v.(*cruisecontrol.UserTasks)) }
	case "stop":
		force := fs.Bool("force", false, "also cancel the movements already handed to Kafka")
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) { return c.StopExecution(ctx, *force) }
		render = func(w io.Writer, v any) error {
			_, err := fmt.Fprintln(w, v.(*cruisecontrol.StopResult).Message)
			return err
		}
	case "proposals":
		goals := fs.String("goals", "", "comma-separated goals (default: default.goals)")
		ignoreCache := fs.Bool("ignore-cache", false, "compute a fresh proposal instead of the precomputed one")
		excluded := fs.String("excluded-topics", "", "regular expression of topics whose replicas must not move")
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) {
			return c.Proposals(ctx, cruisecontrol.ProposalOptions{Goals: splitList(*goals), IgnoreCache: *ignoreCache, ExcludedTopics: *excluded})
		}
		render = renderOptimization
	case "rebalance":
		ef := addExecFlags(fs, false, true)
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) {
			a.announce("rebalance", ef, *common.url, nil)
			return c.Rebalance(ctx, ef.options())
		}
		render = renderOptimization
	case "add-broker", "remove-broker", "demote-broker":
		ef := addExecFlags(fs, true, sub != "demote-broker")
		run = func(ctx context.Context, c *cruisecontrol.Client) (any, error) {
			ids, err := parseIDs(*ef.brokerIDs)
			if err != nil {
				return nil, &usageError{err.Error()}
			}
			if len(ids) == 0 {
				return nil, usagef("-brokers is required, e.g. -brokers 4")
			}
			a.announce(sub, ef, *common.url, ids)
			switch sub {
			case "add-broker":
				return c.AddBrokers(ctx, ids, ef.options())
			case "remove-broker":
				return c.RemoveBrokers(ctx, ids, ef.options())
			default:
				return c.DemoteBrokers(ctx, ids, ef.options())
			}
		}
		render = renderOptimization
	}

	if err := parse(fs, rest); err != nil {
		return err
	}
	client, err := cruisecontrol.New(*common.url,
		cruisecontrol.WithPollInterval(*common.poll),
		cruisecontrol.WithLogger(a.logger),
		// One line per 202 answer on stderr, so stdout stays the result.
		cruisecontrol.WithProgress(func(p cruisecontrol.Progress) { fmt.Fprintln(a.env.Stderr, p.String()) }))
	if err != nil {
		return &usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, *common.timeout)
	defer cancel()
	v, err := run(ctx, client)
	if errors.Is(err, cruisecontrol.ErrConfirmationRequired) {
		return &usageError{err.Error()}
	}
	if err != nil {
		return ccError(sub, err)
	}
	if *common.asJSON {
		enc := json.NewEncoder(a.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return render(a.env.Stdout, v)
}

func renderOptimization(w io.Writer, v any) error {
	return cruisecontrol.RenderOptimization(w, v.(*cruisecontrol.OptimizationResult))
}

// announce logs a real execution before it is requested, so the operator's
// terminal (and any captured log) shows what was asked even if the request
// then hangs.
func (a *app) announce(what string, ef execFlags, url string, brokers []int) {
	if !*ef.execute {
		return
	}
	a.logger.Warn("requesting a real Cruise Control execution", "operation", what, "brokers", brokers, "cruise_control", url)
}

// ccError puts Cruise Control's own reason first: an operator reading
// "refused rebalance: [DiskCapacityGoal] Insufficient capacity..." knows what
// to do; the HTTP status and task id are for the log.
func ccError(sub string, err error) error {
	var apiErr *cruisecontrol.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	detail := fmt.Sprintf("HTTP %d", apiErr.StatusCode)
	if apiErr.UserTaskID != "" {
		detail += ", user task " + apiErr.UserTaskID + " (see `chatctl cc user-tasks`)"
	}
	switch {
	case apiErr.StatusCode >= 500 && isExecCommand(sub):
		return fmt.Errorf("Cruise Control refused %s: %s (%s)", sub, apiErr.Reason(), detail)
	case apiErr.StatusCode >= 400 && apiErr.StatusCode < 500:
		return fmt.Errorf("Cruise Control rejected the %s request: %s (%s)", sub, apiErr.Reason(), detail)
	default:
		return fmt.Errorf("Cruise Control failed %s: %s (%s)", sub, apiErr.Reason(), detail)
	}
}

func isExecCommand(sub string) bool {
	switch sub {
	case "rebalance", "add-broker", "remove-broker", "demote-broker":
		return true
	}
	return false
}
