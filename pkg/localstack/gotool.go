package localstack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// goTool is a program the tests need that no registry reachable here ships as a binary:
// it is pinned as a Go module of its own under deploy/<dir> (outside go.work, its go.sum
// authoritative) and built from the module proxy into cacheDir/bin on first use.
type goTool struct {
	name    string // for people: "Jaeger"
	file    string // binary, lock and deploy/ directory name: "jaeger"
	version string
	pkg     string // main package to build
}

// install returns the binary's path, building it first if it is not there. Concurrent
// callers (test binaries of several packages) wait for one build. A failure is an
// ErrPrerequisite error that says what was run.
func (g goTool) install(ctx context.Context, root, cacheDir string, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := filepath.Join(cacheDir, "bin", g.file+"-"+g.version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	unlock, err := Flock(filepath.Join(cacheDir, g.file+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by whoever held the lock
	}
	goBin, err := needTool("go", fmt.Sprintf("install Go 1.26 (%s is built from the module proxy)", g.name))
	if err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, g.pkg)
	cmd.Dir = filepath.Join(root, "deploy", g.file)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	log.Info("building "+g.name+" from the module proxy (first use; takes minutes)", "version", g.version, "into", bin)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("%w: cannot build %s %s (GOWORK=off go build in deploy/%s): %v\n%s", ErrPrerequisite, g.name, g.version, g.file, err, tail(out, 2000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	log.Info(g.name+" built", "version", g.version, "took", time.Since(start).Round(time.Second))
	return bin, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
