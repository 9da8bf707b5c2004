package images

import (
	"fmt"
	"strings"
)

// NormalizeDocker names a reference the way containerd names an image it
// imports from a docker-archive (`docker save`): with its registry
// (docker.io when none), library/ for docker.io's official images, and the
// tag latest when it has neither tag nor digest.
func NormalizeDocker(ref string) (string, error) {
	if strings.ContainsAny(ref, " \t\n") {
		return "", fmt.Errorf("%q is not an image reference", ref)
	}
	name, suffix := ref, ""
	if i := strings.Index(name, "@"); i >= 0 {
		name, suffix = name[:i], name[i:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, suffix = name[:i], name[i:]+suffix
	}
	if name == "" || name != strings.ToLower(name) || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", fmt.Errorf("%q is not an image reference", ref)
	}
	domain, rest := "docker.io", name
	if i := strings.Index(name, "/"); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if suffix == "" {
		suffix = ":latest"
	}
	return domain + "/" + rest + suffix, nil
}

// fullName reports whether an OCI reference name is a whole image name that
// containerd keeps as it is; a bare tag ("3.7.0-0") names no repository.
func fullName(name string) bool { return strings.ContainsAny(name, "/:@") }
