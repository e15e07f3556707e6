// Package localstack runs the platform's backing services on 127.0.0.1 without Docker:
// a three-node Apache Kafka cluster in KRaft mode (combined broker+controller JVMs with a
// static quorum) from Maven Central jars, and a PostgreSQL server from relocatable binaries.
// Each broker JVM carries the Prometheus JMX exporter java agent, so its metrics (replica
// health, controller, traffic) can be scraped over HTTP like the services' /metrics.
//
// Every process it starts is recorded in a pid file under the state directory, so that
// Down stops exactly those and a second Up leaves running ones alone.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrPrerequisite marks a missing tool or a failed download; its message says what to do.
var ErrPrerequisite = errors.New("prerequisite missing")

// ErrPortInUse means something that this stack did not start holds a port it needs.
var ErrPortInUse = errors.New("port in use")

// Config says where the stack lives and which ports it uses. Zero values mean defaults.
type Config struct {
	// Root is the repository root; the Maven poms live under deploy/localstack/maven.
	Root string
	// StateDir holds data, logs and pid files (default Root/.cache/stack).
	StateDir string
	// CacheDir holds downloaded artifacts (default Root/.cache).
	CacheDir        string
	KafkaPorts      []int // default 9092, 9093, 9094
	ControllerPorts []int // default 19092, 19093, 19094
	MetricsPorts    []int // default 7071, 7072, 7073: the brokers' JMX exporters (/metrics)
	PostgresPort    int   // default 5433
	KafkaHeapMB     int   // default 512 per JVM: three of them share 2 cores
	// PinCPUs starts each broker, PostgreSQL and each platform service on one CPU of its
	// own, dealt out in turn (placement.go says why; EnvPinCPUs sets it from the
	// environment). A process keeps the placement it was started with.
	PinCPUs bool
	Logger  *slog.Logger
	// Secure, if set, runs the brokers with a SASL_SSL listener instead of PLAINTEXT
	// (see SecureConfig). devstack (make dev, make test) and pkg/stacktest set it unless
	// asked for PLAINTEXT; nil here means PLAINTEXT. A state directory stays in the mode its
	// Kafka storage was formatted in (Up refuses the other with ErrSecurityMismatch).
	Secure *SecureConfig
}

func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = filepath.Join(c.Root, ".cache", "stack")
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.Root, ".cache")
	}
	if len(c.KafkaPorts) == 0 {
		c.KafkaPorts = []int{9092, 9093, 9094}
	}
	if len(c.ControllerPorts) == 0 {
		c.ControllerPorts = []int{19092, 19093, 19094}
	}
	if len(c.MetricsPorts) == 0 {
		c.MetricsPorts = []int{7071, 7072, 7073}
	}
	if c.PostgresPort == 0 {
		c.PostgresPort = 5433
	}
	if c.KafkaHeapMB == 0 {
		c.KafkaHeapMB = 512
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Stack manages the local processes.
type Stack struct {
	cfg Config
	log *slog.Logger

	// generated: the SCRAM passwords were generated into the state directory
	// (SecureConfig.Users nil) and can be handed to clients as files (PasswordFile).
	generated bool

	mu    sync.Mutex
	exits map[string]*exit // processes this Stack value started, by name
}

// exit is how a process started by this Stack value ended; done is closed once known.
type exit struct {
	done  chan struct{}
	state *os.ProcessState
}

// Info is what clients need to connect.
type Info struct {
	Brokers     []string
	DatabaseURL string // the server's maintenance database; see DatabaseURLFor
	// BrokerMetrics are the brokers' JMX exporter addresses (host:port, path /metrics),
	// in broker order.
	BrokerMetrics []string
	// CAFile is the PEM CA that signed the brokers' certificates (secured mode only).
	CAFile string
	// PostgresCAFile is the PEM CA that signed PostgreSQL's certificate, for
	// sslmode=verify-full&sslrootcert=… with host localhost or 127.0.0.1.
	PostgresCAFile string
}

// New validates the config; it starts nothing.
func New(cfg Config) (*Stack, error) {
	if cfg.Root == "" {
		return nil, errors.New("localstack: Config.Root is required")
	}
	cfg.setDefaults()
	if len(cfg.KafkaPorts) != 3 || len(cfg.ControllerPorts) != 3 || len(cfg.MetricsPorts) != 3 {
		return nil, errors.New("localstack: exactly three Kafka, controller and metrics ports are needed")
	}
	generated := false
	if cfg.Secure != nil {
		if cfg.Secure.Users == nil {
			mode, err := formattedMode(cfg.StateDir)
			if err != nil {
				return nil, err
			}
			if mode == modePlaintext {
				// Refused here, before password files appear in a PLAINTEXT stack's state.
				return nil, (&Stack{cfg: cfg}).checkSecurityMode()
			}
			users, err := loadOrCreatePasswords(passwordDir(cfg.StateDir), append([]string{AdminUser}, ServiceUsers...), mode == modeSecured)
			if err != nil {
				return nil, err
			}
			cfg.Secure = &SecureConfig{Users: users}
			generated = true
		}
		if err := cfg.Secure.validate(); err != nil {
			return nil, err
		}
	}
	return &Stack{cfg: cfg, log: cfg.Logger, generated: generated}, nil
}

// Info returns the connection details of this stack (whether or not it runs).
func (s *Stack) Info() Info {
	brokers := make([]string, len(s.cfg.KafkaPorts))
	for i, p := range s.cfg.KafkaPorts {
		brokers[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	metrics := make([]string, len(s.cfg.MetricsPorts))
	for i, p := range s.cfg.MetricsPorts {
		metrics[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	info := Info{Brokers: brokers, DatabaseURL: s.DatabaseURLFor("postgres"), BrokerMetrics: metrics, PostgresCAFile: s.postgresCAFile()}
	if s.cfg.Secure != nil {
		info.CAFile = s.caFile()
	}
	return info
}

// DatabaseURLFor returns the URL of one database on the local server.
func (s *Stack) DatabaseURLFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.cfg.PostgresPort, db)
}

// Up starts whatever is not running yet and waits until the cluster is usable.
func (s *Stack) Up(ctx context.Context) error {
	// Before anything starts: a stack that cannot come up in the mode asked for should not
	// start half of itself.
	if err := s.checkSecurityMode(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.logDir(), 0o755); err != nil {
		return err
	}
	if err := s.upPostgres(ctx); err != nil {
		return err
	}
	return s.UpKafka(ctx)
}

// Down stops every process this stack started, politely first.
//
// The three Kafka nodes get SIGTERM at the same moment. Each is broker and controller in
// one JVM and shuts its broker down first, in a controlled shutdown that needs an active
// controller, and only then its controller. Stopped one after another, the third node's
// broker found two of three controllers gone, no quorum, and waited for one until it was
// SIGKILLed (over a minute). Stopped together, every broker asks while all controllers
// still run; all three exit cleanly within seconds.
func (s *Stack) Down(ctx context.Context) error {
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for id := 1; id <= 3; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[id-1] = s.stop(ctx, s.kafkaName(id), syscall.SIGTERM, 30*time.Second)
		}()
	}
	wg.Wait()
	// SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to leave.
	errs = append(errs, s.stop(ctx, "postgres", syscall.SIGINT, 30*time.Second))
	return errors.Join(errs...)
}

// StartService runs a platform service (a binary of ours) detached, logging to its own
// file under the state directory, unless it already runs.
func (s *Stack) StartService(name string, cmd *exec.Cmd) error {
	if _, ok := s.running(name); ok {
		return nil
	}
	if err := os.MkdirAll(s.logDir(), 0o755); err != nil {
		return err
	}
	return s.spawn(name, cmd, cmd.Path)
}

// StopService stops a service started by StartService (SIGTERM, then SIGKILL after grace).
func (s *Stack) StopService(ctx context.Context, name string, grace time.Duration) error {
	return s.stop(ctx, name, syscall.SIGTERM, grace)
}

// ServiceRunning reports whether a service started by StartService is alive.
func (s *Stack) ServiceRunning(name string) bool {
	_, ok := s.running(name)
	return ok
}

// ProcessStatus describes one managed process.
type ProcessStatus struct {
	Name    string
	PID     int
	Running bool
	Port    int
	// MetricsPort is a broker's JMX exporter port (0 for PostgreSQL).
	MetricsPort int
	LogFile     string
}

// Status lists the managed processes.
func (s *Stack) Status() []ProcessStatus {
	var out []ProcessStatus
	for id := 1; id <= 3; id++ {
		name := s.kafkaName(id)
		pid, ok := s.running(name)
		out = append(out, ProcessStatus{Name: name, PID: pid, Running: ok, Port: s.cfg.KafkaPorts[id-1],
			MetricsPort: s.cfg.MetricsPorts[id-1], LogFile: s.logFile(name)})
	}
	pid, ok := s.running("postgres")
	out = append(out, ProcessStatus{Name: "postgres", PID: pid, Running: ok, Port: s.cfg.PostgresPort, LogFile: s.logFile("postgres")})
	return out
}

// LogFile returns the log path of a managed process ("kafka-1", "postgres").
func (s *Stack) LogFile(name string) string { return s.logFile(name) }

func (s *Stack) logDir() string             { return filepath.Join(s.cfg.StateDir, "logs") }
func (s *Stack) logFile(name string) string { return filepath.Join(s.logDir(), name+".log") }
func (s *Stack) pidFile(name string) string { return filepath.Join(s.cfg.StateDir, name+".pid") }
func (s *Stack) kafkaName(id int) string    { return fmt.Sprintf("kafka-%d", id) }
func (s *Stack) kafkaDir(id int) string     { return filepath.Join(s.cfg.StateDir, s.kafkaName(id)) }
func (s *Stack) controllerPort(id int) int  { return s.cfg.ControllerPorts[id-1] }
func (s *Stack) kafkaPort(id int) int       { return s.cfg.KafkaPorts[id-1] }
func (s *Stack) kafkaProps(id int) string   { return filepath.Join(s.kafkaDir(id), "server.properties") }
func (s *Stack) kafkaDataDir(id int) string { return filepath.Join(s.kafkaDir(id), "data") }
func (s *Stack) clusterIDFile() string      { return filepath.Join(s.cfg.StateDir, "cluster-id") }
func (s *Stack) kafkaLibDir() string        { return filepath.Join(s.cfg.CacheDir, "kafka-lib") }
func (s *Stack) jmxExporterDir() string     { return filepath.Join(s.cfg.CacheDir, "jmx-exporter") }
func (s *Stack) metricsPort(id int) int     { return s.cfg.MetricsPorts[id-1] }
func (s *Stack) jmxExporterConfig() string {
	return filepath.Join(s.cfg.Root, "deploy", "prometheus", "jmx-exporter.yaml")
}
func (s *Stack) pomPath(name string) string {
	return filepath.Join(s.cfg.Root, "deploy", "localstack", "maven", name)
}
func (s *Stack) log4jConfig() string {
	return filepath.Join(s.cfg.Root, "deploy", "localstack", "log4j2.yaml")
}

// running reports whether the process recorded under name is alive and is ours: a pid
// file can outlive its process and the pid be reused by something else, so the pid file
// also records a string that the process's command line must contain.
func (s *Stack) running(name string) (int, bool) {
	data, err := os.ReadFile(s.pidFile(name))
	if err != nil {
		return 0, false
	}
	pidText, marker, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	if marker == "" {
		marker = s.cfg.StateDir
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), marker) {
		return pid, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// A zombie ("Z") has exited; only its parent has not reaped it yet.
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return pid, false
		}
	}
	return pid, true
}

// spawn starts a detached process (own session, so a Ctrl-C in the terminal that ran
// `make dev` does not kill it) logging to its own file, and records its pid.
func (s *Stack) spawn(name string, cmd *exec.Cmd, marker string) error {
	logf, err := os.OpenFile(s.logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	start := cmd.Start
	if s.cfg.PinCPUs {
		if cpu, ok := cpuFor(name, onlineCPUs()); ok {
			start = func() error { return startOnCPU(cmd, cpu) }
			s.log.Info("placing", "process", name, "cpu", cpu)
		}
	}
	if err := start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it in the background if we are still around when it exits; otherwise init will.
	e := &exit{done: make(chan struct{})}
	s.mu.Lock()
	if s.exits == nil {
		s.exits = map[string]*exit{}
	}
	s.exits[name] = e
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		e.state = cmd.ProcessState
		close(e.done)
	}()
	return os.WriteFile(s.pidFile(name), []byte(strconv.Itoa(pid)+"\n"+marker), 0o644)
}

// exitState returns how the process last started under name by this Stack value ended,
// waiting up to d for it; nil if it was not started here or still runs.
func (s *Stack) exitState(name string, d time.Duration) *os.ProcessState {
	s.mu.Lock()
	e := s.exits[name]
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	select {
	case <-e.done:
		return e.state
	case <-time.After(d):
		return nil
	}
}

func (s *Stack) stop(ctx context.Context, name string, sig syscall.Signal, grace time.Duration) error {
	pid, ok := s.running(name)
	if !ok {
		_ = os.Remove(s.pidFile(name))
		return nil
	}
	s.log.Info("stopping", "process", name, "pid", pid)
	_ = syscall.Kill(pid, sig)
	if !s.waitGone(ctx, name, grace) {
		s.log.Warn("did not stop in time, killing", "process", name, "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		s.waitGone(ctx, name, 10*time.Second)
	}
	return os.Remove(s.pidFile(name))
}

func (s *Stack) waitGone(ctx context.Context, name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, ok := s.running(name); !ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// checkPortFree fails with a message naming the port when something else listens there.
func checkPortFree(port int, what string) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("%w: 127.0.0.1:%d (%s) is taken by a process this stack did not start; stop it, or point KAFKA_BROKERS/DATABASE_URL at existing servers", ErrPortInUse, port, what)
	}
	return l.Close()
}

func needTool(name, hint string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found on PATH; %s", ErrPrerequisite, name, hint)
	}
	return path, nil
}

func waitFor(ctx context.Context, d time.Duration, what string, ok func() error) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		if last = ok(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %w", d, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
