package etcdservice

import (
	"slices"
	"strings"
	"testing"
)

func TestEnvFileRoundTrip(t *testing.T) {
	flags := []string{"--name=infra0", "--initial-cluster=infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380", "--feature-gates=InitialCorruptCheck=true"}
	b, err := EnvFile("infra0", flags)
	if err != nil {
		t.Fatal(err)
	}
	want := "# etcd member infra0: the flags its static Pod would run etcd with. Written by etcdadm.\n" +
		`ETCDADM_ARGS="--name=infra0 --initial-cluster=infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380 --feature-gates=InitialCorruptCheck=true"` + "\n"
	if string(b) != want {
		t.Errorf("env file:\n%s\nwant:\n%s", b, want)
	}
	got, err := ParseEnvFile(b)
	if err != nil || !slices.Equal(got, flags) {
		t.Errorf("ParseEnvFile = %v, %v; want %v", got, err, flags)
	}
	if _, err := ParseEnvFile([]byte("# nothing\nOTHER=1\n")); err == nil {
		t.Error("an environment file without the flags was read")
	}
}

func TestEnvFileRefusesWhatSplits(t *testing.T) {
	for _, f := range []string{"--log-outputs=stderr stdout", `--x="y"`, `--x=a\b`} {
		if _, err := EnvFile("n", []string{f}); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("EnvFile(%q): %v", f, err)
		}
	}
}

func TestUnitFile(t *testing.T) {
	u := string(UnitFile())
	for _, want := range []string{"Type=notify\n", "EnvironmentFile=" + EnvPath + "\n", "ExecStart=" + BinaryPath("etcd") + " $" + ArgsVar + "\n", "Restart=on-failure\n", "TimeoutStartSec=0\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(u, want) {
			t.Errorf("the unit lacks %q:\n%s", want, u)
		}
	}
}
