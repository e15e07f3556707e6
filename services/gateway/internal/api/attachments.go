// Attachments: POST /api/rooms/{id}/uploads (one file, multipart) and the authorized
// downloads GET /api/attachments/{id} and /api/attachments/{id}/thumbnail. Mounted by
// RegisterAttachments beside Register.

package api

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/attach"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// Attachments is the attachment logic the API calls (*attach.Service).
type Attachments interface {
	MaxBytes() int64
	CheckRoom(ctx context.Context, u chat.User, roomID string) error
	TooLarge() *protocol.Error
	Store(ctx context.Context, u chat.User, up attach.Upload) (event.Attachment, error)
	Open(ctx context.Context, u chat.User, id string, thumbnail bool) (attach.File, error)
}

var _ Attachments = (*attach.Service)(nil)

// multipartOverhead is what a one-file multipart body may carry beyond the file: the
// boundaries and the part's headers.
const multipartOverhead = 16 << 10

// RegisterAttachments mounts the attachment routes under /api on e. A nil svc answers
// them with 503 (attachments not configured).
func (a *API) RegisterAttachments(e *echo.Echo, svc Attachments) {
	authed := e.Group("/api", a.requireAuth)
	if svc == nil {
		off := func(c echo.Context) error {
			return fail(c, protocol.NewError(protocol.CodeUnavailable, "attachments are not configured on this gateway"))
		}
		authed.POST("/rooms/:id/uploads", off)
		authed.GET("/attachments/:aid", off)
		authed.GET("/attachments/:aid/thumbnail", off)
		return
	}
	authed.POST("/rooms/:id/uploads", func(c echo.Context) error { return a.upload(c, svc) })
	authed.GET("/attachments/:aid", func(c echo.Context) error { return download(c, svc, false) })
	authed.GET("/attachments/:aid/thumbnail", func(c echo.Context) error { return download(c, svc, true) })
}

// upload reads the one file of a multipart/form-data body (field "file") whole, within
// the size limit, and then the rest of the body: a body that ends early (a client that
// disconnects) or holds more than the file is refused before anything is stored.
func (a *API) upload(c echo.Context, svc Attachments) error {
	req := c.Request()
	// Outsiders are answered before the body is read.
	if err := svc.CheckRoom(req.Context(), user(c), c.Param("id")); err != nil {
		return fail(c, err)
	}
	// Uploads draw from the user's send bucket (-rate-user), shared with sends.
	if err := a.allowUser(c); err != nil {
		return fail(c, err)
	}
	bad := func(msg string) error { return fail(c, protocol.NewError(protocol.CodeBadRequest, msg)) }
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "multipart/form-data" {
		return bad("the body must be multipart/form-data with one file in the field \"file\"")
	}
	max := svc.MaxBytes()
	if req.ContentLength > max+multipartOverhead {
		return fail(c, svc.TooLarge())
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, max+multipartOverhead)
	mr, err := req.MultipartReader()
	if err != nil {
		return bad("the body must be multipart/form-data with one file in the field \"file\"")
	}
	readErr := func(err error) error {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fail(c, svc.TooLarge())
		}
		return bad("the upload was interrupted or is not well-formed multipart: " + err.Error())
	}
	part, err := mr.NextPart()
	if err == io.EOF {
		return bad("no file: the field \"file\" is required")
	}
	if err != nil {
		return readErr(err)
	}
	if part.FormName() != "file" {
		return bad("unexpected field " + strconv.Quote(part.FormName()) + ": send only the field \"file\"")
	}
	// part.FileName() would return only the base name of "../x", silently changing it;
	// the raw parameter is checked instead, and refused if it is not a plain name.
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return bad("the file part's Content-Disposition is malformed")
	}
	filename, ok := params["filename"]
	if !ok {
		return bad("the field \"file\" must be a file (with a filename)")
	}
	data, err := io.ReadAll(io.LimitReader(part, max+1))
	if err != nil {
		return readErr(err)
	}
	if int64(len(data)) > max {
		return fail(c, svc.TooLarge())
	}
	switch next, err := mr.NextPart(); {
	case err == io.EOF:
	case err != nil:
		return readErr(err)
	default:
		return bad("unexpected field " + strconv.Quote(next.FormName()) + ": send exactly one file")
	}
	att, err := svc.Store(req.Context(), user(c), attach.Upload{Room: c.Param("id"), Filename: filename, Data: data})
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusCreated, att)
}

// inlineTypes are served inline (the web page shows them); everything else is a download.
var inlineTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true}

func download(c echo.Context, svc Attachments, thumbnail bool) error {
	f, err := svc.Open(c.Request().Context(), user(c), c.Param("aid"), thumbnail)
	if err != nil {
		return fail(c, err)
	}
	defer f.Body.Close()
	disp := "attachment"
	if inlineTypes[f.ContentType] {
		disp = "inline"
	}
	name := f.Filename
	if thumbnail {
		name = "thumbnail-" + name
	}
	// FormatMediaType quotes the name, or encodes it as RFC 2231 filename*=utf-8''... when
	// it is not plain ASCII; it returns "" for names it cannot encode, which then go
	// without one.
	cd := mime.FormatMediaType(disp, map[string]string{"filename": name})
	if cd == "" {
		cd = disp
	}
	h := c.Response().Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", cd)
	h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	h.Set("X-Content-Type-Options", "nosniff")
	// Opened directly, a file runs nothing and loads nothing.
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox")
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = io.Copy(c.Response(), f.Body)
	return err // the status is sent; Echo logs a failed copy
}
