package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Fault kinds. Each is injected, held, then undone (the part restarted or resumed).
const (
	FaultBroker     = "kafka-broker-sigkill"     // a broker that is not the controller leader
	FaultController = "kafka-controller-sigkill" // the KRaft quorum leader
	// FaultCoordinator is the broker coordinating persistence's consumer group: its
	// successor must load the group, and the members rejoin.
	FaultCoordinator  = "kafka-coordinator-sigkill"
	FaultPersistence  = "persistence-sigkill" // the instance running the outbox relay: the standby must take over
	FaultFanout       = "fanout-sigkill"
	FaultNotification = "notification-sigkill"
	FaultPostgres     = "postgres-restart" // immediate shutdown (as a crash), then start: WAL replay
	FaultGateway      = "gateway-sigkill"  // the gateway with more clients: they resume on the other
	FaultPause        = "persistence-sigstop"
)

// AllFaults is the full suite's order.
var AllFaults = []string{FaultBroker, FaultController, FaultCoordinator, FaultPersistence, FaultFanout, FaultNotification,
	FaultPostgres, FaultGateway, FaultPause}

// NeedsLocalStack reports whether a fault kills or restarts the shared Kafka or
// PostgreSQL, which is only allowed on the repository's own local stack.
func NeedsLocalStack(kind string) bool {
	return kind == FaultBroker || kind == FaultController || kind == FaultCoordinator || kind == FaultPostgres
}

// Timing of a fault: Hold is how long the part stays down.
type Timing struct {
	Hold  time.Duration
	Pause time.Duration // SIGSTOP length; longer than the consumer session timeout (6 s)
}

// Inject applies one fault and undoes it; it returns when the part is healthy again.
// Every step is recorded in the history (fault, restore, ready) so that the checker can
// measure recovery from the same clock as the operations.
func (p *Platform) Inject(ctx context.Context, kind string, tm Timing, rec *Recorder, users []*User) error {
	mark := func(k, target string) { rec.Add(Op{Kind: k, Note: kind, Gw: target}) }
	switch kind {
	case FaultBroker, FaultController, FaultCoordinator:
		st := p.env.Stack
		if st == nil {
			return fmt.Errorf("%s needs the local stack", kind)
		}
		// Never take a second broker down: with min.insync.replicas=2 that is an outage
		// by design, not a fault the platform is meant to ride out.
		if err := st.WaitKafka(ctx, 3*time.Minute); err != nil {
			return err
		}
		state, err := st.KafkaState(ctx)
		if err != nil {
			return err
		}
		id := state.QuorumLeader
		switch kind {
		case FaultBroker:
			// The broker leading most of this run's partitions, so that each injection
			// moves leadership (a broker just restarted leads nothing until Kafka's
			// periodic preferred-leader election, and killing it again would be free).
			leads := p.leaderCounts(ctx)
			id = -1
			for _, b := range []int{1, 2, 3} {
				if b != state.QuorumLeader && (id < 0 || leads[b] > leads[id]) {
					id = b
				}
			}
		case FaultCoordinator:
			if id, err = p.persistenceCoordinator(ctx); err != nil {
				return err
			}
		}
		if id < 1 {
			return fmt.Errorf("no broker to kill for %s: %+v", kind, state)
		}
		target := fmt.Sprintf("kafka-%d", id)
		if kind == FaultCoordinator && id == state.QuorumLeader {
			// Two failovers at once; recorded so that its recovery is read as such.
			target += " (also quorum leader)"
		}
		mark(OpFault, target)
		if err := st.KillBroker(id); err != nil {
			return err
		}
		sleep(ctx, tm.Hold)
		mark(OpRestore, target)
		if err := st.StartBroker(ctx, id); err != nil {
			return err
		}
		mark(OpReady, target)
	case FaultPostgres:
		st := p.env.Stack
		if st == nil {
			return fmt.Errorf("%s needs the local stack", kind)
		}
		mark(OpFault, "postgres")
		if err := st.RestartPostgres(ctx, true); err != nil {
			return err
		}
		mark(OpReady, "postgres")
	case FaultPersistence:
		leader := p.RelayLeader()
		if leader == "" {
			leader = persistenceNames[0]
		}
		mark(OpFault, leader)
		p.Kill(leader)
		// The standby relay must take over while the leader is down, not once it is back.
		other := p.waitRelay(ctx, tm.Hold+5*time.Second)
		if other != "" {
			mark(OpRestore, other+" relays")
		}
		sleep(ctx, tm.Hold)
		mark(OpRestore, leader)
		p.Start(leader)
		p.WaitReady(leader, 2*time.Minute)
		mark(OpReady, leader)
		if other == "" {
			return fmt.Errorf("no standby outbox relay took over from %s", leader)
		}
	case FaultPause:
		// The relay leader: the worst case, as its lock session stays open while it is
		// stopped (see docs/reliability.md).
		target := p.RelayLeader()
		if target == "" {
			target = persistenceNames[0]
		}
		mark(OpFault, target)
		p.Signal(target, syscall.SIGSTOP)
		sleep(ctx, tm.Pause)
		mark(OpRestore, target)
		p.Signal(target, syscall.SIGCONT)
		p.WaitReady(target, 2*time.Minute)
		mark(OpReady, target)
	case FaultFanout, FaultNotification:
		name := map[string]string{FaultFanout: "fanout", FaultNotification: "notification"}[kind]
		mark(OpFault, name)
		p.Kill(name)
		sleep(ctx, tm.Hold)
		mark(OpRestore, name)
		p.Start(name)
		p.WaitReady(name, 2*time.Minute)
		mark(OpReady, name)
	case FaultGateway:
		// The gateway most clients are on, so that the fault hits someone.
		count := map[string]int{}
		for _, u := range users {
			count[u.Gateway()]++
		}
		idx := 0
		for i, ws := range p.GatewayWS {
			if count[ws] > count[p.GatewayWS[idx]] {
				idx = i
			}
		}
		name := p.Gateways[idx]
		mark(OpFault, name)
		p.Kill(name)
		sleep(ctx, tm.Hold)
		mark(OpRestore, name)
		p.Start(name)
		p.WaitReady(name, 2*time.Minute)
		mark(OpReady, name)
	default:
		return fmt.Errorf("unknown fault %q", kind)
	}
	return nil
}

// leaderCounts counts, per broker id, the partitions of this platform's topics it leads.
func (p *Platform) leaderCounts(ctx context.Context) map[int]int {
	out := map[int]int{}
	md, err := p.env.Client().Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return out
	}
	for _, t := range md.Topics {
		if !strings.HasPrefix(t.Name, p.prefix) {
			continue
		}
		for _, part := range t.Partitions {
			out[part.Leader.ID]++
		}
	}
	return out
}

// persistenceCoordinator returns the node id of the broker coordinating persistence's
// consumer group (it may also be the quorum leader: then both fail over at once).
func (p *Platform) persistenceCoordinator(ctx context.Context) (int, error) {
	res, err := p.env.Client().FindCoordinator(ctx, &kafka.FindCoordinatorRequest{
		Key: p.persistenceGroup, KeyType: kafka.CoordinatorKeyTypeConsumer})
	if err == nil && res.Error != nil {
		err = res.Error
	}
	if err != nil {
		return 0, fmt.Errorf("coordinator of %s: %w", p.persistenceGroup, err)
	}
	return res.Coordinator.NodeID, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Shuffled returns kinds in a random but reproducible order (a mixed run's sequence).
func Shuffled(kinds []string, seed int64) []string {
	out := slices.Clone(kinds)
	x := uint64(seed)*6364136223846793005 + 1442695040888963407
	for i := len(out) - 1; i > 0; i-- {
		x = x*6364136223846793005 + 1442695040888963407
		j := int((x >> 33) % uint64(i+1))
		out[i], out[j] = out[j], out[i]
	}
	return out
}
