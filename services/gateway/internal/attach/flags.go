package attach

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/service"
)

// DefaultDir is the fs store's directory when none is configured: one per machine, so
// that the gateways of make dev share it. Production sets ATTACHMENT_DIR to lasting
// storage that every gateway mounts (or uses s3).
var DefaultDir = filepath.Join(os.TempDir(), "kchat-attachments")

// Flags are the attachment settings of the command line and environment.
type Flags struct {
	backend, dir                                 *string
	s3Endpoint, s3Bucket, s3Region, s3Key, s3Sec *string
	s3PathStyle, s3Create                        *bool
	maxBytes                                     *int
	types                                        *string
	orphanGrace, deletedGrace, sweepEvery        *time.Duration
}

// RegisterFlags defines the attachment flags on the default flag set.
func RegisterFlags() *Flags {
	return &Flags{
		backend:      flag.String("attachment-store", service.Env("ATTACHMENT_STORE", "fs"), "where attachments' files are kept: fs, s3 or off (ATTACHMENT_STORE)"),
		dir:          flag.String("attachment-dir", service.Env("ATTACHMENT_DIR", DefaultDir), "directory of the fs store; every gateway of a deployment must share it (ATTACHMENT_DIR)"),
		s3Endpoint:   flag.String("attachment-s3-endpoint", service.Env("ATTACHMENT_S3_ENDPOINT", ""), "S3-compatible endpoint URL, http(s)://host[:port] (ATTACHMENT_S3_ENDPOINT)"),
		s3Bucket:     flag.String("attachment-s3-bucket", service.Env("ATTACHMENT_S3_BUCKET", ""), "S3 bucket (ATTACHMENT_S3_BUCKET)"),
		s3Region:     flag.String("attachment-s3-region", service.Env("ATTACHMENT_S3_REGION", "us-east-1"), "S3 region (ATTACHMENT_S3_REGION)"),
		s3Key:        flag.String("attachment-s3-access-key", service.Env("ATTACHMENT_S3_ACCESS_KEY", ""), "S3 access key id; prefer the environment (ATTACHMENT_S3_ACCESS_KEY)"),
		s3Sec:        flag.String("attachment-s3-secret-key", service.Env("ATTACHMENT_S3_SECRET_KEY", ""), "S3 secret key; prefer the environment (ATTACHMENT_S3_SECRET_KEY)"),
		s3PathStyle:  flag.Bool("attachment-s3-path-style", service.EnvBool("ATTACHMENT_S3_PATH_STYLE", false), "address the bucket in the path, as most self-hosted S3 servers need (ATTACHMENT_S3_PATH_STYLE)"),
		s3Create:     flag.Bool("attachment-s3-create-bucket", service.EnvBool("ATTACHMENT_S3_CREATE_BUCKET", false), "create the bucket if missing (ATTACHMENT_S3_CREATE_BUCKET)"),
		maxBytes:     flag.Int("attachment-max-bytes", service.EnvInt("ATTACHMENT_MAX_BYTES", 10<<20), "largest file accepted, in bytes (ATTACHMENT_MAX_BYTES)"),
		types:        flag.String("attachment-types", service.Env("ATTACHMENT_TYPES", ""), "allowed sniffed MIME types, comma-separated (ATTACHMENT_TYPES; default image/png,image/jpeg,image/gif,application/pdf,text/plain)"),
		orphanGrace:  flag.Duration("attachment-orphan-grace", service.EnvDuration("ATTACHMENT_ORPHAN_GRACE", 24*time.Hour), "an upload not attached to a message within this is deleted (ATTACHMENT_ORPHAN_GRACE)"),
		deletedGrace: flag.Duration("attachment-deleted-grace", service.EnvDuration("ATTACHMENT_DELETED_GRACE", time.Hour), "a deleted message's files are deleted this long after it (ATTACHMENT_DELETED_GRACE)"),
		sweepEvery:   flag.Duration("attachment-sweep-interval", service.EnvDuration("ATTACHMENT_SWEEP_INTERVAL", time.Minute), "how often the sweeper looks for files to delete (ATTACHMENT_SWEEP_INTERVAL)"),
	}
}

// Build opens the configured blob store (nil when attachments are off) and returns the
// Service's Config; a bad setting is an error that names it.
func (f *Flags) Build(ctx context.Context) (blobstore.Store, Config, error) {
	cfg := Config{MaxBytes: int64(*f.maxBytes), AllowedTypes: service.SplitList(*f.types),
		OrphanGrace: *f.orphanGrace, DeletedGrace: *f.deletedGrace, SweepInterval: *f.sweepEvery}
	if *f.maxBytes <= 0 {
		return nil, cfg, fmt.Errorf("-attachment-max-bytes must be positive, not %d", *f.maxBytes)
	}
	for name, d := range map[string]time.Duration{"attachment-orphan-grace": *f.orphanGrace, "attachment-deleted-grace": *f.deletedGrace, "attachment-sweep-interval": *f.sweepEvery} {
		if d <= 0 {
			return nil, cfg, fmt.Errorf("-%s must be positive, not %s", name, d)
		}
	}
	checked := cfg
	checked.setDefaults()
	if err := checked.Validate(); err != nil {
		return nil, cfg, err
	}
	switch *f.backend {
	case "off":
		return nil, cfg, nil
	case "fs":
		s, err := blobstore.NewFS(*f.dir)
		return s, cfg, err
	case "s3":
		s, err := blobstore.NewS3(ctx, blobstore.S3Config{Endpoint: *f.s3Endpoint, Bucket: *f.s3Bucket, Region: *f.s3Region,
			AccessKey: *f.s3Key, SecretKey: *f.s3Sec, PathStyle: *f.s3PathStyle, CreateBucket: *f.s3Create})
		return s, cfg, err
	default:
		return nil, cfg, fmt.Errorf("-attachment-store must be fs, s3 or off, not %q", *f.backend)
	}
}
