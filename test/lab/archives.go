package lab

import (
	"fmt"
	"os"

	"github.com/etcdadm-io/etcdadm/test/lab/internal/ociimage"
)

// DockerArchive writes to dst the docker-archive (`docker save`'s layout)
// of the image in the OCI image layout tarball src, one of the lab's
// images: the other form of archive an air-gapped operator carries.
func DockerArchive(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("docker-archive of %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("docker-archive of %s: %w", src, err)
	}
	if err := ociimage.ToDocker(out, in); err != nil {
		out.Close()
		return fmt.Errorf("docker-archive of %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("docker-archive of %s: %w", src, err)
	}
	return nil
}

// EtcdImageOf writes to dst an OCI image layout tarball of an etcd image
// named ref whose etcd is the program bin (at /usr/local/bin/etcd, as in
// the lab's etcd image): a broken etcd, say, to see what a roll does with
// an image that cannot start.
func EtcdImageOf(dst, ref, bin string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	_, err = ociimage.Write(out, ociimage.Image{Ref: ref, Cmd: []string{"/usr/local/bin/etcd"},
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: []ociimage.File{{Path: "usr/local/bin/etcd", Source: bin, Mode: 0o755}}})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}
