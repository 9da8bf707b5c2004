package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/etcdclient"
	"github.com/etcdadm-io/etcdadm/pkg/execute"
)

// summary is what a command that changes the hosts reports. As text, its
// lines go to stdout as they come; with -o json, stdout holds only the run's
// result, one JSON document written by done, and the lines go to stderr
// with the progress.
type summary struct {
	out  io.Writer
	log  *slog.Logger
	json bool
	res  execute.Result
}

func newSummary(streams Streams, output string) *summary {
	return &summary{out: streams.Out, log: streams.progress(), json: output == "json", res: execute.Result{Hosts: []execute.HostResult{}}}
}

// printf reports one line.
func (s *summary) printf(format string, args ...any) {
	if s.json {
		s.log.Info(fmt.Sprintf(format, args...))
		return
	}
	fmt.Fprintf(s.out, format+"\n", args...)
}

// warn reports the plan's warnings, on stderr either way.
func (s *summary) warn(warnings []string) {
	for _, w := range warnings {
		s.log.Warn(w)
	}
	s.res.Warnings = append(s.res.Warnings, warnings...)
}

// add reports what a run of the executor did, host by host.
func (s *summary) add(res *execute.Result) {
	if res == nil {
		return
	}
	s.res.Add(res)
	for _, h := range res.Hosts {
		var what []string
		if n := len(h.Written); n > 0 {
			what = append(what, fmt.Sprintf("%d file(s) written", n))
		}
		if n := len(h.Imported); n > 0 {
			what = append(what, fmt.Sprintf("%d image(s) imported", n))
		}
		if h.RestartedKubelet {
			what = append(what, "kubelet restarted")
		}
		if h.RestartedEtcd {
			what = append(what, "etcd restarted")
		}
		if len(what) == 0 && len(h.Ran) > 0 {
			what = append(what, fmt.Sprintf("%d command(s) run", len(h.Ran)))
		}
		if len(what) > 0 {
			s.printf("%s: %s", h.Host, strings.Join(what, ", "))
		}
	}
}

// members records the members' health at the end of the run.
func (s *summary) members(sts []etcdclient.MemberStatus) {
	s.res.Members = sts
}

// done writes the JSON document when one is asked for, whether the run
// failed or not, and returns err.
func (s *summary) done(err error) error {
	if !s.json {
		return err
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	if werr := enc.Encode(&s.res); werr != nil && err == nil {
		return fmt.Errorf("write the result: %w", werr)
	}
	return err
}
