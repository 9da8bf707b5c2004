package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with an inventory, tied to the field that holds it.
type Problem struct {
	// Field is the path of the field, e.g. spec.hosts[2].address.
	Field string
	// Line is the line of the field in the file, 0 when unknown.
	Line int
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string {
	switch {
	case p.Field == "" && p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	case p.Field == "":
		return p.Message
	case p.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", p.Field, p.Line, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Field, p.Message)
}

// InvalidError lists every problem found in an inventory.
type InvalidError struct {
	Source   string
	Problems []Problem
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	if len(e.Problems) == 1 {
		fmt.Fprintf(&b, "%s is invalid: %s", e.Source, e.Problems[0])
		return b.String()
	}
	fmt.Fprintf(&b, "%s is invalid (%d problems):", e.Source, len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  - %s", p)
	}
	return b.String()
}

// problems collects problems and knows the line of every field it has seen.
type problems struct {
	lines map[string]int
	list  []Problem
}

func (ps *problems) add(field, format string, args ...any) {
	ps.list = append(ps.list, Problem{Field: field, Line: ps.lineOf(field), Message: fmt.Sprintf(format, args...)})
}

// lineOf is the line of a field, or of its closest ancestor when the field
// itself is absent from the file (a required field left out).
func (ps *problems) lineOf(field string) int {
	for f := field; f != ""; f = parent(f) {
		if line, ok := ps.lines[f]; ok {
			return line
		}
	}
	return 0
}

func parent(field string) string {
	i := strings.LastIndexAny(field, ".[")
	if i < 0 {
		return ""
	}
	return field[:i]
}

func (ps *problems) addAt(field string, line int, format string, args ...any) {
	ps.list = append(ps.list, Problem{Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
}

// dropRepeats removes problems found after the first n on fields that already
// have one, or inside them: a field pruned for its shape is not also "required".
func (ps *problems) dropRepeats(n int) {
	seen := map[string]bool{}
	for _, p := range ps.list[:n] {
		seen[p.Field] = true
	}
	kept := ps.list[:n]
	for _, p := range ps.list[n:] {
		repeat := false
		for f := p.Field; f != ""; f = parent(f) {
			repeat = repeat || seen[f]
		}
		if !repeat {
			kept = append(kept, p)
		}
	}
	ps.list = kept
}

// sorted orders problems by line, then field, so messages read top to bottom.
func (ps *problems) sorted() []Problem {
	out := append([]Problem(nil), ps.list...)
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Line, out[j].Line
		if li == 0 {
			li = 1 << 30
		}
		if lj == 0 {
			lj = 1 << 30
		}
		if li != lj {
			return li < lj
		}
		return out[i].Field < out[j].Field
	})
	return out
}

// Warning is a valid but risky choice the user should know about.
type Warning struct {
	Field   string
	Message string
}

func (w Warning) String() string {
	return fmt.Sprintf("%s: %s", w.Field, w.Message)
}
