package procstat

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	line := "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000000 500 18446744073709551615"
	st, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 1234 || st.Comm != "my (odd) proc" || st.PPID != 1 || st.Threads != 7 {
		t.Fatalf("%+v", st)
	}
	if st.CPU != 3*time.Second { // (250+50) ticks at 100 Hz
		t.Fatalf("cpu %v", st.CPU)
	}
	if _, err := ParseStat([]byte("garbage")); err == nil {
		t.Fatal("want error")
	}
}

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	end := time.Now().Add(60 * time.Millisecond)
	for time.Now().Before(end) { // burn some CPU
	}
	c, err := CPU(pid)
	if err != nil || c <= 0 {
		t.Fatalf("cpu %v %v", c, err)
	}
	rss, err := RSS(pid)
	if err != nil || rss < 1<<20 {
		t.Fatalf("rss %d %v", rss, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := ListenerPID(l.Addr().(*net.TCPAddr).Port); got != pid {
		t.Fatalf("ListenerPID = %d, want %d", got, pid)
	}
	s := NewSampler(map[string]int{"self": pid}, "self")
	s.Start()
	end = time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	u := s.Stop()
	if u.CPUSeconds["self"] <= 0 || u.WallS < 0.05 {
		t.Fatalf("%+v", u)
	}
}

func TestParseMachineCPU(t *testing.T) {
	stat := "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 50 10 15 2000 25 3 3 4 0 0\n"
	got, err := parseMachineCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 171 * time.Second / 100; got != want { // 100+20+30+6+7+8 ticks
		t.Fatalf("busy %v, want %v", got, want)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2 3")); err == nil {
		t.Fatal("want error")
	}
}

func TestSamplerMachine(t *testing.T) {
	s := NewSampler(map[string]int{"self": os.Getpid()})
	s.Machine = true
	s.Start()
	// Spin until this process has itself used 200 ms of CPU: /proc/stat advances a tick at
	// a time on each CPU while the process's own figure is finer, so the machine may lag
	// the process by up to one tick per CPU at each end of the window, and a short window
	// would be mostly that rounding.
	start, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := CPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if c-start >= 200*time.Millisecond {
			break
		}
	}
	u := s.Stop()
	rounding := (2 * time.Duration(runtime.NumCPU()) * time.Second / clockTicks).Seconds()
	if u.CPUSeconds[Machine] <= 0 || u.CPUSeconds[Machine]+rounding < u.CPUSeconds["self"] {
		t.Fatalf("machine %v, self %v (rounding allowed %v)", u.CPUSeconds[Machine], u.CPUSeconds["self"], rounding)
	}
	if _, ok := u.CPUSeconds[Other]; !ok {
		t.Fatal("no other")
	}
}

func TestThreadCPU(t *testing.T) {
	compiler := func(comm string) bool { return strings.Contains(comm, "CompilerThre") }
	all := func(string) bool { return true }
	for _, tc := range []struct {
		name    string
		pid     int
		match   func(string) bool
		want    time.Duration
		wantErr bool
	}{
		{"the JIT compiler threads of a JVM", 4242, compiler, 3600 * time.Millisecond, false}, // (300+12+40+8) ticks
		{"every thread", 4242, all, 15100 * time.Millisecond, false},
		{"no thread matches", 4242, func(string) bool { return false }, 0, false},
		{"no such process", 4243, all, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := threadCPU("testdata/proc", tc.pid, tc.match)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("threadCPU = %v, %v; want %v (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestAllowedCPUs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pid     int
		want    string
		wantErr bool
	}{
		{"pinned to one CPU", 4244, "1", false},
		{"free to run on both", 4245, "0-1", false},
		{"a status without the field", 4246, "", true},
		{"no such process", 4247, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := allowedCPUs("testdata/proc", tc.pid)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("allowedCPUs = %q, %v; want %q (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
