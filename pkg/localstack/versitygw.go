package localstack

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
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
	return goTool{name: "versitygw", file: "versitygw", version: VersityGWVersion, pkg: "github.com/versity/versitygw/cmd/versitygw"}.install(ctx, root, cacheDir, log)
}

// VersityGWCommand is the command that serves dataDir (each subdirectory a bucket) over
// S3 on 127.0.0.1:port with one root key pair. Object metadata (content type, ETag) is
// kept in files under sidecarDir rather than in extended attributes, which not every
// filesystem (overlayfs, tmpfs in some kernels) supports.
func VersityGWCommand(bin string, port int, access, secret, dataDir, sidecarDir string) *exec.Cmd {
	return exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", access, "--secret", secret, "--quiet",
		"posix", "--sidecar", sidecarDir, dataDir)
}
