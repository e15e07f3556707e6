// Package blobstore keeps opaque files (attachments, thumbnails) under string keys, behind
// a small interface with two implementations: a directory of the local filesystem (FS, the
// make dev default) and S3-compatible object storage (S3). Keys are chosen by the caller
// (the gateway generates them); ValidKey restricts them so that no key can name anything
// outside the store.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// Store keeps blobs. Implementations are safe for concurrent use.
type Store interface {
	// Put stores the first size bytes read from r under key, replacing any blob there. A
	// blob is visible only once complete: if r fails or ends before size bytes (ErrShort),
	// or ctx is done, Put returns an error and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Get opens the blob at key; ErrNotFound if there is none. The caller closes it.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes the blob at key; ErrNotFound if there is none.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the blob at key; deleting a missing blob is not an error.
	Delete(ctx context.Context, key string) error
}

// Info describes a stored blob.
type Info struct {
	Size        int64
	ContentType string // as given to Put (the filesystem store does not keep it)
}

// Errors.
var (
	ErrNotFound   = errors.New("blobstore: no such blob")
	ErrInvalidKey = errors.New("blobstore: invalid key")
	ErrShort      = errors.New("blobstore: content shorter than its declared size")
)

// keyPattern: segments of letters, digits, '-', '_' and '.', not starting with '.', joined
// by single slashes. So no "..", no absolute paths, no empty segments, no backslashes.
var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$`)

// MaxKeyLen bounds a key (S3 allows 1024 bytes; filesystems 255 per segment).
const MaxKeyLen = 200

// ValidKey reports whether key may name a blob.
func ValidKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen || !keyPattern.MatchString(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return nil
}
