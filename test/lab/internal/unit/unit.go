// Package unit reads a systemd service unit and its drop-ins the way systemd
// does, for the few [Service] settings the lab's systemctl stand-in honours.
package unit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SearchPath returns systemd's unit search path for the system manager,
// highest priority first (Debian merges /lib into /usr/lib).
func SearchPath() []string {
	return []string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system"}
}

// ErrNotFound means neither a unit file nor a drop-in exists for the unit.
var ErrNotFound = errors.New("unit not found")

// Service is the effective configuration of a service after all drop-ins.
type Service struct {
	Name         string
	FragmentPath string   `json:",omitempty"`
	DropIns      []string `json:",omitempty"`
	// ExecStart holds every non-reset ExecStart= line; a simple service is
	// valid only with exactly one.
	ExecStart        []string `json:",omitempty"`
	Environment      []string `json:",omitempty"`
	EnvironmentFiles []string `json:",omitempty"`
	Type             string   `json:",omitempty"`
	Restart          string   `json:",omitempty"`
	// RestartDelay is RestartSec=.
	RestartDelay time.Duration
	// StartTimeout is TimeoutStartSec= (systemd's default 90s); zero
	// means none, as TimeoutStartSec=0 or infinity say.
	StartTimeout time.Duration
	// Digest identifies the files the unit was loaded from, so a caller can
	// tell that they changed on disk since.
	Digest string
}

// Load reads unit name (e.g. "kubelet.service") below root ("" or "/" for the
// running system) from the directories in dirs, highest priority first.
func Load(root string, dirs []string, name string) (*Service, error) {
	s := &Service{Name: name, Restart: "no", RestartDelay: 100 * time.Millisecond, StartTimeout: 90 * time.Second}
	h := sha256.New()
	var files []string
	for _, d := range dirs {
		p := filepath.Join(root, d, name)
		if _, err := os.Stat(p); err == nil {
			s.FragmentPath = filepath.Join(d, name)
			files = append(files, p)
			break
		}
	}
	// A drop-in in a higher priority directory masks one of the same name
	// below it; the survivors apply in lexical order of their file names.
	dropins := map[string]string{}
	for i := len(dirs) - 1; i >= 0; i-- {
		matches, err := filepath.Glob(filepath.Join(root, dirs[i], name+".d", "*.conf"))
		if err != nil {
			return nil, fmt.Errorf("list drop-ins of %s: %w", name, err)
		}
		for _, m := range matches {
			dropins[filepath.Base(m)] = m
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, dropins[n])
		s.DropIns = append(s.DropIns, strings.TrimPrefix(dropins[n], strings.TrimSuffix(root, "/")))
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
		if err := s.apply(b); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	s.Digest = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

func (s *Service) apply(b []byte) error {
	section := ""
	for _, line := range logicalLines(b) {
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		if section != "Service" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("invalid line %q: missing '='", line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "ExecStart":
			if value == "" {
				s.ExecStart = nil
			} else {
				s.ExecStart = append(s.ExecStart, value)
			}
		case "Environment":
			if value == "" {
				s.Environment = nil
				continue
			}
			words, err := SplitWords(value)
			if err != nil {
				return fmt.Errorf("parse Environment=%s: %w", value, err)
			}
			s.Environment = append(s.Environment, words...)
		case "EnvironmentFile":
			if value == "" {
				s.EnvironmentFiles = nil
			} else {
				s.EnvironmentFiles = append(s.EnvironmentFiles, value)
			}
		case "Type":
			s.Type = value
		case "Restart":
			s.Restart = value
		case "RestartSec":
			d, err := parseTimespan(value)
			if err != nil {
				return fmt.Errorf("parse RestartSec=%s: %w", value, err)
			}
			s.RestartDelay = d
		case "TimeoutStartSec":
			if value == "infinity" {
				s.StartTimeout = 0
				continue
			}
			d, err := parseTimespan(value)
			if err != nil {
				return fmt.Errorf("parse TimeoutStartSec=%s: %w", value, err)
			}
			s.StartTimeout = d
		}
	}
	return nil
}

// logicalLines joins backslash continuations and drops comments and blanks.
func logicalLines(b []byte) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// Command is a resolved ExecStart: argv with variables expanded.
type Command struct {
	Argv []string
	// IgnoreFailure is the "-" prefix: a non-zero exit is not a failure.
	IgnoreFailure bool
}

// Validate reports what systemd would refuse when starting the service.
func (s *Service) Validate() error {
	switch {
	case s.Type != "" && s.Type != "simple" && s.Type != "exec" && s.Type != "notify" && s.Type != "oneshot":
		return fmt.Errorf("the lab's stand-in does not support Type=%s (only simple, exec, notify, oneshot)", s.Type)
	case len(s.ExecStart) == 0:
		return errors.New("service has no ExecStart= setting")
	case len(s.ExecStart) > 1 && s.Type != "oneshot":
		return errors.New("service has more than one ExecStart= setting, which is only allowed for Type=oneshot services")
	}
	return nil
}

// Env returns the service environment: Environment= first, then the
// EnvironmentFile= files (read below root), later assignments winning.
func (s *Service) Env(root string) ([]string, error) {
	env := append([]string(nil), s.Environment...)
	for _, f := range s.EnvironmentFiles {
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("read EnvironmentFile %s: %w", f, err)
		}
		for _, line := range logicalLines(b) {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			env = append(env, strings.TrimSpace(k)+"="+v)
		}
	}
	return env, nil
}

// Command resolves the single ExecStart line with env, following systemd:
// "$VAR" as a whole word splits into words, "${VAR}" stays one word.
func (s *Service) Command(env []string) (Command, error) {
	if err := s.Validate(); err != nil {
		return Command{}, err
	}
	line := s.ExecStart[0]
	var c Command
	for len(line) > 0 && strings.ContainsRune("-@:+!", rune(line[0])) {
		if line[0] == '-' {
			c.IgnoreFailure = true
		}
		line = line[1:]
	}
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	words, err := splitWords(line)
	if err != nil {
		return Command{}, fmt.Errorf("parse ExecStart=%s: %w", s.ExecStart[0], err)
	}
	for _, w := range words {
		if w.bare && strings.HasPrefix(w.s, "$") && !strings.HasPrefix(w.s, "${") && isName(w.s[1:]) {
			c.Argv = append(c.Argv, strings.Fields(vars[w.s[1:]])...)
			continue
		}
		c.Argv = append(c.Argv, expand(w.s, vars))
	}
	if len(c.Argv) == 0 {
		return Command{}, errors.New("empty ExecStart= after expansion")
	}
	return c, nil
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') && !(i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

type word struct {
	s    string
	bare bool // no quotes at all, so "$VAR" may split
}

// SplitWords splits a value the way systemd splits ExecStart= and
// Environment=: whitespace separates, quotes group, backslash escapes.
func SplitWords(s string) ([]string, error) {
	ws, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.s
	}
	return out, nil
}

func splitWords(s string) ([]word, error) {
	var out []word
	var cur strings.Builder
	inWord, bare := false, true
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote == 0 && (ch == '"' || ch == '\''):
			quote, inWord, bare = ch, true, false
		case ch == '\\' && i+1 < len(s) && quote != '\'':
			i++
			cur.WriteByte(unescape(s[i]))
			inWord = true
		case quote == 0 && (ch == ' ' || ch == '\t' || ch == '\n'):
			if inWord {
				out = append(out, word{cur.String(), bare})
				cur.Reset()
				inWord, bare = false, true
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unbalanced quote %c", quote)
	}
	if inWord {
		out = append(out, word{cur.String(), bare})
	}
	return out, nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	}
	return c
}

// parseTimespan accepts systemd's common forms: "10", "10s", "500ms", "1min".
func parseTimespan(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	v = strings.ReplaceAll(v, "min", "m")
	v = strings.ReplaceAll(v, "sec", "s")
	return time.ParseDuration(strings.ReplaceAll(v, " ", ""))
}

// State is what the systemctl stand-in records about a unit in
// StateDir/NAME.state, for queries. The lab writes the same record for the
// daemons it runs itself, with External set.
type State struct {
	ActiveState   string
	SubState      string
	MainPID       int
	SupervisorPID int
	Since         time.Time
	ExecMainCode  int
	Argv          []string
	External      bool
}

// StateDir is where a host's unit states live (on the host's own /run).
const StateDir = "/run/lab-systemd"
