package app_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// stopKafka SIGSTOPs the three brokers of the local stack (a stall: connections stay
// open, nothing answers) and returns the function that resumes them and waits until the
// cluster is healthy again. The test's cleanup resumes them in any case.
func stopKafka(t *testing.T, h *harness) (resume func()) {
	t.Helper()
	if h.env.Stack == nil {
		t.Skip("the brokers were given through KAFKA_BROKERS: not stopping someone else's cluster")
	}
	h.env.ExclusiveFaults(t)
	var pids []int
	for _, p := range h.env.Stack.Status() {
		if p.Running && p.Name != "postgres" {
			pids = append(pids, p.PID)
		}
	}
	if len(pids) != 3 {
		t.Fatalf("%d brokers running, want 3", len(pids))
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
			if err := h.env.Stack.WaitKafka(context.Background(), 2*time.Minute); err != nil {
				t.Errorf("cluster not healthy after the stall: %v", err)
			}
		})
	}
	t.Cleanup(resume)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			resume()
			t.Fatalf("SIGSTOP %d: %v", pid, err)
		}
	}
	return resume
}

// A Kafka stall longer than a ping's timeout disconnects nobody: idle connections answer
// their pings throughout (the read loop never waits for Kafka), and a client that keeps
// sending gets a prompt `unavailable` for the sends that cannot be accepted instead of
// a connection that stops answering.
//
// Not parallel: it stops the brokers every other test of the package writes to.
func TestKafkaStall_keeps_connections_and_answers_unavailable(t *testing.T) {
	const (
		idle    = 100
		senders = 3
		stall   = 15 * time.Second
	)
	h := start(t, func(c *app.Config) {
		// Pings every second, each given 3 s for its pong: a read loop held by Kafka
		// for the stall's 15 s misses several.
		c.PingInterval, c.WriteTimeout = time.Second, 3*time.Second
		c.IdleTimeout = 5 * time.Minute
	})
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", bob.Token, nil)

	idlers := make([]*gwtest.Client, idle)
	for i := range idlers {
		idlers[i] = h.dial(t, bob)
	}
	send := make([]*gwtest.Client, senders)
	for i := range send {
		send[i] = h.dial(t, alice)
		// One accepted send each before the stall: the path works.
		ref := fmt.Sprint("warm-", i)
		send[i].Send(map[string]any{"type": "send", "room": "general", "client_msg_id": ref, "text": "hi", "ref": ref})
		if f := send[i].Expect("ack", ref); f.Str("status") != "accepted" {
			t.Fatalf("warm-up send: %v", f)
		}
	}

	resume := stopKafka(t, h)
	stalled := time.Now()
	// Each sender sends 20 frames a second for the whole stall and counts what comes back
	// while the brokers are still stopped.
	type tally struct {
		sent, unavailable, other int
		firstUnavailable         time.Duration
	}
	tallies := make([]tally, senders)
	over := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range send {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			tl := &tallies[i]
			for {
				select {
				case <-over:
					return
				case <-tick.C:
				}
				if c.Err() != nil {
					return
				}
				ref := fmt.Sprintf("s%d-%d", i, tl.sent)
				c.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": ref, "text": "during the stall", "ref": ref})
				tl.sent++
				for {
					f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "error" || f.Type() == "ack" }, 0)
					if !ok {
						break
					}
					switch {
					case f.Type() == "error" && code(f) == "unavailable":
						if tl.unavailable == 0 {
							tl.firstUnavailable = time.Since(stalled)
						}
						tl.unavailable++
					case f.Type() == "error":
						tl.other++
						t.Errorf("sender %d: unexpected error during the stall: %v", i, f)
					}
				}
			}
		}()
	}
	// The stall lasts its 15 s whatever the senders see.
	<-time.After(stall)
	close(over)
	wg.Wait()
	resume()
	t.Logf("stall of %v over; senders: %+v", time.Since(stalled).Round(time.Millisecond), tallies)

	// Every connection is still there: one more frame each must be answered.
	lost := 0
	for i, c := range idlers {
		if err := c.Err(); err != nil {
			lost++
			t.Errorf("idle connection %d ended during the stall: %v", i, err)
		}
	}
	for i, c := range send {
		if err := c.Err(); err != nil {
			t.Errorf("sender %d's connection ended during the stall: %v", i, err)
		}
		if tallies[i].unavailable == 0 {
			t.Errorf("sender %d got no `unavailable` while Kafka was stopped (%+v)", i, tallies[i])
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d idle connections lost", lost, idle)
	}
	for i, c := range idlers {
		ref := fmt.Sprint("after-", i)
		c.Send(map[string]any{"type": "ping", "ref": ref})
		c.Expect("pong", ref)
	}
}
