package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/stacktest"
)

// backend is a store under test and a way to list what it holds without its interface.
type backend struct {
	store blobstore.Store
	keys  func(t *testing.T) []string
}

// backends are the two implementations, the S3 one against a real versitygw.
func backends(t *testing.T) map[string]func(t *testing.T) backend {
	return map[string]func(t *testing.T) backend{
		"fs": func(t *testing.T) backend {
			s, err := blobstore.NewFS(filepath.Join(t.TempDir(), "blobs"))
			if err != nil {
				t.Fatal(err)
			}
			return backend{s, func(t *testing.T) []string {
				k, err := s.Keys()
				if err != nil {
					t.Fatal(err)
				}
				return k
			}}
		},
		"s3": func(t *testing.T) backend {
			srv := stacktest.Get(t).StartS3(t)
			s, err := blobstore.NewS3(context.Background(), blobstore.S3Config{Endpoint: srv.Endpoint, Bucket: "kchat-test",
				AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true, CreateBucket: true})
			if err != nil {
				t.Fatal(err)
			}
			return backend{s, func(t *testing.T) []string {
				k, err := s.Keys(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return k
			}}
		},
	}
}

// failingReader yields n bytes, then fails as a client that disconnects mid-body does.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), f.n)
	for i := range k {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

func TestStore_contract(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			ctx := context.Background()
			get := func(t *testing.T, key string) (string, blobstore.Info, error) {
				t.Helper()
				r, info, err := b.store.Get(ctx, key)
				if err != nil {
					return "", info, err
				}
				defer r.Close()
				data, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				return string(data), info, nil
			}

			t.Run("put, get, stat, replace, delete", func(t *testing.T) {
				big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
				for _, c := range []struct{ key, data, ctype string }{
					{"files/a1", "hello", "text/plain; charset=utf-8"},
					{"files/b/c/d.png", big, "image/png"},
				} {
					if err := b.store.Put(ctx, c.key, strings.NewReader(c.data), int64(len(c.data)), c.ctype); err != nil {
						t.Fatal(err)
					}
					got, info, err := get(t, c.key)
					if err != nil || got != c.data || info.Size != int64(len(c.data)) {
						t.Fatalf("get %s: %d bytes, info %+v, err %v", c.key, len(got), info, err)
					}
					if name == "s3" && info.ContentType != c.ctype {
						t.Errorf("content type %q, want %q", info.ContentType, c.ctype)
					}
					st, err := b.store.Stat(ctx, c.key)
					if err != nil || st.Size != int64(len(c.data)) {
						t.Fatalf("stat %s: %+v %v", c.key, st, err)
					}
				}
				if err := b.store.Put(ctx, "files/a1", strings.NewReader("bye"), 3, "text/plain"); err != nil {
					t.Fatal(err)
				}
				if got, _, _ := get(t, "files/a1"); got != "bye" {
					t.Fatalf("replaced blob reads %q", got)
				}
				for _, k := range []string{"files/a1", "files/b/c/d.png", "files/never-there"} {
					if err := b.store.Delete(ctx, k); err != nil {
						t.Fatalf("delete %s: %v", k, err)
					}
				}
				if _, _, err := get(t, "files/a1"); !errors.Is(err, blobstore.ErrNotFound) {
					t.Fatalf("get after delete: %v, want ErrNotFound", err)
				}
				if _, err := b.store.Stat(ctx, "files/a1"); !errors.Is(err, blobstore.ErrNotFound) {
					t.Fatalf("stat after delete: %v, want ErrNotFound", err)
				}
			})

			t.Run("keys that could escape are refused", func(t *testing.T) {
				for _, key := range []string{"", "../x", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/./b", `a\b`, "a b",
					"a/", strings.Repeat("k", blobstore.MaxKeyLen+1), "é"} {
					err := b.store.Put(ctx, key, strings.NewReader("x"), 1, "text/plain")
					if !errors.Is(err, blobstore.ErrInvalidKey) {
						t.Errorf("put %q: %v, want ErrInvalidKey", key, err)
					}
					if _, _, err := b.store.Get(ctx, key); !errors.Is(err, blobstore.ErrInvalidKey) {
						t.Errorf("get %q: %v, want ErrInvalidKey", key, err)
					}
					if err := b.store.Delete(ctx, key); !errors.Is(err, blobstore.ErrInvalidKey) {
						t.Errorf("delete %q: %v, want ErrInvalidKey", key, err)
					}
				}
			})

			t.Run("an incomplete put stores nothing", func(t *testing.T) {
				canceled, cancel := context.WithCancel(ctx)
				cancel()
				for _, c := range []struct {
					name string
					ctx  context.Context
					r    io.Reader
					size int64
				}{
					{"body shorter than declared", ctx, strings.NewReader("short"), 100},
					{"body fails midway (client gone)", ctx, &failingReader{n: 300 << 10}, 1 << 20},
					{"context canceled", canceled, bytes.NewReader(make([]byte, 1000)), 1000},
				} {
					if err := b.store.Put(c.ctx, "incomplete/x", c.r, c.size, "application/octet-stream"); err == nil {
						t.Errorf("%s: put succeeded", c.name)
					}
					if _, err := b.store.Stat(ctx, "incomplete/x"); !errors.Is(err, blobstore.ErrNotFound) {
						t.Errorf("%s: stat %v, want ErrNotFound", c.name, err)
					}
				}
				if err := b.store.Put(ctx, "short/y", strings.NewReader("abc"), 10, "text/plain"); !errors.Is(err, blobstore.ErrShort) {
					t.Errorf("short body: %v, want ErrShort", err)
				}
				// Nothing at all is left: no partial object, no temporary file.
				if k := b.keys(t); len(k) != 0 && !slices.Equal(k, []string{}) {
					t.Errorf("store holds %q after failed puts", k)
				}
			})
		})
	}
}
