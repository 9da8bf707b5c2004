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
