package hosts

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/config"
)

func TestForEachNamesEveryFailedHost(t *testing.T) {
	hosts := []config.Host{{Name: "b"}, {Name: "a"}, {Name: "c"}}
	err := ForEach(context.Background(), hosts, 2, func(_ context.Context, h config.Host) error {
		if h.Name == "c" {
			return nil
		}
		return errors.New("boom on " + h.Name)
	})
	var he *HostsError
	if !errors.As(err, &he) || len(he.Errors) != 2 || he.Errors[0].Host != "a" {
		t.Fatalf("err = %v", err)
	}
	if msg := Named(err, "pre-flight").Error(); !strings.HasPrefix(msg, "pre-flight failed on 2 host(s):\n  - a: boom on a\n  - b: boom on b") {
		t.Errorf("message %q", msg)
	}
}
