package attach

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/gif" // image.DecodeConfig of the image types DetectContentType names
	"image/jpeg"
	"image/png"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/disintegration/imaging"
	"github.com/google/uuid"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// MaxFilenameBytes bounds a file name (what most filesystems allow).
const MaxFilenameBytes = 255

// ValidateFilename refuses a name that is empty, too long, not UTF-8, "." or "..", or
// holds a path separator or a control character. A refused name is an error the client
// sees, never a name changed behind its back.
func ValidateFilename(name string) *protocol.Error {
	bad := func(why string) *protocol.Error {
		return protocol.NewError(protocol.CodeBadRequest, "filename "+why)
	}
	switch {
	case name == "":
		return bad("is required")
	case len(name) > MaxFilenameBytes:
		return bad(fmt.Sprintf("is longer than %d bytes", MaxFilenameBytes))
	case !utf8.ValidString(name):
		return bad("is not valid UTF-8")
	case name == "." || name == "..":
		return bad("must name a file, not " + name)
	case strings.ContainsAny(name, `/\`):
		return bad("must not contain a path separator (/ or \\)")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }):
		return bad("must not contain control characters")
	}
	return nil
}

// Upload is a file as the client sends it, read whole (it is at most Config.MaxBytes).
type Upload struct {
	Room     string
	Filename string
	Data     []byte
}

// Store checks an upload, writes its file (and an image's thumbnail) to the blob store and
// records it, unattached, for u. Nothing is stored unless every check passed; if recording
// fails, the blobs written are deleted again.
func (s *Service) Store(ctx context.Context, u chat.User, up Upload) (event.Attachment, error) {
	if _, err := s.rooms.Access(ctx, u, up.Room); err != nil {
		return event.Attachment{}, err
	}
	if e := ValidateFilename(up.Filename); e != nil {
		return event.Attachment{}, e
	}
	if len(up.Data) == 0 {
		return event.Attachment{}, protocol.NewError(protocol.CodeBadRequest, "the file is empty")
	}
	if int64(len(up.Data)) > s.cfg.MaxBytes {
		return event.Attachment{}, s.TooLarge()
	}
	ctype := sniff(up.Data)
	if !slices.Contains(s.cfg.AllowedTypes, ctype) {
		return event.Attachment{}, protocol.NewError(protocol.CodeUnsupportedType,
			fmt.Sprintf("files of type %s are not allowed here (allowed: %s)", ctype, strings.Join(s.cfg.AllowedTypes, ", ")))
	}
	a := event.Attachment{ID: uuid.Must(uuid.NewV7()).String(), Filename: up.Filename, ContentType: ctype, Size: int64(len(up.Data))}
	var thumb []byte
	if strings.HasPrefix(ctype, "image/") {
		var err error
		if a.Width, a.Height, thumb, err = s.thumbnail(up.Data, ctype); err != nil {
			return event.Attachment{}, err
		}
		a.Thumbnail = true
	}

	if err := s.blobs.Put(ctx, blobKey(a.ID), bytes.NewReader(up.Data), a.Size, ctype); err != nil {
		return event.Attachment{}, s.unavailable(ctx, "cannot store file", err)
	}
	written := []string{blobKey(a.ID)}
	if thumb != nil {
		if err := s.blobs.Put(ctx, thumbKey(a.ID), bytes.NewReader(thumb), int64(len(thumb)), thumbType(ctype)); err != nil {
			s.forget(ctx, written...)
			return event.Attachment{}, s.unavailable(ctx, "cannot store thumbnail", err)
		}
		written = append(written, thumbKey(a.ID))
	}
	var width, height *int
	var tk *string
	if thumb != nil {
		width, height, tk = &a.Width, &a.Height, &written[1]
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO attachments (id, room_id, uploader, filename, content_type, size, width, height, blob_key, thumb_key, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		a.ID, up.Room, u.ID, a.Filename, a.ContentType, a.Size, width, height, written[0], tk, s.cfg.Now().UTC())
	if err != nil {
		s.forget(ctx, written...)
		return event.Attachment{}, s.unavailable(ctx, "cannot record upload", err)
	}
	s.log.InfoContext(ctx, "attachment uploaded", "attachment_id", a.ID, "room", up.Room, "user_id", u.ID, "content_type", ctype, "size", a.Size)
	return a, nil
}

// CheckRoom answers whether u may upload to roomID (a member), with the chat logic's
// errors: not_found for a room that does not exist or is hidden, forbidden otherwise.
func (s *Service) CheckRoom(ctx context.Context, u chat.User, roomID string) error {
	_, err := s.rooms.Access(ctx, u, roomID)
	return err
}

// TooLarge is the error for a file over the limit.
func (s *Service) TooLarge() *protocol.Error {
	return protocol.NewError(protocol.CodeTooLarge, fmt.Sprintf("the file is larger than the limit of %d bytes", s.cfg.MaxBytes))
}

// sniff names the content's MIME type from its bytes, without parameters (a text's
// charset is not kept: it is served as what it was sniffed as).
func sniff(data []byte) string {
	t := http.DetectContentType(data)
	t, _, _ = strings.Cut(t, ";")
	return strings.TrimSpace(t)
}

// thumbnail measures an image and renders its thumbnail. The header is read first so
// that an image too large to decode is refused before it is decoded; an image that does
// not decode is refused as not the image it claims to be.
func (s *Service) thumbnail(data []byte, ctype string) (w, h int, thumb []byte, err error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, 0, nil, protocol.NewError(protocol.CodeBadRequest, "the file looks like "+ctype+" but is not a readable image")
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width*cfg.Height > s.cfg.MaxPixels {
		return 0, 0, nil, protocol.NewError(protocol.CodeBadRequest, fmt.Sprintf("the image is %dx%d pixels; at most %d pixels are allowed", cfg.Width, cfg.Height, s.cfg.MaxPixels))
	}
	img, err := imaging.Decode(bytes.NewReader(data))
	if err != nil {
		return 0, 0, nil, protocol.NewError(protocol.CodeBadRequest, "the file looks like "+ctype+" but is not a readable image")
	}
	small := imaging.Fit(img, s.cfg.ThumbnailSize, s.cfg.ThumbnailSize, imaging.Lanczos)
	var buf bytes.Buffer
	if thumbType(ctype) == "image/jpeg" {
		err = jpeg.Encode(&buf, small, &jpeg.Options{Quality: 80})
	} else {
		err = png.Encode(&buf, small) // keeps transparency
	}
	if err != nil {
		return 0, 0, nil, fmt.Errorf("attach: cannot encode thumbnail: %w", err)
	}
	return cfg.Width, cfg.Height, buf.Bytes(), nil
}

// thumbType is the type of an image's thumbnail: JPEG for photos, PNG for the rest.
func thumbType(ctype string) string {
	if ctype == "image/jpeg" {
		return "image/jpeg"
	}
	return "image/png"
}

// forget deletes blobs written for an upload that then failed.
func (s *Service) forget(ctx context.Context, keys ...string) {
	for _, k := range keys {
		if err := s.blobs.Delete(context.WithoutCancel(ctx), k); err != nil {
			s.log.WarnContext(ctx, "cannot delete blob of failed upload; the sweeper will not see it", "key", k, "error", err)
		}
	}
}

func (s *Service) unavailable(ctx context.Context, what string, err error) *protocol.Error {
	s.log.ErrorContext(ctx, what, "error", err)
	return protocol.NewError(protocol.CodeUnavailable, what).Retry()
}
