package depprobe

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/kevinburke/ssh_config"
	_ "github.com/pkg/sftp"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/crypto/ssh/agent"
	_ "golang.org/x/crypto/ssh/knownhosts"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/client-go/util/cert"
	_ "k8s.io/client-go/util/keyutil"
	_ "k8s.io/kubelet/config/v1beta1"
	_ "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	_ "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	_ "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	_ "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	_ "k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"
	_ "sigs.k8s.io/yaml"
)
