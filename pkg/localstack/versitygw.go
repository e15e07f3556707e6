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

// VersityGWVersion is the versitygw release pinned in deploy/versitygw/go.mod: an
// Apache-2.0 S3 gateway over a POSIX directory, the real S3-compatible server the blob
// store's S3 implementation is tested against (MinIO's server is AGPL, so not that).
const VersityGWVersion = "v1.8.0"

// InstallVersityGW returns the path of the versitygw binary in cacheDir/bin, building it
// first if it is not there: `go build` of the tool pinned in root/deploy/versitygw
// (module proxy, no Docker). The first build takes a few minutes (3.5 on two shared
// cores, downloads included); concurrent callers wait for one build. A failure is an
// ErrPrerequisite error that says what was run.
func InstallVersityGW(ctx context.Context, root, cacheDir string, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin := filepath.Join(cacheDir, "bin", "versitygw-"+VersityGWVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	unlock, err := Flock(filepath.Join(cacheDir, "versitygw.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by whoever held the lock
	}
	goTool, err := needTool("go", "install Go 1.26 (versitygw is built from the module proxy)")
	if err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", tmp, "github.com/versity/versitygw/cmd/versitygw")
	cmd.Dir = filepath.Join(root, "deploy", "versitygw")
	// The pinned module is not part of go.work; -mod=readonly keeps go.sum authoritative.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	log.Info("building versitygw from the module proxy (first use; takes minutes)", "version", VersityGWVersion, "into", bin)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("%w: cannot build versitygw %s (GOWORK=off go build in deploy/versitygw): %v\n%s", ErrPrerequisite, VersityGWVersion, err, tail(out, 2000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	log.Info("versitygw built", "version", VersityGWVersion, "took", time.Since(start).Round(time.Second))
	return bin, nil
}

// VersityGWCommand is the command that serves dataDir (each subdirectory a bucket) over
// S3 on 127.0.0.1:port with one root key pair. Object metadata (content type, ETag) is
// kept in files under sidecarDir rather than in extended attributes, which not every
// filesystem (overlayfs, tmpfs in some kernels) supports.
func VersityGWCommand(bin string, port int, access, secret, dataDir, sidecarDir string) *exec.Cmd {
	return exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", access, "--secret", secret, "--quiet",
		"posix", "--sidecar", sidecarDir, dataDir)
}
