package localstack

import (
	"context"
	"log/slog"
)

// CentrifugoVersion is the Centrifugo release pinned in deploy/centrifugo/go.mod: the
// reference issue 13 measures one large room against, run beside the gateways by
// chatbench's fanout scenario.
const CentrifugoVersion = "v6.9.1"

// InstallCentrifugo returns the path of the Centrifugo binary in cacheDir/bin, building it
// first if it is not there: `go build` of the tool pinned in root/deploy/centrifugo
// (module proxy, no Docker; 2.5 minutes on two cores, downloads included). Built this
// way it reports its version as 0.0.0: the release's ldflags are not applied.
func InstallCentrifugo(ctx context.Context, root, cacheDir string, log *slog.Logger) (string, error) {
	return goTool{name: "Centrifugo", file: "centrifugo", version: CentrifugoVersion, pkg: "github.com/centrifugal/centrifugo/v6"}.install(ctx, root, cacheDir, log)
}
