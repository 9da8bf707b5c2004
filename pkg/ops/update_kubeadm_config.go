package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/apiserver"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
)

// KindUpdateKubeadmConfig sets the etcd endpoints kubeadm keeps in the cluster.
const KindUpdateKubeadmConfig Kind = "update-kubeadm-config"

// UpdateKubeadmConfig sets etcd.external.endpoints of the ClusterConfiguration
// kubeadm stored in the kube-system/kubeadm-config ConfigMap to Endpoints,
// through the API, with the host's admin.conf, over the host's SSH
// connection: kubeadm's next `upgrade` writes --etcd-servers from it. When
// that cannot be done, the run goes on with a warning naming the edit.
type UpdateKubeadmConfig struct {
	Endpoints []string `json:"endpoints"`
	Why       string   `json:"why,omitempty"`
}

func (UpdateKubeadmConfig) Kind() Kind   { return KindUpdateKubeadmConfig }
func (o UpdateKubeadmConfig) Meta() Meta { return Meta{Why: o.Why} }
func (o UpdateKubeadmConfig) String() string {
	return fmt.Sprintf("set etcd.external.endpoints in %s/%s to %s (through the API, with %s)", kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap, strings.Join(o.Endpoints, ","), apiserver.AdminConf)
}

func updateKubeadmConfig(ctx context.Context, e Env, o UpdateKubeadmConfig) error {
	changed, err := setStoredEndpoints(ctx, e, o.Endpoints)
	name := e.Host().Name
	switch {
	case err != nil:
		e.Log().Warn(name, "kubeadm's record of the etcd endpoints is not updated (%v): its next `kubeadm upgrade` would write the old ones into the kube-apiservers' --etcd-servers; run `kubectl -n %s edit configmap %s` and set etcd.external.endpoints in %s to [%s]",
			err, kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap, kubeadmconfig.StoredKey, strings.Join(o.Endpoints, ", "))
	case changed:
		e.Log().Host(name, "set etcd.external.endpoints in %s/%s to %s", kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap, strings.Join(o.Endpoints, ","))
		e.Report(Done{Ran: "update " + kubeadmconfig.StoredNamespace + "/" + kubeadmconfig.StoredConfigMap})
	default:
		e.Log().Host(name, "%s/%s already holds the etcd endpoints", kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap)
	}
	return nil
}

// setStoredEndpoints reads and updates the ConfigMap, again when another
// writer changed it meanwhile.
func setStoredEndpoints(ctx context.Context, e Env, endpoints []string) (bool, error) {
	t := e.Transport()
	kubeconfig, err := t.ReadFile(ctx, apiserver.AdminConf)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", apiserver.AdminConf, err)
	}
	client, err := apiserver.NewClient(kubeconfig, t.Dial)
	if err != nil {
		return false, fmt.Errorf("%s: %w", apiserver.AdminConf, err)
	}
	for attempt := 0; ; attempt++ {
		cm, err := client.ConfigMap(ctx, kubeadmconfig.StoredNamespace, kubeadmconfig.StoredConfigMap)
		if err != nil {
			return false, err
		}
		data, changed, err := kubeadmconfig.SetStoredEndpoints([]byte(cm.Data[kubeadmconfig.StoredKey]), endpoints)
		if err != nil || !changed {
			return false, err
		}
		cm.Data[kubeadmconfig.StoredKey] = string(data)
		err = client.UpdateConfigMap(ctx, cm)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, apiserver.ErrConflict) || attempt == 2 {
			return false, err
		}
	}
}
