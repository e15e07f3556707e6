// Package procstat reads CPU time and memory of processes from /proc (Linux only), and
// finds the process listening on a local TCP port.
package procstat

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// Stat is the part of /proc/<pid>/stat chatbench uses.
type Stat struct {
	PID     int
	Comm    string
	PPID    int
	CPU     time.Duration // utime + stime
	Threads int
}

// ParseStat parses the content of /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func ParseStat(b []byte) (Stat, error) {
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return Stat{}, fmt.Errorf("procstat: malformed stat")
	}
	var st Stat
	var err error
	if st.PID, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return Stat{}, fmt.Errorf("procstat: pid: %w", err)
	}
	st.Comm = s[open+1 : close]
	f := strings.Fields(s[close+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
	if len(f) < 18 {
		return Stat{}, fmt.Errorf("procstat: short stat")
	}
	st.PPID, _ = strconv.Atoi(f[1])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Stat{}, fmt.Errorf("procstat: cpu fields")
	}
	st.CPU = time.Duration(ut+stime) * time.Second / clockTicks
	st.Threads, _ = strconv.Atoi(f[17])
	return st, nil
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// AllowedCPUs is the list of CPUs pid may run on, as the kernel prints it ("0-1", "1"):
// a stack started with one CPU per process (localstack's KCHAT_PIN_CPUS) shows here.
func AllowedCPUs(pid int) (string, error) {
	return allowedCPUs("/proc", pid)
}

func allowedCPUs(procRoot string, pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("procstat: no Cpus_allowed_list in %d's status", pid)
}

// CPU is the CPU time (user + system) pid has used so far.
func CPU(pid int) (time.Duration, error) {
	st, err := ReadStat(pid)
	return st.CPU, err
}

// ThreadCPU is the CPU time used so far by the threads of pid whose name (comm, at most
// 15 bytes) match accepts: a JVM names its threads, so this tells the JIT compilers'
// share of a broker from the rest.
func ThreadCPU(pid int, match func(comm string) bool) (time.Duration, error) {
	return threadCPU("/proc", pid, match)
}

func threadCPU(procRoot string, pid int, match func(string) bool) (time.Duration, error) {
	stats, err := filepath.Glob(filepath.Join(procRoot, strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil {
		return 0, err
	}
	if len(stats) == 0 {
		return 0, fmt.Errorf("procstat: no threads of %d", pid)
	}
	var sum time.Duration
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended since the listing
		}
		st, err := ParseStat(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if match(st.Comm) {
			sum += st.CPU
		}
	}
	return sum, nil
}

// RSS is the resident set size of pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("procstat: no VmRSS for %d", pid)
}

// Tree returns pid and all its descendants.
func Tree(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(p); err == nil {
			children[st.PPID] = append(children[st.PPID], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// TreeCPU is the CPU time of pid and its descendants (PostgreSQL's backends are children
// of the postmaster). Processes that ended in between are not counted, which is why
// chatbench measures deltas over short windows.
func TreeCPU(pid int) time.Duration {
	var sum time.Duration
	for _, p := range Tree(pid) {
		if c, err := CPU(p); err == nil {
			sum += c
		}
	}
	return sum
}

// ListenerPID finds the process with a TCP socket listening on port (IPv4 or IPv6), or 0.
func ListenerPID(port int) int {
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for inode := range listeningInodes(file, port) {
			inodes[inode] = true
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

func listeningInodes(file string, port int) map[string]bool {
	out := map[string]bool{}
	f, err := os.Open(file)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local_address rem_address st ... inode is field 9.
		if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], want) {
			continue
		}
		out[fs[9]] = true
	}
	return out
}

// MachineCPU is the CPU time every CPU of the machine has spent busy since boot (user,
// nice, system, irq, softirq and steal: everything but idle and iowait), from /proc/stat.
func MachineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(b)
}

func parseMachineCPU(b []byte) (time.Duration, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("procstat: malformed /proc/stat")
	}
	var busy int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// Machine and Other are the names under which a Sampler with Machine set reports the
// whole machine's busy CPU and the part of it the sampled processes do not account for.
const (
	Machine = "machine"
	Other   = "other"
)

// Sampler measures CPU used by a set of named processes over a window.
type Sampler struct {
	// Machine adds the whole machine's busy CPU and what the processes leave of it.
	Machine bool
	pids    map[string]int
	tree    map[string]bool
	start   map[string]time.Duration
	t0      time.Time
}

// NewSampler tracks the given processes; names in trees count descendants too.
func NewSampler(pids map[string]int, trees ...string) *Sampler {
	s := &Sampler{pids: map[string]int{}, tree: map[string]bool{}}
	for k, v := range pids {
		if v > 0 {
			s.pids[k] = v
		}
	}
	for _, t := range trees {
		s.tree[t] = true
	}
	return s
}

func (s *Sampler) read() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range s.pids {
		if s.tree[name] {
			out[name] = TreeCPU(pid)
		} else if c, err := CPU(pid); err == nil {
			out[name] = c
		}
	}
	if s.Machine {
		if c, err := MachineCPU(); err == nil {
			out[Machine] = c
		}
	}
	return out
}

// Start begins a window.
func (s *Sampler) Start() { s.start, s.t0 = s.read(), time.Now() }

// Usage is CPU used per process since Start, in cores (CPU seconds per wall second) and
// CPU seconds.
type Usage struct {
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	Cores      map[string]float64 `json:"cores"`
	WallS      float64            `json:"wall_s"`
}

// Stop ends the window.
func (s *Sampler) Stop() Usage {
	end := s.read()
	wall := time.Since(s.t0).Seconds()
	u := Usage{CPUSeconds: map[string]float64{}, Cores: map[string]float64{}, WallS: wall}
	for name, c := range end {
		d := (c - s.start[name]).Seconds()
		if d < 0 {
			d = 0
		}
		u.CPUSeconds[name] = d
	}
	if m, ok := u.CPUSeconds[Machine]; ok {
		other := m
		for name, d := range u.CPUSeconds {
			if name != Machine {
				other -= d
			}
		}
		u.CPUSeconds[Other] = max(other, 0)
	}
	for name, d := range u.CPUSeconds {
		if wall > 0 {
			u.Cores[name] = d / wall
		}
	}
	return u
}
