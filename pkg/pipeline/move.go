package pipeline

import (
	"context"
	"fmt"

	"github.com/etcdadm-io/etcdadm/pkg/gather"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
)

// Move moves member name to the address the inventory gives it, with its
// ID and its data (see plan.Move). Its old host is read from the member
// list and reached over SSH at its old address, with the inventory's SSH
// settings for name; its transport joins the run's under the name the
// plan's stages give it, and a run that writes takes its lock too.
func Move(ctx context.Context, s *Session, name string, o ConvergeOptions, h Hooks) (*Outcome, error) {
	return Change(ctx, s, func(in plan.Input) (*plan.Plan, error) {
		from, err := plan.MoveSource(in, name)
		if err != nil {
			return nil, err
		}
		if from.Address != "" {
			if err := s.reachOldHost(ctx, name, &from, !o.DryRun); err != nil {
				return nil, err
			}
		}
		return plan.Move(in, name, from)
	}, o, h)
}

// reachOldHost connects to the old host of member name and reads its
// facts into from; from.Err says why it could not be reached. Its lock, for
// a run that writes, is held until the session closes.
func (s *Session) reachOldHost(ctx context.Context, name string, from *plan.MoveFrom, lock bool) error {
	h, _ := s.Cluster.Host(name)
	old := h
	old.Name, old.Address, old.SSH.Host = from.Host, from.Address, ""
	t, err := s.opts.Connect(ctx, old)
	if err != nil {
		from.Err = err.Error()
		return nil
	}
	s.Hosts.T[from.Host] = t
	hf, l, err := gather.Another(ctx, s.Cluster, s.Runtime, t, h, lock)
	if err != nil {
		return fmt.Errorf("reading %s: %w", from.Host, err)
	}
	if l != nil {
		s.release = append(s.release, l.Release)
		s.held = append(s.held, l.Held)
	}
	from.Facts = hf
	return nil
}
