package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Bucket is the S3-compatible bucket (and key prefix) the backup lives in.
type Bucket struct {
	c      *minio.Client
	name   string
	prefix string
}

// OpenBucket opens the bucket a --backup URL names:
// http(s)://HOST[:PORT]/BUCKET[/PREFIX], with credentials from
// SPELLS_BACKUP_ACCESS_KEY and SPELLS_BACKUP_SECRET_KEY (or
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); it creates the bucket if
// it is missing.
func OpenBucket(ctx context.Context, raw string) (*Bucket, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--backup %q: want http(s)://HOST[:PORT]/BUCKET[/PREFIX]", Redact(raw))
	}
	parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
	if parts[0] == "" {
		return nil, fmt.Errorf("--backup %q names no bucket: want http(s)://HOST[:PORT]/BUCKET[/PREFIX]", Redact(raw))
	}
	b := &Bucket{name: parts[0]}
	if len(parts) == 2 && parts[1] != "" {
		b.prefix = strings.Trim(parts[1], "/") + "/"
	}
	id, secret := env("SPELLS_BACKUP_ACCESS_KEY", "AWS_ACCESS_KEY_ID"), env("SPELLS_BACKUP_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
	// Few retries: a flush that fails waits for the next one, and the
	// shipper keeps what it did not ship.
	b.c, err = minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(id, secret, ""), Secure: u.Scheme == "https", MaxRetries: 2})
	if err != nil {
		return nil, fmt.Errorf("--backup %s: %w", Redact(raw), err)
	}
	ok, err := b.c.BucketExists(ctx, b.name)
	if err != nil {
		return nil, fmt.Errorf("--backup %s: the object store does not answer: %w", Redact(raw), err)
	}
	if !ok {
		if err := b.c.MakeBucket(ctx, b.name, minio.MakeBucketOptions{}); err != nil {
			return nil, fmt.Errorf("--backup %s: create bucket %s: %w", Redact(raw), b.name, err)
		}
	}
	return b, nil
}

func env(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Redact is a backup URL without its user information, query or fragment,
// for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// ErrNotFound is a missing object.
var ErrNotFound = errors.New("no such object")

func (b *Bucket) put(ctx context.Context, key string, data []byte) error {
	_, err := b.c.PutObject(ctx, b.name, b.prefix+key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: "application/octet-stream"})
	return err
}

func (b *Bucket) get(ctx context.Context, key string) ([]byte, error) {
	o, err := b.c.GetObject(ctx, b.name, b.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return data, nil
}

// list returns the keys under prefix after startAfter, in order, at most
// limit (0: all).
func (b *Bucket) list(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	var out []string
	opts := minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}
	if startAfter != "" {
		opts.StartAfter = b.prefix + startAfter
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range b.c.ListObjects(ctx, b.name, opts) {
		if o.Err != nil {
			return nil, o.Err
		}
		out = append(out, strings.TrimPrefix(o.Key, b.prefix))
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// exists reports whether the object key is in the bucket.
func (b *Bucket) exists(ctx context.Context, key string) (bool, error) {
	_, err := b.c.StatObject(ctx, b.name, b.prefix+key, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false, nil
	}
	return false, err
}

// RemoveAll removes every object under the bucket's prefix: what a wiped
// store looks like (tools and tests).
func (b *Bucket) RemoveAll(ctx context.Context) error {
	objs := b.c.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: b.prefix, Recursive: true})
	for e := range b.c.RemoveObjects(ctx, b.name, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return e.Err
		}
	}
	return nil
}
