package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kchat/kchat/pkg/localstack"
)

// platformService is one long-running program of ours that `up -services` starts.
type platformService struct {
	name   string // process name: log file and pid file
	binary string // under bin/
	addr   string // HTTP_ADDR: health, metrics (and for gateways the API and the page)
	user   string // its Kafka principal on a secured stack
	env    []string
}

func (m *manager) services(gateways int) []platformService {
	svcs := []platformService{
		{name: "persistence", binary: "persistence", addr: "127.0.0.1:8090", user: localstack.PersistenceUser},
		{name: "fanout", binary: "fanout", addr: "127.0.0.1:8091", user: localstack.FanoutUser},
		{name: "notification", binary: "notification", addr: "127.0.0.1:8092", user: localstack.NotificationUser},
	}
	for i := 1; i <= gateways; i++ {
		svcs = append(svcs, platformService{
			name: fmt.Sprintf("gateway-%d", i), binary: "gateway",
			addr: fmt.Sprintf("127.0.0.1:%d", 8080+i), user: localstack.GatewayUser,
			env: []string{fmt.Sprintf("GATEWAY_ID=gw-%d", i)},
		})
	}
	return svcs
}

// startServices starts every service whose binary was built, and waits for /healthz.
func (m *manager) startServices(ctx context.Context, gateways int, dbURL string) error {
	info := m.stack.Info()
	for _, svc := range m.services(gateways) {
		bin := filepath.Join(m.root, "bin", svc.binary)
		if _, err := os.Stat(bin); err != nil {
			m.log.Warn("not built, skipping", "service", svc.name, "binary", bin)
			continue
		}
		// On a secured stack each service logs in as its own principal (nothing on a
		// PLAINTEXT one).
		security, err := m.stack.ClientEnv(svc.user)
		if err != nil {
			return err
		}
		cmd := exec.Command(bin)
		cmd.Env = append(withoutKafkaSecurity(os.Environ()), security...)
		cmd.Env = append(cmd.Env,
			"KAFKA_BROKERS="+strings.Join(info.Brokers, ","),
			"DATABASE_URL="+dbURL,
			"HTTP_ADDR="+svc.addr,
		)
		cmd.Env = append(cmd.Env, svc.env...)
		cmd.Env = append(cmd.Env, m.otelEnv...)
		if err := m.stack.StartService(svc.name, cmd); err != nil {
			return err
		}
	}
	for _, svc := range m.services(gateways) {
		if !m.stack.ServiceRunning(svc.name) {
			continue
		}
		if err := waitHealthy(ctx, svc, m.stack.LogFile(svc.name)); err != nil {
			return err
		}
	}
	return nil
}

// withoutKafkaSecurity drops the kafkasec variables from env: the stack decides how its
// services reach its brokers, and a KAFKA_SASL_PASSWORD left in the shell next to the
// stack's KAFKA_SASL_PASSWORD_FILE would stop every service.
func withoutKafkaSecurity(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "KAFKA_TLS") && !strings.HasPrefix(kv, "KAFKA_SASL_") {
			out = append(out, kv)
		}
	}
	return out
}

func (m *manager) stopServices(ctx context.Context) error {
	// Gateways first, so that clients are told to reconnect while consumers still run.
	// Jaeger last, so that it receives the spans the services flush as they stop.
	names := []string{"gateway-2", "gateway-1", "notification", "fanout", "persistence", jaegerName}
	for _, n := range names {
		if err := m.stack.StopService(ctx, n, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func waitHealthy(ctx context.Context, svc platformService, logFile string) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		res, err := c.Get("http://" + svc.addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become healthy on %s within 60s; see %s", svc.name, svc.addr, logFile)
}
