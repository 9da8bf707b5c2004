package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

// PartSize is the size of each part of an upload: 16 MiB, of which two
// are in memory at once, lets one object grow to 156 GiB (S3 takes
// 10,000 parts).
const PartSize = 16 << 20

// Store is the bucket the backups go to.
type Store struct {
	cli    *minio.Client
	Bucket string
	Prefix string
	// Endpoint is the server's URL, for messages.
	Endpoint string
}

// Object is an object of the bucket.
type Object struct {
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	LastModified time.Time `json:"lastModified"`
}

// NewStore reaches the bucket of s with the credentials, trusting ca (a
// PEM bundle) besides the system's CAs.
func NewStore(s config.S3, creds *config.S3Credentials, ca []byte) (*Store, error) {
	if creds == nil {
		return nil, errors.New("no S3 credentials")
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %q: %w", s.Endpoint, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(ca) > 0 && !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("the S3 CA file holds no certificate")
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
		// The payload is a snapshot, encrypted: compression gains nothing.
		DisableCompression: true,
	}
	cli, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		Secure:       u.Scheme == "https",
		Transport:    tr,
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
		// A server that does not answer fails a call within seconds.
		MaxRetries: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", s.Endpoint, err)
	}
	return &Store{cli: cli, Bucket: s.Bucket, Prefix: s.Prefix, Endpoint: s.Endpoint}, nil
}

// ClusterDir is where cluster's backups go: "<prefix><cluster>/".
func (s *Store) ClusterDir(cluster string) string { return s.Prefix + cluster + "/" }

// URL names key for people.
func (s *Store) URL(key string) string { return "s3://" + s.Bucket + "/" + key }

func (s *Store) wrap(what, key string, err error) error {
	return fmt.Errorf("%s %s (at %s): %w", what, s.URL(key), s.Endpoint, err)
}

// Put uploads r to key in parts of PartSize, two at a time: never whole
// in memory. When r fails, the upload is aborted and no object is made.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	info, err := s.cli.PutObject(ctx, s.Bucket, key, r, -1, minio.PutObjectOptions{
		ContentType:           contentType,
		PartSize:              PartSize,
		NumThreads:            2,
		ConcurrentStreamParts: true,
		DisableContentSha256:  true,
	})
	if err != nil {
		return 0, s.wrap("upload", key, err)
	}
	return info.Size, nil
}

// PutSmall uploads data to key in one request.
func (s *Store) PutSmall(ctx context.Context, key string, data []byte, contentType string) error {
	_, err := s.cli.PutObject(ctx, s.Bucket, key, strings.NewReader(string(data)), int64(len(data)), minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return s.wrap("upload", key, err)
	}
	return nil
}

// Copy makes dst a copy of src, within the bucket (by parts, server side,
// for an object over 5 GiB).
func (s *Store) Copy(ctx context.Context, dst, src string) error {
	_, err := s.cli.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.Bucket, Object: dst}, minio.CopySrcOptions{Bucket: s.Bucket, Object: src})
	if err != nil {
		return s.wrap("copy "+s.URL(src)+" to", dst, err)
	}
	return nil
}

// Get streams key; the caller closes it.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	o, err := s.cli.GetObject(ctx, s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, s.wrap("download", key, err)
	}
	st, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, 0, s.wrap("download", key, err)
	}
	return o, st.Size, nil
}

// ReadSmall reads key whole, up to max bytes.
func (s *Store) ReadSmall(ctx context.Context, key string, max int64) ([]byte, error) {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, s.wrap("download", key, err)
	}
	if int64(len(b)) > max {
		return nil, s.wrap("download", key, fmt.Errorf("larger than %d bytes", max))
	}
	return b, nil
}

// List lists the objects under prefix, by key.
func (s *Store) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.cli.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.wrap("list", prefix, o.Err)
		}
		out = append(out, Object{Key: o.Key, Size: o.Size, LastModified: o.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Remove deletes key; a key that is not there is no error.
func (s *Store) Remove(ctx context.Context, key string) error {
	if err := s.cli.RemoveObject(ctx, s.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", key, err)
	}
	return nil
}

// ParseURL splits s3://bucket/key.
func ParseURL(u string) (bucket, key string, ok bool) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != ""
}
