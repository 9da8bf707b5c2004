// Package kubelet writes the files that make a host's kubelet run the etcd
// static Pod on its own, as in the kubeadm HA-etcd guide: a KubeletConfiguration
// and a systemd drop-in that overrides the packaged kubelet's ExecStart.
// It is a leaf: it imports nothing of etcdadm's but the inventory.
package kubelet

import (
	"bytes"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/etcdadm-io/etcdadm/internal/typedyaml"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/templates"
)

// Host paths, as in the guide.
const (
	DropInDir   = "/etc/systemd/system/kubelet.service.d"
	ConfigPath  = DropInDir + "/kubelet.conf"
	DropInPath  = DropInDir + "/20-etcd-service-manager.conf"
	KubeletPath = "/usr/bin/kubelet"
)

// Configuration is the KubeletConfiguration for an etcd-only host, without
// the inventory's extraConfig.
func Configuration(c *config.Cluster) *kubeletv1beta1.KubeletConfiguration {
	off := false
	k := &kubeletv1beta1.KubeletConfiguration{
		TypeMeta:                 metav1.TypeMeta{APIVersion: kubeletv1beta1.SchemeGroupVersion.String(), Kind: "KubeletConfiguration"},
		CgroupDriver:             c.Spec.Kubelet.CgroupDriver,
		Address:                  "127.0.0.1",
		ContainerRuntimeEndpoint: c.Spec.Kubelet.ContainerRuntimeEndpoint,
		StaticPodPath:            c.Spec.Kubelet.StaticPodPath,
	}
	// A standalone kubelet has no API server to authenticate against; it
	// listens on loopback only.
	k.Authentication.Anonymous.Enabled = &off
	k.Authentication.Webhook.Enabled = &off
	k.Authorization.Mode = kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow
	return k
}

// ConfigFile is the KubeletConfiguration file, extraConfig merged in.
func ConfigFile(c *config.Cluster) ([]byte, error) {
	b, err := typedyaml.Marshal(Configuration(c), c.Spec.Kubelet.ExtraConfig)
	if err != nil {
		return nil, err
	}
	// The file must read back as a KubeletConfiguration, extra fields included.
	raw, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("kubelet configuration does not read back: %w", err)
	}
	var check kubeletv1beta1.KubeletConfiguration
	if strict, err := sigsjson.UnmarshalStrict(raw, &check); err != nil || len(strict) > 0 {
		return nil, fmt.Errorf("kubelet configuration does not read back: %v", errors.Join(append(strict, err)...))
	}
	return b, nil
}

// DropIn is the systemd drop-in that starts kubelet with ConfigPath.
func DropIn() ([]byte, error) {
	var out bytes.Buffer
	err := templates.Parse("20-etcd-service-manager.conf.tmpl").Execute(&out, struct {
		KubeletPath, ConfigPath string
	}{KubeletPath, ConfigPath})
	if err != nil {
		return nil, fmt.Errorf("render kubelet drop-in: %w", err)
	}
	return out.Bytes(), nil
}
