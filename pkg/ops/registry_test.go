package ops

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"
)

// Every kind of operation declared in this package has a handler: a kind
// without its registry line would fail only when a plan holds it.
func TestEveryKindHasAHandler(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	kinds := 0
	for _, f := range files {
		if filepath.Ext(f) != ".go" || len(f) > 8 && f[len(f)-8:] == "_test.go" {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
					continue
				}
				for _, name := range vs.Names {
					kinds++
					lit := vs.Values[0].(*ast.BasicLit)
					kind := Kind(lit.Value[1 : len(lit.Value)-1])
					if _, ok := registry[kind]; !ok {
						t.Errorf("%s (%s, in %s) has no handler in the registry", name.Name, kind, f)
					}
				}
			}
		}
	}
	if kinds != len(registry) {
		t.Errorf("%d kinds declared, %d handlers registered", kinds, len(registry))
	}
}
