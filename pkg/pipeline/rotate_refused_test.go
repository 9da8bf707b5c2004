package pipeline_test

import (
	"context"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/pipeline"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// A rotation its first stage refuses (here: hosts that hold no member, so
// the stage would have to bring them up) leaves no new CA in the PKI
// directory, and so no rotation in progress to block the other commands.
func TestRefusedRotationSavesNoNewCA(t *testing.T) {
	c := diffCluster(t, 3)
	connect := func(_ context.Context, h config.Host) (remote.Transport, error) { return emptyHost(h.Name), nil }
	s, err := pipeline.Open(context.Background(), c, pipeline.Options{Connect: connect, Concurrency: 3, Rotation: true, LockPKI: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = pipeline.RotateCA(context.Background(), s, pipeline.RotateOptions{Until: plan.RotationDone}, pipeline.Hooks{})
	if err == nil {
		t.Fatal("a rotation of hosts that hold no member went on")
	}
	if certs.RotationInProgress(c) {
		t.Errorf("refused (%v), yet %s was saved", err, certs.NewCABaseName)
	}
}
