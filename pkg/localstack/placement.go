package localstack

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// EnvPinCPUs turns on one-CPU placement for the processes a stack starts (devstack, and
// pkg/stacktest for the brokers it restarts): "1"/"true" on, unset or "0"/"false" off.
//
// Why: on the reference machine (a nested Firecracker VM, two vCPUs) a thread that wakes a
// thread on the other CPU costs about 27 µs of CPU and 47 µs of wall time per round trip,
// against 6.5 µs when both share a CPU, because the wake-up is an inter-processor interrupt
// the hypervisors handle. A Kafka request crosses threads several times inside a broker; a
// broker, a Go service or PostgreSQL whose threads all share one CPU hands work between them
// without those interrupts (README, Performance, tenth round). A Go service started on one
// CPU also runs with GOMAXPROCS 1, since the runtime reads its affinity at start.
const EnvPinCPUs = "KCHAT_PIN_CPUS"

// PinCPUsFromEnv reads EnvPinCPUs; a value that is not a boolean is an error, not "off".
func PinCPUsFromEnv() (bool, error) {
	v := strings.TrimSpace(os.Getenv(EnvPinCPUs))
	if v == "" {
		return false, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1, 0, true or false", EnvPinCPUs, v)
	}
	return on, nil
}

// placementOrder deals the stack's processes out to CPUs in turn. The order puts the three
// brokers on different CPUs first (on two CPUs: 1 and 3 together) and then alternates the
// next-busiest processes, which on two CPUs splits the measured load of an e2e run at
// 500 msg/s about evenly: kafka-1, kafka-3, persistence, gateway-2, fanout on CPU 0;
// kafka-2, PostgreSQL, gateway-1, notification on CPU 1.
var placementOrder = []string{"kafka-1", "kafka-2", "kafka-3", "postgres", "persistence", "gateway-1", "gateway-2", "notification", "fanout"}

// cpuFor says which CPU (of cpus) the process called name starts on; false leaves it free
// to run anywhere: with fewer than two CPUs, and for helpers outside the platform's path
// (Jaeger, the object store). Gateways past the second continue the rotation.
func cpuFor(name string, cpus int) (int, bool) {
	if cpus < 2 {
		return 0, false
	}
	for i, n := range placementOrder {
		if n == name {
			return i % cpus, true
		}
	}
	if g, ok := strings.CutPrefix(name, "gateway-"); ok {
		if n, err := strconv.Atoi(g); err == nil && n > 2 {
			return (len(placementOrder) + n - 3) % cpus, true
		}
	}
	return 0, false
}

// onlineCPUs is the number of CPUs this process may run on (what the stack's processes would
// otherwise share).
func onlineCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return set.Count()
}

// startOnCPU starts cmd with every thread it will ever have on one CPU. A child inherits the
// affinity of the thread that forks it, so the fork happens on a thread of its own that is
// pinned first and never unlocked: the runtime ends that thread with its goroutine instead
// of handing a pinned thread to other goroutines. Setting the child's affinity after Start
// would race the threads a JVM starts at once.
func startOnCPU(cmd *exec.Cmd, cpu int) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			started <- fmt.Errorf("pinning to CPU %d: %w", cpu, err)
			return
		}
		started <- cmd.Start()
	}()
	return <-started
}
