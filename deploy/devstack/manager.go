package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
	"github.com/kchat/kchat/pkg/migrations"
	"github.com/kchat/kchat/pkg/topics"
)

// appDatabase is the database the services use; tests make their own.
const appDatabase = "kchat"

type manager struct {
	root   string
	stack  *localstack.Stack
	secure bool // the stack runs SASL_SSL with a SCRAM user per service and ACLs
	log    *slog.Logger
	// otelEnv points the services at a local Jaeger (up -tracing); empty: no tracing.
	otelEnv []string
}

func newManager(root string, logger *slog.Logger) (*manager, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(abs, "deploy", "topics.yaml")); err != nil {
		return nil, fmt.Errorf("%s does not look like the repository root (no deploy/topics.yaml); run from the root or pass -root", abs)
	}
	// Commands other than up talk to the stack in the mode it was created in.
	secured, err := localstack.SecuredState(localstack.Config{Root: abs})
	if err != nil {
		return nil, err
	}
	m := &manager{root: abs, log: logger}
	if err := m.open(secured); err != nil {
		return nil, err
	}
	return m, nil
}

// open (re)makes the Stack in the given mode; for a secured one the SCRAM passwords are
// generated into the state directory on first use (localstack.SecureConfig).
func (m *manager) open(secure bool) error {
	pin, err := localstack.PinCPUsFromEnv()
	if err != nil {
		return err
	}
	cfg := localstack.Config{Root: m.root, Logger: m.log, PinCPUs: pin}
	if secure {
		cfg.Secure = &localstack.SecureConfig{}
	}
	st, err := localstack.New(cfg)
	if err != nil {
		return err
	}
	m.stack, m.secure = st, secure
	return nil
}

func (m *manager) up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	withServices := fs.Bool("services", false, "also start persistence, fanout, notification and the gateways (built into bin/)")
	gateways := fs.Int("gateways", 1, "number of gateway instances (ports 8081, 8082, ...)")
	plaintext := fs.Bool("plaintext", false, "brokers on PLAINTEXT, without TLS, logins or ACLs (make dev SECURE=0); "+
		"by default they run SASL_SSL with a SCRAM-SHA-512 user per service and the ACL matrix. Fixed when the stack is first created")
	// -secure was the opt-in before the secured mode became the default; still accepted
	// so that old commands keep working.
	_ = fs.Bool("secure", true, "the default; accepted for old commands (see -plaintext)")
	tracing := fs.Bool("tracing", false, "also start Jaeger (OTLP :4318, UI/API :16686) and export the services' traces to it (make dev TRACING=1)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	began := time.Now()
	// Up refuses the mode the stack was not created in (localstack.ErrSecurityMismatch).
	if err := m.open(!*plaintext); err != nil {
		return err
	}
	if err := m.stack.Up(ctx); err != nil {
		return err
	}
	info := m.stack.Info()
	f, err := topics.Load(filepath.Join(m.root, "deploy", "topics.yaml"))
	if err != nil {
		return err
	}
	// As the super user; on a secured stack also the ACLs every service needs.
	plan, err := m.stack.Provision(ctx, f)
	if err != nil {
		return err
	}
	m.log.Info("topics applied", "changes", len(plan), "acls", m.secure)
	dbURL, err := m.ensureDatabase(ctx)
	if err != nil {
		return err
	}
	applied, err := migrations.Up(ctx, dbURL)
	if err != nil {
		return err
	}
	m.log.Info("migrations applied", "versions", applied)
	if *tracing {
		if m.otelEnv, err = m.startJaeger(ctx); err != nil {
			return err
		}
	}
	if *withServices {
		if err := m.startServices(ctx, *gateways, dbURL); err != nil {
			return err
		}
	}
	fmt.Printf("stack is up in %s\n", time.Since(began).Round(100*time.Millisecond))
	fmt.Printf("KAFKA_BROKERS=%s\n", strings.Join(info.Brokers, ","))
	fmt.Printf("DATABASE_URL=%s\n", dbURL)
	fmt.Printf("PostgreSQL also speaks TLS: sslmode=verify-full&sslrootcert=%s\n", info.PostgresCAFile)
	if m.secure {
		env, err := m.stack.ClientEnv(localstack.AdminUser)
		if err != nil {
			return err
		}
		fmt.Println("Kafka is secured (SASL_SSL, SCRAM-SHA-512, ACLs); chatctl and chatbench need, as the super user:")
		for _, e := range env {
			fmt.Printf("  export %s\n", e)
		}
		fmt.Printf("each service logs in as its own user (password files in %s)\n", filepath.Dir(m.stack.PasswordFile(localstack.AdminUser)))
	}
	if *withServices {
		for i := 1; i <= *gateways; i++ {
			fmt.Printf("open http://127.0.0.1:%d/  (gateway gw-%d)\n", 8080+i, i)
		}
		fmt.Printf("logs: %s\n", filepath.Dir(m.stack.LogFile("x")))
	}
	if *tracing {
		fmt.Printf("traces: http://127.0.0.1:%d/api/traces?service=gateway (find one message: docs/operations.md#tracing)\n", localstack.DefaultJaegerPorts.Query)
	}
	return nil
}

func (m *manager) ensureDatabase(ctx context.Context) (string, error) {
	if err := createDatabase(ctx, m.stack.DatabaseURLFor("postgres"), appDatabase); err != nil {
		return "", err
	}
	return m.stack.DatabaseURLFor(appDatabase), nil
}

func (m *manager) down(ctx context.Context) error {
	if err := m.stopServices(ctx); err != nil {
		return err
	}
	return m.stack.Down(ctx)
}

func (m *manager) status(ctx context.Context) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE\tPORT\tLOG")
	for _, p := range m.stack.Status() {
		state := "stopped"
		if p.Running {
			state = "running"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", p.Name, p.PID, state, p.Port, p.LogFile)
	}
	for _, svc := range m.services(2) {
		state := "stopped"
		if m.stack.ServiceRunning(svc.name) {
			state = "running"
		}
		fmt.Fprintf(tw, "%s\t-\t%s\t%s\t%s\n", svc.name, state, svc.addr, m.stack.LogFile(svc.name))
	}
	if m.stack.ServiceRunning(jaegerName) {
		fmt.Fprintf(tw, "%s\t-\trunning\t127.0.0.1:%d\t%s\n", jaegerName, localstack.DefaultJaegerPorts.Query, m.stack.LogFile(jaegerName))
	}
	tw.Flush()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	mode := "PLAINTEXT"
	if m.secure {
		mode = "SASL_SSL (secured)"
	}
	if st, err := m.stack.KafkaState(ctx); err == nil {
		fmt.Printf("kafka: %s, brokers registered %v, controller leader %d\n", mode, st.Brokers, st.QuorumLeader)
	} else {
		fmt.Printf("kafka: unreachable (%v)\n", err)
	}
	return nil
}

func (m *manager) logs(args []string) error {
	names := args
	if len(names) == 0 {
		for _, p := range m.stack.Status() {
			names = append(names, p.Name)
		}
	}
	for _, n := range names {
		f, err := os.Open(m.stack.LogFile(n))
		if err != nil {
			return fmt.Errorf("no log for %q: %w", n, err)
		}
		fmt.Printf("==> %s <==\n", f.Name())
		tail(f, os.Stdout, 64*1024)
		f.Close()
	}
	return nil
}

func tail(f *os.File, w io.Writer, n int64) {
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	_, _ = io.Copy(w, f)
}
