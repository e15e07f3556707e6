// Error responses: protocol error codes mapped to HTTP statuses, in one JSON shape for the
// API's own errors and Echo's.

package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/protocol"
)

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Retryable  bool   `json:"retryable,omitempty"`
	RetryAfter int64  `json:"retry_after_ms,omitempty"`
}

// Status maps a protocol error code to its HTTP status.
func Status(code string) int {
	switch code {
	case protocol.CodeBadJSON, protocol.CodeBadRequest, protocol.CodeUnknownType:
		return http.StatusBadRequest
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeUnsupportedType:
		return http.StatusUnsupportedMediaType
	case protocol.CodeUnauthorized, protocol.CodeInvalidToken, protocol.CodeInvalidCredentials:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeUsernameTaken, protocol.CodeConflict:
		return http.StatusConflict
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func fail(c echo.Context, err error) error {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.NewError(protocol.CodeInternal, "internal error")
	}
	if pe.RetryAfter > 0 {
		// Retry-After is in whole seconds; round up so that a client honouring it is not
		// refused again.
		c.Response().Header().Set("Retry-After", strconv.FormatInt((pe.RetryAfter+999)/1000, 10))
	}
	return c.JSON(Status(pe.Code), ErrorBody{Code: pe.Code, Message: pe.Message, Retryable: pe.Retryable, RetryAfter: pe.RetryAfter})
}

// ErrorHandler renders Echo's own errors (unknown route, wrong method) in the API shape.
func ErrorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = strings.ToLower(http.StatusText(status))
	}
	code := protocol.CodeInternal
	switch status {
	case http.StatusNotFound:
		code = protocol.CodeNotFound
	case http.StatusMethodNotAllowed, http.StatusBadRequest:
		code = protocol.CodeBadRequest
	case http.StatusRequestEntityTooLarge:
		code = protocol.CodeTooLarge
	}
	_ = c.JSON(status, ErrorBody{Code: code, Message: msg})
}
