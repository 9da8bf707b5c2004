// Package typedyaml writes typed API objects as short YAML: only the fields
// that were set, the way a person writes a configuration file.
package typedyaml

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"sigs.k8s.io/yaml"
)

// Marshal serializes obj, a pointer to a struct, leaving out every field that
// holds its type's zero value (Go structs print "0s" and "{}" for fields nobody
// set, which would read as deliberate choices), then merges extra on top.
func Marshal(obj any, extra map[string]any) ([]byte, error) {
	m, err := toMap(obj)
	if err != nil {
		return nil, err
	}
	zero, err := zeroOf(reflect.TypeOf(obj).Elem())
	if err != nil {
		return nil, err
	}
	pruneZero(m, zero)
	merge(m, extra)
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %T to YAML: %w", obj, err)
	}
	return b, nil
}

// zeros holds, by type, the zero object as a map: the same for every value
// of the type, and read only.
var zeros sync.Map

func zeroOf(t reflect.Type) (map[string]any, error) {
	if z, ok := zeros.Load(t); ok {
		return z.(map[string]any), nil
	}
	z, err := toMap(reflect.New(t).Interface())
	if err != nil {
		return nil, err
	}
	zeros.Store(t, z)
	return z, nil
}

func toMap(obj any) (map[string]any, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode %T: %w", obj, err)
	}
	return m, nil
}

// pruneZero removes from m the values equal to those of the zero object, and
// the mappings left empty.
func pruneZero(m, zero map[string]any) {
	for k, v := range m {
		z, inZero := zero[k]
		switch v := v.(type) {
		case map[string]any:
			zm, _ := z.(map[string]any)
			pruneZero(v, zm)
			if len(v) == 0 {
				delete(m, k)
			}
		case nil:
			delete(m, k)
		default:
			if inZero && reflect.DeepEqual(v, z) {
				delete(m, k)
			}
		}
	}
}

// merge sets src's values in dst, recursing into mappings both have.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}
