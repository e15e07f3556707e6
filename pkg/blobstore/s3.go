package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3-compatible bucket is. Endpoint and Bucket are required.
type S3Config struct {
	// Endpoint is the service's URL, e.g. https://s3.eu-west-1.amazonaws.com or
	// http://127.0.0.1:7070 (the scheme decides TLS).
	Endpoint  string
	Bucket    string
	Region    string // default "us-east-1"
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket in the path (http://host/bucket/key), which most
	// self-hosted servers need; otherwise the client decides (virtual-host style on AWS).
	PathStyle bool
	// CreateBucket creates the bucket when it does not exist (local and test setups).
	CreateBucket bool
}

// S3 keeps blobs as objects of one bucket, through minio-go (an Apache-2.0 client for any
// S3-compatible service). A Put of a known size is one PUT (or a multipart upload past
// minio-go's part size, aborted on failure), so an object appears only once complete.
type S3 struct {
	c      *minio.Client
	bucket string
}

var _ Store = (*S3)(nil)

// NewS3 connects to the bucket and checks that it exists (or creates it).
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("blobstore: S3 endpoint and bucket are required")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("blobstore: S3 endpoint %q must be http(s)://host[:port]", cfg.Endpoint)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("blobstore: S3 client: %w", err)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("blobstore: cannot reach bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("blobstore: bucket %s does not exist at %s", cfg.Bucket, cfg.Endpoint)
		}
		if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("blobstore: cannot create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return &S3{c: c, bucket: cfg.Bucket}, nil
}

func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	cr := &countingReader{r: io.LimitReader(r, size)}
	_, err := s.c.PutObject(ctx, s.bucket, key, cr, size, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		if cr.n < size && cr.err == nil {
			return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrShort, key, cr.n, size)
		}
		return fmt.Errorf("blobstore: cannot put %s: %w", key, err)
	}
	return nil
}

func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	if err := ValidKey(key); err != nil {
		return nil, Info{}, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, s.err(key, err)
	}
	st, err := o.Stat() // the first request: a missing object fails here
	if err != nil {
		_ = o.Close()
		return nil, Info{}, s.err(key, err)
	}
	return o, Info{Size: st.Size, ContentType: st.ContentType}, nil
}

func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	st, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.err(key, err)
	}
	return Info{Size: st.Size, ContentType: st.ContentType}, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	// S3's DELETE of a missing key succeeds.
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.err(key, err)
	}
	return nil
}

// Keys lists every key in the bucket, for tests and operators checking what is kept.
func (s *S3) Keys(ctx context.Context) ([]string, error) {
	var keys []string
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		keys = append(keys, o.Key)
	}
	return keys, nil
}

func (s *S3) err(key string, err error) error {
	if r := minio.ToErrorResponse(err); r.Code == minio.NoSuchKey || r.StatusCode == 404 {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return fmt.Errorf("blobstore: %s: %w", key, err)
}

// countingReader counts what minio-go read and keeps the source's error, so that Put can
// tell a short body from a refused request.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
