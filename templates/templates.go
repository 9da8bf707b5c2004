// Package templates holds the text templates of files that have no Go type,
// such as systemd units.
package templates

import (
	"embed"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// Parse returns the named template, which must exist.
func Parse(name string) *template.Template {
	return template.Must(template.New(name).Option("missingkey=error").ParseFS(files, name))
}
