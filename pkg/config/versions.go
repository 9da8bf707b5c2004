package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
)

// etcdImageTags is the etcd image kubeadm v1.37.2 deploys for each Kubernetes
// minor it supports (its SupportedEtcdVersion table, with 37 falling back to
// the newest entry as kubeadm does).
var etcdImageTags = map[uint]string{
	36: "3.7.0-0",
	37: "3.7.0-0",
}

// PauseImageTag is the sandbox image kubeadm v1.37 uses.
const PauseImageTag = "3.10.2"

// SupportedKubernetesMinors are the Kubernetes minors (of major 1) etcdadm deploys etcd for.
var SupportedKubernetesMinors = []uint{37, 36}

// EtcdImageTag returns kubeadm's default etcd image tag for a Kubernetes version.
func EtcdImageTag(kubernetesVersion string) (string, error) {
	v, err := version.ParseSemantic(kubernetesVersion)
	if err != nil {
		return "", fmt.Errorf("parse kubernetes version %q: %w", kubernetesVersion, err)
	}
	tag, ok := etcdImageTags[v.Minor()]
	if v.Major() != 1 || !ok {
		return "", fmt.Errorf("kubernetes version %s is not supported: use v1.37.x or v1.36.x", kubernetesVersion)
	}
	return tag, nil
}

// EtcdImage is the full etcd image reference for the cluster.
func (c *Cluster) EtcdImage() string {
	tag := c.Spec.Etcd.ImageTag
	if tag == "" {
		// Validation has checked the version.
		tag, _ = EtcdImageTag(c.Spec.KubernetesVersion)
	}
	return c.Spec.Etcd.ImageRepository + "/etcd:" + tag
}

// PauseImage is the sandbox image the hosts' container runtime needs.
func (c *Cluster) PauseImage() string {
	return c.Spec.Etcd.ImageRepository + "/pause:" + PauseImageTag
}
