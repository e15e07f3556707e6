package localstack

import (
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCPUFor(t *testing.T) {
	tests := []struct {
		name   string
		cpus   int
		cpu    int
		pinned bool
	}{
		{"kafka-1", 2, 0, true},
		{"kafka-2", 2, 1, true},
		{"kafka-3", 2, 0, true},
		{"postgres", 2, 1, true},
		{"persistence", 2, 0, true},
		{"gateway-1", 2, 1, true},
		{"gateway-2", 2, 0, true},
		{"notification", 2, 1, true},
		{"fanout", 2, 0, true},
		{"gateway-3", 2, 1, true},
		{"gateway-4", 2, 0, true},
		{"kafka-3", 4, 2, true},
		{"postgres", 4, 3, true},
		{"persistence", 4, 0, true},
		{"kafka-1", 1, 0, false},
		{"jaeger", 2, 0, false},
		{"gateway-x", 2, 0, false},
	}
	for _, tt := range tests {
		cpu, pinned := cpuFor(tt.name, tt.cpus)
		if cpu != tt.cpu || pinned != tt.pinned {
			t.Errorf("cpuFor(%q, %d) = %d, %v; want %d, %v", tt.name, tt.cpus, cpu, pinned, tt.cpu, tt.pinned)
		}
	}
}

func TestPinCPUsFromEnv(t *testing.T) {
	tests := []struct {
		value   string
		want    bool
		wantErr bool
	}{
		{"", false, false},
		{"1", true, false},
		{"true", true, false},
		{"0", false, false},
		{"yes", false, true},
		{"2", false, true},
	}
	for _, tt := range tests {
		t.Setenv(EnvPinCPUs, tt.value)
		got, err := PinCPUsFromEnv()
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s=%q: got %v, %v; want %v, error %v", EnvPinCPUs, tt.value, got, err, tt.want, tt.wantErr)
		}
	}
}

// A process started on a CPU has every thread there, and the starting program's own
// threads are not left pinned: a child started afterwards may run anywhere again.
func TestStartOnCPU(t *testing.T) {
	cpus := onlineCPUs()
	if cpus < 2 {
		t.Skip("needs two CPUs to tell a pinned process from a free one")
	}
	sleep := func() *exec.Cmd { return exec.Command("sleep", "30") }
	pinned := sleep()
	if err := startOnCPU(pinned, cpus-1); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pinned.Process.Kill(); _ = pinned.Wait() }()
	if got, want := allowedCPUs(t, pinned.Process.Pid), strconv.Itoa(cpus-1); got != want {
		t.Errorf("pinned child runs on CPUs %q, want %q", got, want)
	}
	for range 20 { // the runtime may fork the next one from any of its threads
		free := sleep()
		if err := free.Start(); err != nil {
			t.Fatal(err)
		}
		got := allowedCPUs(t, free.Process.Pid)
		_ = free.Process.Kill()
		_ = free.Wait()
		if got == strconv.Itoa(cpus-1) {
			t.Fatalf("a child started later is pinned too (CPUs %q): the forking thread kept the affinity", got)
		}
	}
}

// allowedCPUs asks the kernel where pid may run, as a list such as "1" or "0-1".
func allowedCPUs(t *testing.T, pid int) string {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []string
	for c := range runtime.NumCPU() {
		if set.IsSet(c) {
			cpus = append(cpus, strconv.Itoa(c))
		}
	}
	return strings.Join(cpus, ",")
}
