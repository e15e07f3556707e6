// Package attach keeps the files users attach to messages: uploads (size-limited, type
// sniffed from the content, images measured and thumbnailed), authorized downloads (room
// membership checked at download time) and the sweeper that deletes the files of uploads
// never attached and of deleted messages. Files live in a blobstore.Store under keys the
// gateway generates; their metadata in the attachments table, which persistence links to
// messages in the message's own transaction.
package attach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// DefaultAllowedTypes are the sniffed types accepted when the configuration names none.
var DefaultAllowedTypes = []string{"image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain"}

// Config configures the Service. Zero values take the defaults noted.
type Config struct {
	// MaxBytes bounds one file (default 10 MiB).
	MaxBytes int64
	// AllowedTypes are the sniffed MIME types (without parameters) accepted (default
	// DefaultAllowedTypes). http.DetectContentType names what it cannot identify
	// application/octet-stream, which is refused unless listed.
	AllowedTypes []string
	// ThumbnailSize is the box a thumbnail fits in, in pixels (default 320).
	ThumbnailSize int
	// MaxPixels bounds an image's width x height, checked from its header before it is
	// decoded (default 40 million), so that a small file cannot demand gigabytes.
	MaxPixels int
	// OrphanGrace is how long an upload may wait for a message before the sweeper deletes
	// it (default 24h); DeletedGrace how long a deleted message's files are kept (default
	// 1h). SweepInterval is how often the sweeper looks (default 1 min).
	OrphanGrace   time.Duration
	DeletedGrace  time.Duration
	SweepInterval time.Duration
	// GoneInterval is how often a sweep also looks for files whose message is gone
	// (deleted by retention), which reads every attached row (default 1h).
	GoneInterval time.Duration
	Now          func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 20
	}
	if len(c.AllowedTypes) == 0 {
		c.AllowedTypes = DefaultAllowedTypes
	}
	if c.ThumbnailSize == 0 {
		c.ThumbnailSize = 320
	}
	if c.MaxPixels == 0 {
		c.MaxPixels = 40_000_000
	}
	if c.OrphanGrace == 0 {
		c.OrphanGrace = 24 * time.Hour
	}
	if c.DeletedGrace == 0 {
		c.DeletedGrace = time.Hour
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Minute
	}
	if c.GoneInterval == 0 {
		c.GoneInterval = time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate refuses settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxBytes < 1:
		return errors.New("attach: the size limit must be positive")
	case c.ThumbnailSize < 16 || c.ThumbnailSize > 2048:
		return errors.New("attach: the thumbnail size must be between 16 and 2048 pixels")
	case c.OrphanGrace < 0 || c.DeletedGrace < 0 || c.SweepInterval < 0 || c.GoneInterval < 0:
		return errors.New("attach: grace periods and the sweep interval must not be negative")
	}
	for _, t := range c.AllowedTypes {
		if t == "" || strings.ContainsAny(t, " ;,") || !strings.Contains(t, "/") {
			return fmt.Errorf("attach: allowed type %q is not a MIME type without parameters", t)
		}
	}
	return nil
}

// Rooms is what the Service asks about rooms (*chat.Service): whether a user is a member
// of a room, answered with the chat logic's errors (404 no such room, 403 not a member).
type Rooms interface {
	Access(ctx context.Context, u chat.User, roomID string) (store.Room, error)
}

// Service implements uploads, downloads and the sweeper. Safe for concurrent use.
type Service struct {
	cfg   Config
	pool  *pgxpool.Pool
	blobs blobstore.Store
	rooms Rooms
	log   *slog.Logger
}

var _ chat.Attachments = (*Service)(nil)

// New returns a Service.
func New(cfg Config, pool *pgxpool.Pool, blobs blobstore.Store, rooms Rooms, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil || blobs == nil || rooms == nil {
		return nil, errors.New("attach: pool, blob store and rooms are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, pool: pool, blobs: blobs, rooms: rooms, log: log}, nil
}

// MaxBytes is the configured size limit.
func (s *Service) MaxBytes() int64 { return s.cfg.MaxBytes }

func blobKey(id string) string  { return "files/" + id }
func thumbKey(id string) string { return "thumbs/" + id }
