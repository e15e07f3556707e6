package event

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped) by this package. Test them with
// errors.Is; use errors.As with *FieldError to learn which field was at fault.
//
// Every one of them is permanent: the same bytes or the same payload fail the same way
// on every attempt. They say so with a Permanent method, which a consumer reads to
// dead-letter the event instead of retrying it (pkg/consumer.IsPermanent).
var (
	// ErrMalformed reports bytes that are not a JSON object at all, so no
	// attribute could be inspected.
	ErrMalformed error = permanentError("event: malformed envelope")
	// ErrUnknownType reports an event type that is not in the registry.
	ErrUnknownType error = permanentError("event: unknown event type")
	// ErrInvalid reports a missing or invalid envelope attribute or data
	// field. It is always accompanied by a *FieldError.
	ErrInvalid error = permanentError("event: invalid event")
	// ErrUnsupportedVersion reports a CloudEvents specversion other than 1.0.
	ErrUnsupportedVersion error = permanentError("event: unsupported specversion")
	// ErrTypeMismatch reports that As was asked for a Go type that does not
	// correspond to the envelope's event type.
	ErrTypeMismatch error = permanentError("event: payload type mismatch")
)

// permanentError is a sentinel that no retry can fix.
type permanentError string

func (e permanentError) Error() string { return string(e) }

// Permanent reports true: decoding or validating the same event again fails again.
func (permanentError) Permanent() bool { return true }

// FieldError names the attribute or data field that made an event invalid.
// Data fields are reported as "data.<json name>" by New, DecodePayload and
// As, and as the bare json name by a payload's Validate method.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return "event: invalid " + e.Field + ": " + e.Reason
}

// Unwrap lets errors.Is(err, ErrInvalid) succeed for every field error, so
// callers that do not care about the field need only one check.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, reason string) error {
	return &FieldError{Field: field, Reason: reason}
}

// inData rebases a field error reported by a payload onto the envelope, so
// that "room_id" from Validate becomes "data.room_id".
func inData(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: "data." + fe.Field, Reason: fe.Reason}
	}
	// A Validate method that does not use FieldError must still be
	// recognisable as an invalid event.
	return fmt.Errorf("%w: data: %w", ErrInvalid, err)
}
