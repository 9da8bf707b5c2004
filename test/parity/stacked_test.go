package parity

// The stacked topology tied to kubeadm: on each control-plane host etcdadm
// writes the configuration kubeadm v1.37.2 runs with (kubeadm-init.yaml on
// the first host, kubeadm-join.yaml on the others), and kubeadm's own code,
// imported as Go packages or run as its command line in this process, must
// accept it, reuse etcdadm's etcd PKI and agree on etcd's static Pod.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes/fake"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	outputv1alpha3 "k8s.io/kubernetes/cmd/kubeadm/app/apis/output/v1alpha3"
	kubeadmcmd "k8s.io/kubernetes/cmd/kubeadm/app/cmd"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	etcdphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/uploadconfig"
	"k8s.io/kubernetes/cmd/kubeadm/app/preflight"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	utilsexec "k8s.io/utils/exec"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubeadmconfig"
	"github.com/etcdadm-io/etcdadm/pkg/manifests"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

var stackedCases = []parityCase{
	{"stacked-three-ipv4", header + `spec:
  topology: stacked
  hosts:
  - {name: cp0, address: 10.0.0.6}
  - {name: cp1, address: 10.0.0.7}
  - {name: cp2, address: 10.0.0.8}
`},
	{"stacked-ipv6-ecdsa", header + `spec:
  topology: stacked
  pki: {keyAlgorithm: ECDSA-P256}
  hosts:
  - {name: cp0, address: "fd00::10"}
  - {name: cp1, address: "fd00::11"}
  - {name: cp2, address: "fd00::12"}
`},
	// Per-host SANs, a data directory of its own, image overrides and etcd
	// flags: everything the ClusterConfiguration carries.
	{"stacked-sans-and-overrides", header + `spec:
  topology: stacked
  kubernetesVersion: v1.36.4
  pki: {keyAlgorithm: ECDSA-P384}
  etcd:
    imageRepository: registry.example.com:5000/k8s
    imageTag: 3.7.0-1
    dataDir: /data/etcd
    serverCertSANs: [etcd.example.com, 192.0.2.10]
    peerCertSANs: [peers.example.com]
    extraArgs: {quota-backend-bytes: "8589934592", auto-compaction-retention: "8"}
  hosts:
  - {name: cp0.example.com, address: 10.0.0.6, serverCertSANs: [cp0-etcd.example.com], peerCertSANs: [198.51.100.6]}
  - {name: cp1.example.com, address: 10.0.0.7, serverCertSANs: [cp1-etcd.example.com]}
  - {name: cp2.example.com, address: 10.0.0.8}
`},
}

// stacked is a stacked inventory's plan, as render writes it.
type stacked struct {
	c   *config.Cluster
	p   *plan.Plan
	pki *certs.PKI
}

func computeStacked(t *testing.T, tc parityCase) stacked {
	t.Helper()
	c, _, err := config.Parse([]byte(tc.inventory), tc.name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, pki, _, err := plan.Compute(c, pipeline.RuntimeFor(c), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return stacked{c: c, p: p, pki: pki}
}

// first is the host kubeadm init runs on.
func (s stacked) first(t *testing.T) plan.Host {
	t.Helper()
	h, ok := s.p.FindHost(s.c.Spec.Hosts[0].Name)
	if !ok {
		t.Fatalf("no plan for %s", s.c.Spec.Hosts[0].Name)
	}
	return *h
}

// runKubeadm runs kubeadm v1.37.2's command line in this process.
func runKubeadm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := kubeadmcmd.NewKubeadmCommand(strings.NewReader(""), &out, &errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String() + errOut.String(), err
}

// writeTemp writes data to a new file in a test directory and returns its path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, data, 0o600)
	return p
}

// effectiveConfig is the configuration kubeadm works with on host h. On the
// first host, `kubeadm init --config kubeadm-init.yaml` loads the file. A
// joining host gets the ClusterConfiguration the first host's init uploaded
// to the kubeadm-config ConfigMap (kubeadm's own upload and fetch, with
// client-go's in-memory clientset standing in for the API server), and its
// node name and advertise address from kubeadm-join.yaml, as `kubeadm join`
// puts them together.
func effectiveConfig(t *testing.T, initFile []byte, h plan.Host) *kubeadmapi.InitConfiguration {
	t.Helper()
	initCfg, err := configutil.BytesToInitConfiguration(initFile, true)
	if err != nil {
		t.Fatalf("kubeadm cannot load kubeadm-init.yaml: %v\n%s", err, initFile)
	}
	joinFile, joining := h.File(kubeadmconfig.JoinPath)
	if !joining {
		return initCfg
	}
	client := fake.NewClientset()
	if err := uploadconfig.UploadConfiguration(initCfg, client); err != nil {
		t.Fatalf("kubeadm upload-config: %v", err)
	}
	cfg, err := configutil.FetchInitConfigurationFromCluster(client, nil, "preflight", false, false, false, true)
	if err != nil {
		t.Fatalf("kubeadm cannot read back the kubeadm-config ConfigMap: %v", err)
	}
	join, err := configutil.BytesToJoinConfiguration(joinFile.Data, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
	if err != nil {
		t.Fatalf("kubeadm cannot load kubeadm-join.yaml: %v\n%s", err, joinFile.Data)
	}
	if join.ControlPlane == nil {
		t.Fatalf("%s: kubeadm-join.yaml does not join a control plane:\n%s", h.Name, joinFile.Data)
	}
	cfg.NodeRegistration = join.NodeRegistration
	cfg.LocalAPIEndpoint = join.ControlPlane.LocalAPIEndpoint
	return cfg
}

// placeCerts writes the host's planned certificates and keys, with their
// modes, under dir as under /etc/kubernetes/pki, and returns the SHA-256 of
// each by its path relative to dir.
func placeCerts(t *testing.T, h plan.Host, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, f := range h.Files {
		if f.Part != plan.PartCerts {
			continue
		}
		rel := strings.TrimPrefix(f.Path, manifests.CertificatesDir+"/")
		writeFile(t, filepath.Join(dir, rel), f.Data, f.Mode.Perm())
		sums[rel] = f.SHA256()
	}
	if len(sums) != 10 {
		t.Fatalf("%s: %d certificate files in the plan, want 10 (the CA and its key, 4 leaves and their keys)", h.Name, len(sums))
	}
	return sums
}

// checkUnchanged checks that every file etcdadm placed is as it was.
func checkUnchanged(t *testing.T, what, dir string, sums map[string]string) {
	t.Helper()
	for rel, want := range sums {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
			t.Errorf("%s rewrote etcdadm's %s", what, rel)
		}
	}
}

func fileOfKind(t *testing.T, h plan.Host) plan.File {
	t.Helper()
	i, j := slices.IndexFunc(h.Files, func(f plan.File) bool { return f.Path == kubeadmconfig.InitPath }),
		slices.IndexFunc(h.Files, func(f plan.File) bool { return f.Path == kubeadmconfig.JoinPath })
	switch {
	case i >= 0 && j >= 0:
		t.Fatalf("%s gets both %s and %s", h.Name, kubeadmconfig.InitPath, kubeadmconfig.JoinPath)
	case i >= 0:
		return h.Files[i]
	case j >= 0:
		return h.Files[j]
	}
	t.Fatalf("%s has neither %s nor %s in its plan", h.Name, kubeadmconfig.InitPath, kubeadmconfig.JoinPath)
	return plan.File{}
}

// Every generated file passes `kubeadm config validate`; the first host
// gets the init configuration, every other host a join configuration for
// its own name and address that discovers the cluster through the first.
func TestStackedKubeadmConfigsValidate(t *testing.T) {
	for _, tc := range stackedCases {
		t.Run(tc.name, func(t *testing.T) {
			s := computeStacked(t, tc)
			first := s.c.Spec.Hosts[0]
			for i, h := range s.p.Hosts {
				f := fileOfKind(t, h)
				out, err := runKubeadm(t, "config", "validate", "--config", writeTemp(t, path.Base(f.Path), f.Data))
				if err != nil || !strings.Contains(out, "ok") {
					t.Fatalf("%s: kubeadm config validate refuses %s: %v\n%s\n%s", h.Name, f.Path, err, out, f.Data)
				}
				if i == 0 {
					if f.Path != kubeadmconfig.InitPath || f.Mode != 0o644 || f.Part != plan.PartKubeadmConfig {
						t.Errorf("%s: %s %04o (%s), want %s 0644 (kubeadm-config)", h.Name, f.Path, f.Mode, f.Part, kubeadmconfig.InitPath)
					}
					cfg := effectiveConfig(t, f.Data, h)
					if cfg.NodeRegistration.Name != h.Name || cfg.LocalAPIEndpoint.AdvertiseAddress != h.Address {
						t.Errorf("%s: init configuration is for %s at %s", h.Name, cfg.NodeRegistration.Name, cfg.LocalAPIEndpoint.AdvertiseAddress)
					}
					if want := kubeadmconfig.APIServerEndpoint(s.c); cfg.ControlPlaneEndpoint != want {
						t.Errorf("controlPlaneEndpoint %q, want %q", cfg.ControlPlaneEndpoint, want)
					}
					if !slices.Equal(cfg.SkipPhases, []string{"etcd"}) {
						t.Errorf("init skips %v, want [etcd]", cfg.SkipPhases)
					}
					continue
				}
				if f.Path != kubeadmconfig.JoinPath || f.Mode != 0o600 || f.Part != plan.PartKubeadmConfig {
					t.Errorf("%s: %s %04o (%s), want %s 0600 (kubeadm-config)", h.Name, f.Path, f.Mode, f.Part, kubeadmconfig.JoinPath)
				}
				join, err := configutil.BytesToJoinConfiguration(f.Data, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
				if err != nil {
					t.Fatal(err)
				}
				if join.ControlPlane == nil || join.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != h.Address || join.NodeRegistration.Name != h.Name {
					t.Errorf("%s: join configuration is not a control plane at %s named %s:\n%s", h.Name, h.Address, h.Name, f.Data)
				}
				bt := join.Discovery.BootstrapToken
				switch {
				case bt == nil:
					t.Errorf("%s: no bootstrap token discovery", h.Name)
				case bt.APIServerEndpoint != kubeadmconfig.APIServerEndpoint(s.c) || !strings.Contains(bt.APIServerEndpoint, first.Address):
					t.Errorf("%s: discovers the cluster at %q, want the first host %s", h.Name, bt.APIServerEndpoint, first.Address)
				case bt.UnsafeSkipCAVerification || len(bt.CACertHashes) == 0:
					t.Errorf("%s: discovery does not verify the cluster CA", h.Name)
				case bt.Token != kubeadmconfig.PlaceholderToken || bt.CACertHashes[0] != kubeadmconfig.PlaceholderCACertHash:
					t.Errorf("%s: discovery holds %q and %v, not the documented placeholders", h.Name, bt.Token, bt.CACertHashes)
				}
				if !bytes.Contains(f.Data, []byte("unsafeSkipCAVerification: false")) {
					t.Errorf("%s: the join file does not say the CA is verified:\n%s", h.Name, f.Data)
				}
				if !slices.Equal(join.SkipPhases, []string{"etcd-join"}) {
					t.Errorf("%s: join skips %v, want [etcd-join]", h.Name, join.SkipPhases)
				}
				if join.ControlPlane != nil && join.ControlPlane.CertificateKey != "" {
					t.Errorf("%s: the join file holds a certificate key", h.Name)
				}
			}
		})
	}
}

// With etcdadm's files in a scratch certificatesDir, kubeadm's certificate
// phases make every other certificate and reuse etcdadm's etcd CA and leaves
// byte for byte; `kubeadm certs check-expiration` then reports them.
func TestStackedKubeadmReusesEtcdadmCertificates(t *testing.T) {
	for _, tc := range stackedCases {
		t.Run(tc.name, func(t *testing.T) {
			s := computeStacked(t, tc)
			initFile := fileOf(t, s.first(t), kubeadmconfig.InitPath)
			for _, h := range s.p.Hosts {
				t.Run(h.Name, func(t *testing.T) {
					dir := t.TempDir()
					sums := placeCerts(t, h, dir)
					cfg := effectiveConfig(t, initFile, h)
					cfg.CertificatesDir = dir
					if _, joining := h.File(kubeadmconfig.JoinPath); joining {
						// kubeadm join's control-plane-prepare/certs phase:
						// it also checks the leaves' SANs against the
						// cluster's ClusterConfiguration.
						if err := certsphase.CreatePKIAssets(cfg); err != nil {
							t.Fatalf("kubeadm join's certs phase: %v", err)
						}
					} else {
						cfgFile := writeTemp(t, "init.yaml", marshalInit(t, cfg))
						if out, err := runKubeadm(t, "init", "phase", "certs", "all", "--config", cfgFile); err != nil {
							t.Fatalf("kubeadm init phase certs all: %v\n%s", err, out)
						}
					}
					checkUnchanged(t, "kubeadm's certs phase", dir, sums)
					for _, made := range []string{"ca.crt", "ca.key", "apiserver.crt", "apiserver-kubelet-client.crt", "front-proxy-ca.crt", "front-proxy-client.crt", "sa.key", "sa.pub"} {
						if _, err := os.Stat(filepath.Join(dir, made)); err != nil {
							t.Errorf("kubeadm's certs phase did not make %s: %v", made, err)
						}
					}
					checkExpiration(t, h, s.pki, cfg)
				})
			}
		})
	}
}

// marshalInit writes a configuration as kubeadm writes its own.
func marshalInit(t *testing.T, cfg *kubeadmapi.InitConfiguration) []byte {
	t.Helper()
	b, err := configutil.MarshalInitConfigurationToBytes(cfg, kubeadmv1beta4.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkExpiration runs `kubeadm certs check-expiration -o json` on cfg's
// certificatesDir and checks what it says of etcd's certificates.
func checkExpiration(t *testing.T, h plan.Host, pki *certs.PKI, cfg *kubeadmapi.InitConfiguration) {
	t.Helper()
	cfgFile := writeTemp(t, "check.yaml", marshalInit(t, cfg))
	out, err := runKubeadm(t, "certs", "check-expiration", "--config", cfgFile, "--kubeconfig", filepath.Join(t.TempDir(), "none.conf"), "-o", "json")
	if err != nil {
		t.Fatalf("kubeadm certs check-expiration: %v\n%s", err, out)
	}
	var info outputv1alpha3.CertificateExpirationInfo
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &info); err != nil {
		t.Fatalf("kubeadm certs check-expiration -o json: %v\n%s", err, out)
	}
	byName := map[string]outputv1alpha3.Certificate{}
	for _, c := range info.Certificates {
		byName[c.Name] = c
	}
	for _, c := range info.CertificateAuthorities {
		byName[c.Name] = c
	}
	want := map[string]*x509.Certificate{"etcd-ca": pki.CA.Cert}
	for _, kp := range pki.Hosts[h.Name] {
		want[kp.Name] = kp.Cert
	}
	if len(want) != 5 {
		t.Fatalf("%d etcd certificates for %s, want 5", len(want), h.Name)
	}
	for name, cert := range want {
		got, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("check-expiration does not list %s:\n%s", name, out)
		case got.Missing || got.ExternallyManaged:
			t.Errorf("check-expiration: %s missing %v, externally managed %v", name, got.Missing, got.ExternallyManaged)
		case !got.ExpirationDate.Time.Equal(cert.NotAfter.Truncate(time.Second)):
			t.Errorf("check-expiration: %s expires %s, etcdadm's certificate %s", name, got.ExpirationDate.Time, cert.NotAfter)
		case name != "etcd-ca" && got.CAName != "etcd-ca":
			t.Errorf("check-expiration: %s signed by %q, want etcd-ca", name, got.CAName)
		}
	}
}

// kubeadm's etcd phase, given the configuration each host runs kubeadm
// with, writes etcdadm's manifest byte for byte. On the first host it is
// also the command line, `kubeadm init phase etcd local --config
// kubeadm-init.yaml`, as it is: a phase run on its own does not honour the
// file's skipPhases, so this is what an operator who runs it gets.
func TestStackedKubeadmEtcdLocalMatchesManifest(t *testing.T) {
	for _, tc := range stackedCases {
		t.Run(tc.name, func(t *testing.T) {
			s := computeStacked(t, tc)
			first := s.first(t)
			initFile := fileOf(t, first, kubeadmconfig.InitPath)
			for _, h := range s.p.Hosts {
				ours := planFile(t, h, manifests.ManifestPath(s.c))
				cfg := effectiveConfig(t, initFile, h)
				dir := t.TempDir()
				if err := etcdphase.CreateLocalEtcdStaticPodManifestFile(dir, "", cfg.NodeRegistration.Name, &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false); err != nil {
					t.Fatalf("%s: kubeadm etcd local: %v", h.Name, err)
				}
				theirs, err := os.ReadFile(filepath.Join(dir, "etcd.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(string(theirs), string(ours.Data)); diff != "" {
					t.Errorf("%s: kubeadm's etcd manifest differs from etcdadm's (-kubeadm +etcdadm):\n%s", h.Name, diff)
				}
			}
			dryRun := t.TempDir()
			t.Setenv(kubeadmconstants.EnvVarInitDryRunDir, dryRun)
			out, err := runKubeadm(t, "init", "phase", "etcd", "local", "--dry-run", "--config", writeTemp(t, "kubeadm-init.yaml", initFile))
			if err != nil {
				t.Fatalf("kubeadm init phase etcd local: %v\n%s", err, out)
			}
			theirs, err := os.ReadFile(filepath.Join(dryRun, "etcd.yaml"))
			if err != nil {
				t.Fatalf("kubeadm init phase etcd local wrote no manifest: %v\n%s", err, out)
			}
			if ours := planFile(t, first, manifests.ManifestPath(s.c)); !bytes.Equal(theirs, ours.Data) {
				t.Errorf("kubeadm init phase etcd local --config kubeadm-init.yaml differs from etcdadm's manifest:\n%s", cmp.Diff(string(theirs), string(ours.Data)))
			}
		})
	}
}

// The phases the files skip exist in kubeadm v1.37.2 (a wrong name makes
// kubeadm refuse to run), the preflight errors they ignore are exactly
// kubeadm's checks of etcd's ports, data directory and manifest, and the
// upgrade commands take --etcd-upgrade.
func TestStackedKubeadmPhasesAndPreflight(t *testing.T) {
	root := kubeadmcmd.NewKubeadmCommand(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	phases := func(args ...string) []string {
		cmd, _, err := root.Find(args)
		if err != nil {
			t.Fatalf("kubeadm %s: %v", strings.Join(args, " "), err)
		}
		var names []string
		for _, c := range cmd.Commands() {
			names = append(names, c.Name())
		}
		return names
	}
	for _, p := range kubeadmconfig.InitSkipPhases() {
		if !slices.Contains(phases("init", "phase"), p) {
			t.Errorf("kubeadm init has no phase %q: %v", p, phases("init", "phase"))
		}
	}
	for _, p := range kubeadmconfig.JoinSkipPhases() {
		if !slices.Contains(phases("join", "phase"), p) {
			t.Errorf("kubeadm join has no phase %q: %v", p, phases("join", "phase"))
		}
	}
	// etcd joins in a phase of its own since kubeadm v1.35.
	if slices.Contains(phases("join", "phase", "control-plane-join"), "etcd") {
		t.Errorf("kubeadm join still has control-plane-join/etcd")
	}
	if !slices.Contains(phases("reset", "phase"), "remove-etcd-member") {
		t.Errorf("kubeadm reset has no phase remove-etcd-member: %v", phases("reset", "phase"))
	}
	// The README renews kubeadm's own certificates by name, leaving etcd's
	// to etcdadm.
	renew := phases("certs", "renew")
	for _, name := range []string{"apiserver", "apiserver-kubelet-client", "front-proxy-client", "admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
		"etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"} {
		if !slices.Contains(renew, name) {
			t.Errorf("kubeadm certs renew has no %s: %v", name, renew)
		}
	}
	for _, args := range [][]string{{"upgrade", "apply"}, {"upgrade", "node"}} {
		cmd, _, err := root.Find(args)
		if err != nil || cmd.Flags().Lookup("etcd-upgrade") == nil {
			t.Errorf("kubeadm %s has no --etcd-upgrade (%v)", strings.Join(args, " "), err)
		}
	}

	for _, tc := range stackedCases {
		t.Run(tc.name, func(t *testing.T) {
			s := computeStacked(t, tc)
			initFile := fileOf(t, s.first(t), kubeadmconfig.InitPath)
			for _, h := range s.p.Hosts {
				cfg := effectiveConfig(t, initFile, h)
				_, joining := h.File(kubeadmconfig.JoinPath)
				checks, err := preflight.InitNodeChecks(utilsexec.New(), cfg, sets.New[string](), joining, false)
				if err != nil {
					t.Fatal(err)
				}
				manifest := kubeadmconstants.GetStaticPodFilepath(kubeadmconstants.Etcd, kubeadmconstants.GetStaticPodDirectory())
				var etcdChecks []string
				for _, c := range checks {
					switch c := c.(type) {
					case preflight.DirAvailableCheck:
						if c.Path == s.c.Spec.Etcd.DataDir {
							etcdChecks = append(etcdChecks, c.Name())
						}
					case preflight.FileAvailableCheck:
						if c.Path == manifest {
							etcdChecks = append(etcdChecks, c.Name())
						}
					case preflight.PortOpenCheck:
						for _, port := range []int{kubeadmconstants.EtcdListenClientPort, kubeadmconstants.EtcdListenPeerPort} {
							if c.Name() == "Port-"+strconv.Itoa(port) {
								etcdChecks = append(etcdChecks, c.Name())
							}
						}
					}
				}
				if diff := cmp.Diff(sorted(etcdChecks), sorted(cfg.NodeRegistration.IgnorePreflightErrors)); diff != "" || len(etcdChecks) != 4 {
					t.Errorf("%s: ignored preflight errors differ from kubeadm's checks of etcd's ports, data directory and manifest (-kubeadm +etcdadm):\n%s", h.Name, diff)
				}
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// The order kubeadm imposes: etcd runs where kubeadm's kubelet runs it, so
// the inventory starts with the first host alone and grows one host at a
// time, each added as a learner. The first host's kubeadm-init.yaml stays as
// kubeadm uploaded it; a host added later joins with the uploaded
// configuration, reuses etcdadm's certificates, and must not let kubeadm
// write its etcd manifest: kubeadm would start it from the first host's
// --initial-cluster as a new cluster.
func TestStackedGrownOneHostAtATime(t *testing.T) {
	dir := t.TempDir()
	inventory := func(names ...string) *config.Cluster {
		var b strings.Builder
		b.WriteString(header + "spec:\n  topology: stacked\n  etcd: {serverCertSANs: [etcd.example.com]}\n  hosts:\n")
		for i, n := range names {
			b.WriteString("  - {name: " + n + ", address: 10.0.0." + strconv.Itoa(6+i) + "}\n")
		}
		c, _, err := config.Parse([]byte(b.String()), "grown", dir)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	one := inventory("cp0")
	pki1, _, err := certs.Ensure(one, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := plan.Files(one, pipeline.RuntimeFor(one), pki1, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp0 := p1.Hosts[0]
	initFile := fileOf(t, cp0, kubeadmconfig.InitPath)

	two := inventory("cp0", "cp1")
	pki2, _, err := certs.Compute(two, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pki2.CA.CertPEM, pki1.CA.CertPEM) {
		t.Fatal("the grown inventory has another CA")
	}
	// cp0 keeps the --initial-cluster its manifest has; cp1 joins the
	// running cluster as a learner.
	kept := plan.Member{InitialCluster: "cp0=https://10.0.0.6:2380", State: manifests.StateNew}
	cp0Now, err := plan.HostFiles(two, pipeline.RuntimeFor(two), pki2, two.Spec.Hosts[0], kept, plan.AllParts)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileOf(t, cp0Now, kubeadmconfig.InitPath); !bytes.Equal(got, initFile) {
		t.Errorf("adding a host changes the first host's kubeadm-init.yaml:\n%s", cmp.Diff(string(initFile), string(got)))
	}
	joined := plan.Member{InitialCluster: "cp0=https://10.0.0.6:2380,cp1=https://10.0.0.7:2380", State: manifests.StateExisting}
	cp1, err := plan.HostFiles(two, pipeline.RuntimeFor(two), pki2, two.Spec.Hosts[1], joined, plan.AllParts)
	if err != nil {
		t.Fatal(err)
	}
	joinFile := fileOf(t, cp1, kubeadmconfig.JoinPath)
	if err := configutil.ValidateConfig(joinFile, false, false); err != nil {
		t.Fatalf("kubeadm config validate refuses cp1's kubeadm-join.yaml: %v", err)
	}
	cfg := effectiveConfig(t, initFile, cp1)
	if cfg.NodeRegistration.Name != "cp1" || cfg.LocalAPIEndpoint.AdvertiseAddress != "10.0.0.7" {
		t.Fatalf("kubeadm join on cp1 works as %s at %s", cfg.NodeRegistration.Name, cfg.LocalAPIEndpoint.AdvertiseAddress)
	}
	pkiDir := t.TempDir()
	sums := placeCerts(t, cp1, pkiDir)
	cfg.CertificatesDir = pkiDir
	if err := certsphase.CreatePKIAssets(cfg); err != nil {
		t.Fatalf("kubeadm join's certs phase on cp1: %v", err)
	}
	checkUnchanged(t, "kubeadm join's certs phase", pkiDir, sums)

	// What kubeadm's etcd-join would write from the uploaded configuration.
	cfg.CertificatesDir = manifests.CertificatesDir
	manifestDir := t.TempDir()
	if err := etcdphase.CreateLocalEtcdStaticPodManifestFile(manifestDir, "", cfg.NodeRegistration.Name, &cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, false); err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile(filepath.Join(manifestDir, "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ours := fileOf(t, cp1, manifests.ManifestPath(two))
	if !bytes.Contains(ours, []byte("--initial-cluster-state=existing")) || !bytes.Contains(theirs, []byte("--initial-cluster-state=new")) || !bytes.Contains(theirs, []byte("--initial-cluster=cp0=https://10.0.0.6:2380\n")) {
		t.Errorf("expected kubeadm to render cp1's etcd from cp0's settings and etcdadm as a joining member:\n--- kubeadm\n%s\n--- etcdadm\n%s", theirs, ours)
	}
	join, err := configutil.BytesToJoinConfiguration(joinFile, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(join.SkipPhases, "etcd-join") {
		t.Errorf("cp1's kubeadm-join.yaml lets kubeadm write etcd's manifest: skipPhases %v", join.SkipPhases)
	}
}
