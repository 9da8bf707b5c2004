// Command systemctl stands in for systemd's systemctl on lab hosts, which
// have no systemd. It runs services (kubelet, etcd) the way systemd would:
// from the effective ExecStart of the unit and its drop-ins as loaded at the
// last daemon-reload, with its EnvironmentFile= read at every start,
// detached, restarted according to Restart=, and for Type=notify active only
// once the service sent READY=1 to $NOTIFY_SOCKET; a Type=oneshot service's
// start returns once its process ended, failing with it. A timer is
// started, stopped, enabled and disabled, and never fires: a test starts
// its service itself. The units the lab runs itself (containerd, ssh) can
// be queried but not controlled.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdadm-io/etcdadm/test/lab/internal/unit"
)

const (
	stateDir = unit.StateDir
	// stopTimeout bounds how long stop waits for a SIGTERM to work, like
	// TimeoutStopSec (shorter than systemd's 90 s: lab tests wait on it).
	stopTimeout = 30 * time.Second
	// systemd's default start rate limit: 5 starts within 10 s.
	startLimitBurst    = 5
	startLimitInterval = 10 * time.Second
)

type state = unit.State

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var words []string
	now, noBlock := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--now":
			now = true
		case a == "--no-block":
			// Return once the job is queued: no wait for a notify
			// service's READY=1.
			noBlock = true
		case withValue(a):
			i++ // the option's value, read again by show
		case strings.HasPrefix(a, "-"):
			// --quiet, --no-pager, -l, --system: no effect here.
		default:
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		fmt.Fprintln(stderr, "systemctl (lab stand-in): listing units is not supported")
		return 1
	}
	verb, units := words[0], words[1:]
	if verb == "__supervise" && len(units) == 1 {
		return supervise(unitName(units[0]), stderr)
	}
	switch verb {
	case "daemon-reload":
		return daemonReload(stderr)
	case "start", "stop", "restart", "try-restart", "reload-or-restart", "status", "is-active", "is-failed", "enable", "disable", "is-enabled", "show", "reset-failed", "kill":
	default:
		fmt.Fprintf(stderr, "Unknown command verb %s.\n", verb)
		return 1
	}
	if len(units) == 0 {
		fmt.Fprintf(stderr, "Too few arguments.\n")
		return 1
	}
	code := 0
	for _, u := range units {
		var c int
		name := unitName(u)
		if strings.HasSuffix(name, ".timer") {
			if c = timerVerb(verb, name, now, stdout, stderr); c != 0 && code == 0 {
				code = c
			}
			continue
		}
		switch verb {
		case "start":
			c = startVerb(name, "start", !noBlock, stderr)
		case "stop":
			c = stop(name, stderr)
		case "restart", "try-restart", "reload-or-restart":
			if verb == "try-restart" && activeState(name) != "active" {
				continue
			}
			if c = stop(name, stderr); c == 0 {
				c = startVerb(name, "restart", !noBlock, stderr)
			}
		case "status":
			c = status(name, stdout)
		case "is-active":
			s := activeState(name)
			fmt.Fprintln(stdout, s)
			if s != "active" {
				c = 3
			}
		case "is-failed":
			s := activeState(name)
			fmt.Fprintln(stdout, s)
			if s != "failed" {
				c = 1
			}
		case "enable", "disable", "reset-failed":
			// Enablement is about boot, which lab hosts never do; --now
			// starts or stops the unit as well.
			switch {
			case verb == "enable" && now:
				c = startVerb(name, "start", !noBlock, stderr)
			case verb == "disable" && now:
				c = stop(name, stderr)
			}
		case "is-enabled":
			fmt.Fprintln(stdout, "enabled")
		case "show":
			c = show(name, args, stdout)
		case "kill":
			c = kill(name, stderr)
		}
		if c != 0 && code == 0 {
			code = c
		}
	}
	return code
}

// withValue reports whether a is an option whose value is the next argument.
func withValue(a string) bool {
	switch a {
	case "-p", "--property", "-t", "--type", "-s", "--signal", "-n", "--lines", "-o", "--output", "--state", "-H", "--host", "-M", "--machine", "--kill-whom", "--job-mode":
		return true
	}
	return false
}

func unitName(u string) string {
	switch u {
	case "sshd", "sshd.service":
		u = "ssh"
	}
	if !strings.Contains(u, ".") {
		u += ".service"
	}
	return u
}

func short(name string) string { return strings.TrimSuffix(name, ".service") }

func statePath(name string) string  { return filepath.Join(stateDir, name+".state") }
func loadedPath(name string) string { return filepath.Join(stateDir, name+".loaded") }

func readJSON(path string, v any) bool {
	b, err := os.ReadFile(path)
	return err == nil && json.Unmarshal(b, v) == nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is not running any more.
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func currentState(name string) state {
	var st state
	if !readJSON(statePath(name), &st) {
		return state{ActiveState: "inactive", SubState: "dead"}
	}
	if strings.HasSuffix(name, ".timer") {
		return st
	}
	pid := st.SupervisorPID
	if st.External {
		pid = st.MainPID
	}
	if st.ActiveState != "inactive" && st.ActiveState != "failed" && !alive(pid) {
		st.ActiveState, st.SubState = "failed", "failed"
		if st.External || st.ExecMainCode == 0 {
			st.ActiveState, st.SubState = "inactive", "dead"
		}
	}
	return st
}

func activeState(name string) string { return currentState(name).ActiveState }

// loaded returns the unit as systemd holds it in memory: as read at the last
// daemon-reload, or read now if it was never loaded (systemd loads a unit it
// does not know yet on demand). It warns, like systemctl, when the files on
// disk changed since.
func loaded(name string, stderr io.Writer) (*unit.Service, error) {
	var s unit.Service
	if readJSON(loadedPath(name), &s) {
		if disk, err := unit.Load("/", unit.SearchPath(), name); err == nil && disk.Digest != s.Digest {
			fmt.Fprintf(stderr, "Warning: The unit file, source configuration file or drop-ins of %s changed on disk. Run 'systemctl daemon-reload' to reload units.\n", name)
		}
		return &s, nil
	}
	disk, err := unit.Load("/", unit.SearchPath(), name)
	if err != nil {
		return nil, err
	}
	if err := writeJSON(loadedPath(name), disk); err != nil {
		return nil, fmt.Errorf("record loaded unit: %w", err)
	}
	return disk, nil
}

func daemonReload(stderr io.Writer) int {
	entries, _ := os.ReadDir(stateDir)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".loaded")
		if !ok {
			continue
		}
		s, err := unit.Load("/", unit.SearchPath(), name)
		switch {
		case errors.Is(err, unit.ErrNotFound):
			os.Remove(loadedPath(name))
		case err != nil:
			fmt.Fprintf(stderr, "Failed to reload %s: %v\n", name, err)
			os.Remove(loadedPath(name))
		default:
			if err := writeJSON(loadedPath(name), s); err != nil {
				fmt.Fprintf(stderr, "Failed to reload daemon: %v\n", err)
				return 1
			}
		}
	}
	return 0
}

// logPath is where a service's output goes on the host.
func logPath(name string) string { return "/var/log/" + short(name) + ".log" }

// startVerb starts the unit; with block, as systemctl without --no-block,
// it returns once a Type=notify service is ready (or failed).
func startVerb(name, verb string, block bool, stderr io.Writer) int {
	st := currentState(name)
	if st.External {
		fmt.Fprintf(stderr, "Failed to %s %s: the lab runs this daemon itself; use the lab's helpers.\n", verb, name)
		return 1
	}
	if st.ActiveState == "active" || st.ActiveState == "activating" {
		return 0
	}
	s, err := loaded(name, stderr)
	if errors.Is(err, unit.ErrNotFound) {
		fmt.Fprintf(stderr, "Failed to %s %s: Unit %s not found.\n", verb, name, name)
		return 5
	}
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v. Refusing.\n", name, err)
		fmt.Fprintf(stderr, "Failed to %s %s: Unit %s has a bad unit file setting.\nSee system logs and 'systemctl status %s' for details.\n", verb, name, name, name)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, name, err)
		return 1
	}
	if err := os.MkdirAll(filepath.Dir(logPath(name)), 0o755); err != nil {
		fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, name, err)
		return 1
	}
	logf, err := os.OpenFile(logPath(name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, name, err)
		return 1
	}
	defer logf.Close()
	cmd := exec.Command(self, "__supervise", name)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Its own session, so the caller's SSH session can end without taking
	// the service along; the environment is systemd's, not the caller's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, name, err)
		return 1
	}
	// Like Type=simple: done once the main process is forked.
	pid := cmd.Process.Pid
	cmd.Process.Release()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var rec state
		if readJSON(statePath(name), &rec) && rec.SupervisorPID == pid && rec.ActiveState != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Type == "oneshot" && block {
		return waitOneshot(name, pid, verb, stderr)
	}
	if s.Type != "notify" || !block {
		return 0
	}
	// A notify service's start job ends when it is ready, or has failed;
	// its own TimeoutStartSec= bounds that.
	for {
		st := currentState(name)
		switch {
		case st.SupervisorPID != pid && st.ActiveState != "activating":
			fmt.Fprintf(stderr, "Job for %s canceled.\n", name)
			return 1
		case st.ActiveState == "active":
			return 0
		case st.ActiveState == "failed" || st.ActiveState == "inactive" || st.SubState == "auto-restart":
			fmt.Fprintf(stderr, "Job for %s failed because the control process exited with error code.\nSee \"systemctl status %s\" for details.\n", name, name)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stop(name string, stderr io.Writer) int {
	st := currentState(name)
	if st.External {
		fmt.Fprintf(stderr, "Failed to stop %s: the lab runs this daemon itself; use the lab's helpers.\n", name)
		return 1
	}
	if !alive(st.SupervisorPID) {
		if st.ActiveState != "inactive" {
			st.ActiveState, st.SubState = "inactive", "dead"
			_ = writeJSON(statePath(name), st)
		}
		return 0
	}
	_ = syscall.Kill(st.SupervisorPID, syscall.SIGTERM)
	deadline := time.Now().Add(stopTimeout + 5*time.Second)
	for alive(st.SupervisorPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(st.SupervisorPID) {
		_ = syscall.Kill(-st.SupervisorPID, syscall.SIGKILL)
		_ = syscall.Kill(st.MainPID, syscall.SIGKILL)
	}
	return 0
}

func kill(name string, stderr io.Writer) int {
	st := currentState(name)
	if st.External || !alive(st.MainPID) {
		fmt.Fprintf(stderr, "Failed to kill unit %s: No main process to kill\n", name)
		return 1
	}
	_ = syscall.Kill(st.MainPID, syscall.SIGTERM)
	return 0
}

func status(name string, stdout io.Writer) int {
	st := currentState(name)
	var s unit.Service
	loadedOK := readJSON(loadedPath(name), &s)
	if !loadedOK && !st.External {
		if d, err := unit.Load("/", unit.SearchPath(), name); err == nil {
			s, loadedOK = *d, true
		}
	}
	if !loadedOK && !st.External && st.ActiveState == "inactive" {
		fmt.Fprintf(stdout, "Unit %s could not be found.\n", name)
		return 4
	}
	dot := "○"
	if st.ActiveState == "active" {
		dot = "●"
	}
	fmt.Fprintf(stdout, "%s %s - %s (lab systemctl stand-in)\n", dot, name, short(name))
	where := s.FragmentPath
	switch {
	case st.External:
		where = "run by the lab"
	case where == "":
		where = "drop-ins only"
	}
	fmt.Fprintf(stdout, "     Loaded: loaded (%s; enabled)\n", where)
	for _, d := range s.DropIns {
		fmt.Fprintf(stdout, "    Drop-In: %s\n", d)
	}
	since := ""
	if !st.Since.IsZero() {
		since = " since " + st.Since.Format("Mon 2006-01-02 15:04:05 MST") + "; " + time.Since(st.Since).Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(stdout, "     Active: %s (%s)%s\n", st.ActiveState, st.SubState, since)
	if st.ActiveState == "active" {
		fmt.Fprintf(stdout, "   Main PID: %d (%s)\n", st.MainPID, commName(st.MainPID))
	} else if st.ExecMainCode != 0 {
		fmt.Fprintf(stdout, "    Process: ExecStart exited, status=%d\n", st.ExecMainCode)
	}
	if len(st.Argv) > 0 {
		fmt.Fprintf(stdout, "    Command: %s\n", strings.Join(st.Argv, " "))
	}
	if st.ActiveState == "active" {
		return 0
	}
	return 3
}

func commName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func show(name string, args []string, stdout io.Writer) int {
	st := currentState(name)
	var s unit.Service
	loadState := "loaded"
	if !readJSON(loadedPath(name), &s) && !st.External {
		if d, err := unit.Load("/", unit.SearchPath(), name); err == nil {
			s = *d
		} else {
			loadState = "not-found"
		}
	}
	props := map[string]string{
		"Id":            name,
		"LoadState":     loadState,
		"ActiveState":   st.ActiveState,
		"SubState":      st.SubState,
		"MainPID":       strconv.Itoa(st.MainPID),
		"FragmentPath":  s.FragmentPath,
		"DropInPaths":   strings.Join(s.DropIns, " "),
		"ExecStart":     strings.Join(s.ExecStart, " ; "),
		"Restart":       s.Restart,
		"UnitFileState": map[bool]string{true: "enabled", false: ""}[loadState == "loaded"],
	}
	if !st.External && st.ActiveState != "active" && st.ActiveState != "activating" {
		props["MainPID"] = "0"
	}
	var want []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-p" || a == "--property":
			if i+1 < len(args) {
				want = append(want, strings.Split(args[i+1], ",")...)
				i++
			}
		case strings.HasPrefix(a, "--property="):
			want = append(want, strings.Split(strings.TrimPrefix(a, "--property="), ",")...)
		case strings.HasPrefix(a, "-p") && len(a) > 2:
			want = append(want, strings.Split(a[2:], ",")...)
		}
	}
	valueOnly := false
	for _, a := range args {
		if a == "--value" {
			valueOnly = true
		}
	}
	if len(want) == 0 {
		want = []string{"Id", "LoadState", "ActiveState", "SubState", "MainPID", "FragmentPath", "DropInPaths", "ExecStart", "Restart", "UnitFileState"}
	}
	for _, k := range want {
		if valueOnly {
			fmt.Fprintln(stdout, props[k])
		} else {
			fmt.Fprintf(stdout, "%s=%s\n", k, props[k])
		}
	}
	return 0
}

// supervise is the service's supervisor process: it runs the main process,
// restarts it as Restart= asks, and records state for systemctl queries.
// Like systemd, it reads the EnvironmentFile= and resolves ExecStart= anew
// at every start. A Type=notify service is activating until it sends
// READY=1 to $NOTIFY_SOCKET, and is stopped as failed when it does not
// within TimeoutStartSec=.
func supervise(name string, stderr io.Writer) int {
	self := os.Getpid()
	record := func(st state) {
		st.SupervisorPID = self
		if err := writeJSON(statePath(name), st); err != nil {
			fmt.Fprintf(stderr, "lab-systemctl: record state of %s: %v\n", name, err)
		}
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "lab-systemctl: %s: "+format+"\n", append([]any{name}, a...)...)
		record(state{ActiveState: "failed", SubState: "failed", Since: time.Now(), ExecMainCode: 1})
		return 1
	}
	var s unit.Service
	if !readJSON(loadedPath(name), &s) {
		return fail("unit is not loaded")
	}
	if name == "kubelet.service" {
		if err := ensureCgroupRoot(); err != nil {
			return fail("%v", err)
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var starts []time.Time
	var argv []string
	for {
		now := time.Now()
		starts = append(starts, now)
		if len(starts) > startLimitBurst && now.Sub(starts[len(starts)-startLimitBurst-1]) < startLimitInterval {
			return fail("start request repeated too quickly")
		}
		env, err := s.Env("/")
		if err != nil {
			return fail("%v", err)
		}
		c, err := s.Command(env)
		if err != nil {
			return fail("%v", err)
		}
		argv = append(c.Argv, labArgs(name)...)
		fmt.Fprintf(stderr, "lab-systemctl: %s: starting %s\n", name, strings.Join(argv, " "))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), env...)
		cmd.Dir = "/"
		var ready <-chan struct{}
		var notify io.Closer
		if s.Type == "notify" {
			sock, ch, err := listenNotify(name)
			if err != nil {
				return fail("%v", err)
			}
			notify, ready = sock, ch
			cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notifyPath(name))
		}
		if err := cmd.Start(); err != nil {
			closeNotify(notify)
			record(state{ActiveState: "failed", SubState: "failed", Since: now, ExecMainCode: 203, Argv: argv})
			fmt.Fprintf(stderr, "lab-systemctl: %s: failed to execute %s: %v\n", name, argv[0], err)
			if s.Restart != "always" && s.Restart != "on-failure" {
				return 1
			}
		} else {
			var timeout <-chan time.Time
			if s.Type == "oneshot" {
				// Activating until its process ends, as systemd has it.
				record(state{ActiveState: "activating", SubState: "start", MainPID: cmd.Process.Pid, Since: now, Argv: argv})
			} else if ready != nil {
				record(state{ActiveState: "activating", SubState: "start", MainPID: cmd.Process.Pid, Since: now, Argv: argv})
				if s.StartTimeout > 0 {
					timeout = time.After(s.StartTimeout)
				}
			} else if s.Type != "oneshot" {
				record(state{ActiveState: "active", SubState: "running", MainPID: cmd.Process.Pid, Since: now, Argv: argv})
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var werr error
			timedOut := false
		wait:
			for {
				select {
				case werr = <-done:
					break wait
				case <-ready:
					ready, timeout = nil, nil
					fmt.Fprintf(stderr, "lab-systemctl: %s: ready (READY=1)\n", name)
					record(state{ActiveState: "active", SubState: "running", MainPID: cmd.Process.Pid, Since: time.Now(), Argv: argv})
				case <-timeout:
					fmt.Fprintf(stderr, "lab-systemctl: %s: start operation timed out (TimeoutStartSec=%s); terminating\n", name, s.StartTimeout)
					timedOut, timeout = true, nil
					record(state{ActiveState: "deactivating", SubState: "stop-sigterm", MainPID: cmd.Process.Pid, Since: time.Now(), Argv: argv})
					terminate(cmd.Process, done)
					werr = <-done
					break wait
				case <-sigs:
					terminate(cmd.Process, done)
					closeNotify(notify)
					record(state{ActiveState: "inactive", SubState: "dead", Since: time.Now(), Argv: argv})
					return 0
				}
			}
			closeNotify(notify)
			code := exitCode(werr)
			fmt.Fprintf(stderr, "lab-systemctl: %s: main process exited, status=%d\n", name, code)
			failed := timedOut || (code != 0 && !c.IgnoreFailure)
			if !(s.Restart == "always" || (s.Restart == "on-failure" && failed)) {
				if failed {
					record(state{ActiveState: "failed", SubState: "failed", Since: time.Now(), ExecMainCode: code, Argv: argv})
					return 1
				}
				record(state{ActiveState: "inactive", SubState: "dead", Since: time.Now(), Argv: argv})
				return 0
			}
			record(state{ActiveState: "activating", SubState: "auto-restart", Since: time.Now(), ExecMainCode: code, Argv: argv})
		}
		select {
		case <-sigs:
			record(state{ActiveState: "inactive", SubState: "dead", Since: time.Now(), Argv: argv})
			return 0
		case <-time.After(s.RestartDelay):
		}
	}
}

// terminate sends the main process SIGTERM and, after stopTimeout, SIGKILL,
// and waits for it to end; what done delivered is put back for the caller.
func terminate(p *os.Process, done chan error) {
	_ = p.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-done:
	case <-time.After(stopTimeout):
		_ = p.Kill()
		err = <-done
	}
	done <- err
}

// notifyPath is the service's $NOTIFY_SOCKET, on the host's own /run.
func notifyPath(name string) string { return filepath.Join(stateDir, name+".notify") }

// listenNotify opens the service's notify socket; the channel is closed
// when a datagram says READY=1.
func listenNotify(name string) (*net.UnixConn, <-chan struct{}, error) {
	p := notifyPath(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, nil, err
	}
	_ = os.Remove(p)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		return nil, nil, fmt.Errorf("notify socket %s: %w", p, err)
	}
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					close(ready)
					return
				}
			}
		}
	}()
	return conn, ready, nil
}

func closeNotify(c io.Closer) {
	if c != nil {
		_ = c.Close()
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// labArgs are the flags the lab appends to the unit's ExecStart. Only what
// sharing one kernel between several "hosts" strictly needs:
//
//	--cgroup-root: every kubelet otherwise owns /kubepods and removes the
//	pods of the other hosts' kubelets as orphans.
func labArgs(name string) []string {
	if name != "kubelet.service" {
		return nil
	}
	return []string{"--cgroup-root=" + cgroupRoot()}
}

func cgroupRoot() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	return "/lab-" + h
}

// ensureCgroupRoot creates the kubelet's cgroup root in every hierarchy, as
// kubelet refuses a --cgroup-root that does not exist.
func ensureCgroupRoot() error {
	root := cgroupRoot()
	if isCgroup2("/sys/fs/cgroup") {
		p := filepath.Join("/sys/fs/cgroup", root)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", p, err)
		}
		ctrls, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		var enable []string
		for _, c := range strings.Fields(string(ctrls)) {
			enable = append(enable, "+"+c)
		}
		for _, f := range []string{"/sys/fs/cgroup/cgroup.subtree_control", filepath.Join(p, "cgroup.subtree_control")} {
			_ = os.WriteFile(f, []byte(strings.Join(enable, " ")), 0o644)
		}
		return nil
	}
	hierarchies, err := cgroupV1Mounts()
	if err != nil {
		return err
	}
	for _, mnt := range hierarchies {
		p := filepath.Join(mnt, root)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", p, err)
		}
		if filepath.Base(mnt) == "cpuset" || strings.Contains(mnt, "cpuset") {
			// A new cpuset cgroup is empty and accepts no task until set.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				cur, _ := os.ReadFile(filepath.Join(p, f))
				if strings.TrimSpace(string(cur)) != "" {
					continue
				}
				v, err := os.ReadFile(filepath.Join(mnt, f))
				if err != nil {
					return fmt.Errorf("read %s: %w", f, err)
				}
				if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, p, err)
				}
			}
		}
	}
	return nil
}

func isCgroup2(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && st.Type == 0x63677270
}

func cgroupV1Mounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup" {
			out = append(out, f[1])
		}
	}
	return out, nil
}

// waitOneshot waits until the oneshot service started by supervisor pid
// ended: its start succeeds when its process exited 0.
func waitOneshot(name string, pid int, verb string, stderr io.Writer) int {
	for {
		st := currentState(name)
		switch {
		case st.SupervisorPID != pid && st.ActiveState != "activating":
			fmt.Fprintf(stderr, "Job for %s canceled.\n", name)
			return 1
		case st.ActiveState == "inactive":
			return 0
		case st.ActiveState == "failed":
			fmt.Fprintf(stderr, "Job for %s failed because the control process exited with error code.\nSee \"systemctl status %s\" and \"journalctl -xeu %s\" for details.\n", name, name, name)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// timerVerb is a verb for a timer: its state is recorded, and enablement
// (which the services' never is, lab hosts never boot) with it.
func timerVerb(verb, name string, now bool, stdout, stderr io.Writer) int {
	st := currentState(name)
	set := func(active bool) int {
		if active {
			if _, err := unit.Load("/", unit.SearchPath(), name); err != nil {
				fmt.Fprintf(stderr, "Failed to %s %s: Unit %s not found.\n", verb, name, name)
				return 5
			}
			st.ActiveState, st.SubState, st.Since = "active", "waiting", time.Now()
		} else {
			st.ActiveState, st.SubState, st.Since = "inactive", "dead", time.Now()
		}
		if err := writeJSON(statePath(name), st); err != nil {
			fmt.Fprintf(stderr, "Failed to %s %s: %v\n", verb, name, err)
			return 1
		}
		return 0
	}
	enabled := func(on bool) int {
		p := filepath.Join(stateDir, name+".enabled")
		if !on {
			_ = os.Remove(p)
			return 0
		}
		if _, err := unit.Load("/", unit.SearchPath(), name); err != nil {
			fmt.Fprintf(stderr, "Failed to enable unit: Unit file %s does not exist.\n", name)
			return 1
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			fmt.Fprintf(stderr, "Failed to enable %s: %v\n", name, err)
			return 1
		}
		return 0
	}
	switch verb {
	case "start", "restart", "try-restart", "reload-or-restart":
		if verb == "try-restart" && st.ActiveState != "active" {
			return 0
		}
		return set(true)
	case "stop":
		return set(false)
	case "enable":
		if c := enabled(true); c != 0 || !now {
			return c
		}
		return set(true)
	case "disable":
		enabled(false)
		if now {
			return set(false)
		}
	case "is-enabled":
		if _, err := os.Stat(filepath.Join(stateDir, name+".enabled")); err != nil {
			fmt.Fprintln(stdout, "disabled")
			return 1
		}
		fmt.Fprintln(stdout, "enabled")
	case "is-active":
		fmt.Fprintln(stdout, st.ActiveState)
		if st.ActiveState != "active" {
			return 3
		}
	case "status", "show":
		fmt.Fprintf(stdout, "ActiveState=%s\nSubState=%s\n", st.ActiveState, st.SubState)
		if st.ActiveState != "active" {
			return 3
		}
	}
	return 0
}
