package fakehost_test

import (
	"context"
	"fmt"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func Example() {
	h := fakehost.New("infra0")
	h.Handle(fakehost.Contains("systemctl is-active"), fakehost.Reply("active\n"))
	h.Handle(fakehost.Exact("systemctl restart kubelet"), fakehost.Fail(5, "Unit kubelet.service not found.\n"))
	ctx := context.Background()

	out, _ := h.Run(ctx, "systemctl is-active etcd", nil)
	fmt.Print(string(out))
	_, err := h.Run(ctx, "systemctl restart kubelet", nil)
	fmt.Println(err)
	_, err = h.Run(ctx, "reboot", nil)
	fmt.Println(err)
	res, _ := h.WriteFile(ctx, remote.File{Path: "/etc/kubernetes/manifests/etcd.yaml", Mode: 0o600, Data: []byte("kind: Pod\n")}, "")
	fmt.Println(res.Action, h.Paths())
	fmt.Println(h.Unhandled())
	// Output:
	// active
	// run "systemctl restart kubelet" on infra0: exit status 5: Unit kubelet.service not found.
	// run "reboot" on infra0: fakehost: no handler for the command
	// created [/etc/kubernetes/manifests/etcd.yaml]
	// [reboot]
}
