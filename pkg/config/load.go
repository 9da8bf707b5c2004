package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// MaxInventorySize bounds an inventory file: a real one is a few KB.
const MaxInventorySize = 1 << 20

// Load reads, defaults and validates the inventory at path. Relative paths in
// it resolve against its directory. Warnings are returned with a valid cluster.
func Load(path string) (*Cluster, []Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read inventory: %w", err)
	}
	defer f.Close()
	// One byte more than allowed is enough to refuse the file.
	data, err := io.ReadAll(io.LimitReader(f, MaxInventorySize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read inventory: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve inventory path %s: %w", path, err)
	}
	return Parse(data, path, filepath.Dir(abs))
}

// Parse decodes an inventory strictly, fills defaults and validates it. source
// names the input in messages; dir is where relative paths resolve.
func Parse(data []byte, source, dir string) (*Cluster, []Warning, error) {
	ps := &problems{lines: map[string]int{}}
	if len(data) > MaxInventorySize {
		return nil, nil, &InvalidError{Source: source, Problems: []Problem{{Message: "the file is larger than 1 MiB; an inventory is a few KB: check that -f names the inventory"}}}
	}
	root, err := parseNode(data)
	if err != nil {
		return nil, nil, &InvalidError{Source: source, Problems: []Problem{yamlSyntaxProblem(err)}}
	}
	if p := aliasProblem(root); p != nil {
		return nil, nil, &InvalidError{Source: source, Problems: []Problem{*p}}
	}
	if !checkShape(root, reflect.TypeOf(Cluster{}), "", ps) {
		return nil, nil, &InvalidError{Source: source, Problems: ps.sorted()}
	}
	shapeProblems := len(ps.list)
	// Decode what fits, so that the other fields are validated too.
	pruned, err := yamlv3.Marshal(root)
	if err != nil {
		return nil, nil, fmt.Errorf("re-encode %s: %w", source, err)
	}
	var c Cluster
	if err := yaml.UnmarshalStrict(pruned, &c); err != nil {
		// checkShape lets through only what decodes; say so plainly if it did not.
		return nil, nil, &InvalidError{Source: source, Problems: append(ps.sorted(), Problem{Message: err.Error()})}
	}
	c.Dir, c.source, c.lines = dir, source, ps.lines
	SetDefaults(&c)
	warnings := validate(&c, ps)
	ps.dropRepeats(shapeProblems)
	if len(ps.list) > 0 {
		return nil, nil, &InvalidError{Source: source, Problems: ps.sorted()}
	}
	return &c, warnings, nil
}

func parseNode(data []byte) (*yamlv3.Node, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var doc yamlv3.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty; start from examples/cluster.yaml")
		}
		return nil, err
	}
	var extra yamlv3.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("line %d: more than one YAML document; put one Cluster in the file", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("the file holds no YAML document")
	}
	return doc.Content[0], nil
}

// aliasProblem refuses anchors and aliases: expanded, a few KB of them can
// stand for billions of values (a "billion laughs"), and an inventory has
// no need for them. The walk follows the tree as parsed, never an alias.
func aliasProblem(root *yamlv3.Node) *Problem {
	var first *yamlv3.Node
	count := 0
	var walk func(n *yamlv3.Node)
	walk = func(n *yamlv3.Node) {
		if n.Kind == yamlv3.AliasNode || n.Anchor != "" {
			if first == nil {
				first = n
			}
			count++
		}
		if n.Kind == yamlv3.AliasNode {
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	if first == nil {
		return nil
	}
	what := "anchor &" + first.Anchor
	if first.Kind == yamlv3.AliasNode {
		what = "alias *" + first.Value
	}
	return &Problem{Line: first.Line, Message: fmt.Sprintf(
		"YAML %s: anchors and aliases are not supported (%d in the file); write each value out in full", what, count)}
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func yamlSyntaxProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{Message: "YAML syntax: " + msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Message = "YAML syntax: " + strings.TrimPrefix(strings.TrimPrefix(msg, m[0]), ": ")
	}
	return p
}

// checkShape walks the YAML tree against the Go type it must decode into and
// records every unknown field, duplicate key and wrong kind of value with its
// path and line, so the user sees all of them at once. It reports whether the
// node fits; nodes that do not are pruned so the rest can still be decoded.
func checkShape(n *yamlv3.Node, t reflect.Type, path string, ps *problems) bool {
	if path != "" {
		ps.lines[path] = n.Line
	}
	if isNull(n) {
		return true
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yamlv3.MappingNode {
			ps.addAt(orRoot(path), n.Line, "expected a mapping, got %s", describe(n))
			return false
		}
		var fields map[string]reflect.Type
		if t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]int{}
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				ps.addAt(child, k.Line, "duplicate key (first set on line %d); keep one", line)
				continue
			}
			seen[k.Value] = k.Line
			var ft reflect.Type
			if fields != nil {
				var ok bool
				if ft, ok = fields[k.Value]; !ok {
					ps.addAt(child, k.Line, "unknown field%s", suggest(k.Value, fields))
					continue
				}
			} else {
				ft = t.Elem()
			}
			if checkShape(v, ft, child, ps) {
				kept = append(kept, k, v)
			}
		}
		n.Content = kept
	case reflect.Slice:
		if n.Kind != yamlv3.SequenceNode {
			ps.addAt(orRoot(path), n.Line, "expected a list, got %s", describe(n))
			return false
		}
		for i, item := range n.Content {
			if !checkShape(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps) {
				// A null keeps the indices of the later items right.
				n.Content[i] = &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!null", Value: "null", Line: item.Line}
			}
		}
	case reflect.String:
		if n.Kind != yamlv3.ScalarNode {
			ps.addAt(path, n.Line, "expected a string, got %s", describe(n))
			return false
		}
		if n.Tag != "!!str" {
			ps.addAt(path, n.Line, "expected a string, got %s; put it in quotes", describe(n))
			return false
		}
	case reflect.Int:
		if n.Kind != yamlv3.ScalarNode || n.Tag != "!!int" {
			ps.addAt(path, n.Line, "expected a whole number, got %s", describe(n))
			return false
		}
	case reflect.Bool:
		if n.Kind != yamlv3.ScalarNode || n.Tag != "!!bool" {
			ps.addAt(path, n.Line, "expected true or false, got %s", describe(n))
			return false
		}
	}
	return true
}

func isNull(n *yamlv3.Node) bool {
	return n.Kind == yamlv3.ScalarNode && n.Tag == "!!null"
}

func describe(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.MappingNode:
		return "a mapping"
	case yamlv3.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func orRoot(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps the JSON names of a struct's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// suggest proposes the known field closest to a misspelt one.
func suggest(got string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for name := range fields {
		if d := editDistance(strings.ToLower(got), strings.ToLower(name)); d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
