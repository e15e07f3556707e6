package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// The profile scenario counts Kafka requests where they are served: the brokers' own
// counters (BrokerTopicMetrics per topic, RequestMetrics per request type), read over JMX.
// The local brokers run without a JMX port, so a small Java program attaches to their
// JVMs (same user, this machine only) and starts the JVM's local management agent, which
// changes nothing else about them. It needs a JDK (the local stack needs one anyway);
// without it the profile reports no request counts and says why.

//go:embed jmx/KafkaRequests.java
var kafkaRequestsJava []byte

// brokerCounters is the running JMX reader.
type brokerCounters struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	dir string
}

// startBrokerCounters attaches to the broker JVMs with these pids.
func startBrokerCounters(ctx context.Context, pids []int) (*brokerCounters, error) {
	if len(pids) == 0 {
		return nil, errors.New("no broker process found")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("no java on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "chatbench-jmx-")
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "KafkaRequests.java")
	if err := os.WriteFile(src, kafkaRequestsJava, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"-Xshare:auto", "-XX:TieredStopAtLevel=1", src}
	for _, p := range pids {
		args = append(args, strconv.Itoa(p))
	}
	cmd := exec.Command(java, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sc := bufio.NewScanner(outPipe)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	c := &brokerCounters{cmd: cmd, in: in, out: sc, dir: dir}
	ready := make(chan error, 1)
	go func() {
		_, err := c.read()
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(60 * time.Second):
		err = errors.New("no answer within 60s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("JMX reader: %w", err)
	}
	return c, nil
}

func (c *brokerCounters) read() (map[string]float64, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("JMX reader exited")
	}
	var m map[string]any
	if err := json.Unmarshal(c.out.Bytes(), &m); err != nil {
		return nil, err
	}
	if e, ok := m["error"]; ok {
		return nil, fmt.Errorf("JMX: %v", e)
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out, nil
}

// snapshot returns the brokers' cumulative counters now.
func (c *brokerCounters) snapshot() (map[string]float64, error) {
	if c == nil {
		return nil, errors.New("no JMX reader")
	}
	if _, err := io.WriteString(c.in, "snap\n"); err != nil {
		return nil, err
	}
	return c.read()
}

func (c *brokerCounters) close() {
	if c == nil {
		return
	}
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(c.dir)
}

// counterDelta is after - before for every key of after. A broker drops a topic's
// counters when it stops leading the topic's partitions (a broker restarted, a topic was
// deleted) and starts them again from zero, so a counter that went down is left out and
// named in reset.
func counterDelta(before, after map[string]float64) (delta map[string]float64, reset []string) {
	delta = make(map[string]float64, len(after))
	for k, v := range after {
		d := v - before[k]
		if d < 0 {
			reset = append(reset, k)
			continue
		}
		if d > 0 {
			delta[k] = d
		}
	}
	sort.Strings(reset)
	return delta, reset
}
