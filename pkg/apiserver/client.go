package apiserver

import (
	"context"
	"fmt"
	"net"

	"k8s.io/client-go/rest"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

// RESTConfig reads a kubeconfig as kubeadm writes admin.conf (its current
// context's cluster and user, with their certificates inline) into a client
// configuration whose connections go through dial: the control-plane host's
// SSH connection, so that the API is reached from where the file is.
func RESTConfig(kubeconfig []byte, dial Dialer) (*rest.Config, error) {
	var kc clientcmdv1.Config
	if err := yaml.Unmarshal(kubeconfig, &kc); err != nil {
		return nil, fmt.Errorf("read the kubeconfig: %w", err)
	}
	name := kc.CurrentContext
	var ctx *clientcmdv1.Context
	for i := range kc.Contexts {
		if kc.Contexts[i].Name == name {
			ctx = &kc.Contexts[i].Context
		}
	}
	if ctx == nil {
		return nil, fmt.Errorf("the kubeconfig has no current context %q", name)
	}
	var cluster *clientcmdv1.Cluster
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == ctx.Cluster {
			cluster = &kc.Clusters[i].Cluster
		}
	}
	var user *clientcmdv1.AuthInfo
	for i := range kc.AuthInfos {
		if kc.AuthInfos[i].Name == ctx.AuthInfo {
			user = &kc.AuthInfos[i].AuthInfo
		}
	}
	switch {
	case cluster == nil:
		return nil, fmt.Errorf("the kubeconfig has no cluster %q", ctx.Cluster)
	case user == nil:
		return nil, fmt.Errorf("the kubeconfig has no user %q", ctx.AuthInfo)
	case len(cluster.CertificateAuthorityData) == 0:
		return nil, fmt.Errorf("the kubeconfig's cluster %q has no certificate-authority-data", ctx.Cluster)
	case user.Token == "" && (len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0):
		return nil, fmt.Errorf("the kubeconfig's user %q has neither a token nor client-certificate-data and client-key-data", ctx.AuthInfo)
	}
	return &rest.Config{
		Host:        cluster.Server,
		BearerToken: user.Token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     cluster.CertificateAuthorityData,
			CertData:   user.ClientCertificateData,
			KeyData:    user.ClientKeyData,
			ServerName: cluster.TLSServerName,
		},
		Dial:      func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
		UserAgent: "etcdadm",
	}, nil
}
