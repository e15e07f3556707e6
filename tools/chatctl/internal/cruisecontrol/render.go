package cruisecontrol

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ShortGoal strips the Java package from a goal class name; Cruise Control
// accepts both forms and the short one is what operators type.
func ShortGoal(goal string) string {
	if i := strings.LastIndexByte(goal, '.'); i >= 0 {
		return goal[i+1:]
	}
	return goal
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// RenderState writes a one-screen summary of Cruise Control's state.
func RenderState(w io.Writer, s *State) error {
	t := newTable(w)
	fmt.Fprintln(t, "COMPONENT\tSTATE\tDETAILS")
	if m := s.MonitorState; m != nil {
		details := fmt.Sprintf("trained %.0f%%, windows %.0f, valid partitions %.0f/%.0f (%.1f%% coverage), flawed %.0f",
			m.TrainingPct, m.NumMonitoredWindows, m.NumValidPartitions, m.NumTotalPartitions, m.MonitoringCoveragePct, m.NumFlawedPartitions)
		if m.Error != "" {
			details += ", error: " + m.Error
		}
		fmt.Fprintf(t, "monitor\t%s\t%s\n", m.State, details)
	}
	if e := s.ExecutorState; e != nil {
		details := "idle"
		if e.State != "NO_TASK_IN_PROGRESS" {
			details = fmt.Sprintf("task %s, partitions %d/%d done (%d in progress), data %d/%d MB, leaders %d/%d done",
				orDash(e.TriggeredUserTaskID), e.NumFinishedPartitionMovements, e.NumTotalPartitionMovements,
				e.NumInProgressPartitionMovements, e.FinishedDataMovementMB, e.TotalDataToMoveMB,
				e.NumFinishedLeadershipMovements, e.NumTotalLeadershipMovements)
		}
		if len(e.RecentlyRemovedBrokers) > 0 {
			details += ", recently removed " + joinInts(e.RecentlyRemovedBrokers)
		}
		if len(e.RecentlyDemotedBrokers) > 0 {
			details += ", recently demoted " + joinInts(e.RecentlyDemotedBrokers)
		}
		if e.Error != "" {
			details += ", error: " + e.Error
		}
		fmt.Fprintf(t, "executor\t%s\t%s\n", e.State, details)
	}
	if a := s.AnalyzerState; a != nil {
		state := "NOT_READY"
		if a.IsProposalReady {
			state = "PROPOSAL_READY"
		}
		goals := make([]string, len(a.ReadyGoals))
		for i, g := range a.ReadyGoals {
			goals[i] = ShortGoal(g)
		}
		sort.Strings(goals)
		fmt.Fprintf(t, "analyzer\t%s\t%d ready goals: %s\n", state, len(goals), orDash(strings.Join(goals, ", ")))
	}
	if d := s.AnomalyDetectorState; d != nil {
		details := fmt.Sprintf("balancedness %.1f, goal violations %d, broker failures %d, disk failures %d, topic anomalies %d",
			d.BalancednessScore, len(d.RecentGoalViolations), len(d.RecentBrokerFailures), len(d.RecentDiskFailures), len(d.RecentTopicAnomalies))
		if d.OngoingSelfHealingAnomaly != "" {
			details += ", self-healing: " + d.OngoingSelfHealingAnomaly
		}
		selfHealing := "self-healing off"
		if len(d.SelfHealingEnabled) > 0 {
			selfHealing = "self-healing on: " + strings.Join(d.SelfHealingEnabled, ",")
		}
		fmt.Fprintf(t, "anomaly-detector\t%s\t%s\n", selfHealing, details)
	}
	return t.Flush()
}

// RenderOptimization writes the summary and the per-goal outcome of a proposal
// or of an executed request.
func RenderOptimization(w io.Writer, r *OptimizationResult) error {
	mode := "DRY RUN: nothing was moved"
	if !r.DryRun {
		mode = "EXECUTION STARTED: follow it with `chatctl cc state`"
	}
	fmt.Fprintln(w, mode)
	if r.UserTaskID != "" {
		fmt.Fprintf(w, "user task: %s\n", r.UserTaskID)
	}
	s := r.Summary
	t := newTable(w)
	fmt.Fprintln(t, "SUMMARY\tVALUE")
	fmt.Fprintf(t, "replica movements\t%d\n", s.NumReplicaMovements)
	fmt.Fprintf(t, "data to move\t%d MB\n", s.DataToMoveMB)
	fmt.Fprintf(t, "leader movements\t%d\n", s.NumLeaderMovements)
	if s.NumIntraBrokerReplicaMovements > 0 {
		fmt.Fprintf(t, "intra-broker movements\t%d (%d MB)\n", s.NumIntraBrokerReplicaMovements, s.IntraBrokerDataToMoveMB)
	}
	fmt.Fprintf(t, "balancedness\t%.2f -> %.2f\n", s.OnDemandBalancednessScoreBefore, s.OnDemandBalancednessScoreAfter)
	fmt.Fprintf(t, "metric windows\t%d (%.1f%% of partitions monitored)\n", s.RecentWindows, s.MonitoredPartitionsPercentage)
	if len(s.ExcludedTopics) > 0 {
		fmt.Fprintf(t, "excluded topics\t%s\n", strings.Join(s.ExcludedTopics, ","))
	}
	if s.ProvisionStatus != "" {
		fmt.Fprintf(t, "provisioning\t%s\n", s.ProvisionStatus)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "GOAL\tSTATUS\tTIME")
	for _, g := range r.GoalSummary {
		fmt.Fprintf(t, "%s\t%s\t%s\n", ShortGoal(g.Goal), g.Status, time.Duration(g.OptimizationTimeMs)*time.Millisecond)
	}
	return t.Flush()
}

// RenderLoad writes one row per broker.
func RenderLoad(w io.Writer, s *BrokerStats) error {
	brokers := append([]BrokerLoad(nil), s.Brokers...)
	sort.Slice(brokers, func(i, j int) bool { return brokers[i].Broker < brokers[j].Broker })
	t := newTable(w)
	fmt.Fprintln(t, "BROKER\tHOST\tSTATE\tREPLICAS\tLEADERS\tDISK MB\tDISK %\tCPU %\tNW IN KB/s\tNW OUT KB/s")
	for _, b := range brokers {
		fmt.Fprintf(t, "%d\t%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\n",
			b.Broker, b.Host, b.BrokerState, b.Replicas, b.Leaders, b.DiskMB, b.DiskPct, b.CPUPct,
			b.LeaderNwInRate+b.FollowerNwInRate, b.NwOutRate)
	}
	return t.Flush()
}

// RenderUserTasks writes one row per remembered request.
func RenderUserTasks(w io.Writer, u *UserTasks) error {
	t := newTable(w)
	fmt.Fprintln(t, "USER TASK ID\tSTATUS\tSTARTED\tCLIENT\tREQUEST")
	for _, task := range u.UserTasks {
		started := task.StartMs
		if ms, err := strconv.ParseInt(task.StartMs, 10, 64); err == nil {
			started = time.UnixMilli(ms).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", task.UserTaskID, task.Status, started, task.ClientIdentity, task.RequestURL)
	}
	return t.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
