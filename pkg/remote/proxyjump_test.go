package remote

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProxyJump(t *testing.T) {
	tests := []struct {
		in   string
		want []jumpSpec
	}{
		{"", nil},
		{"none", nil},
		{"bastion", []jumpSpec{{Host: "bastion"}}},
		{"user@bastion1:2222,bastion2", []jumpSpec{{User: "user", Host: "bastion1", Port: 2222}, {Host: "bastion2"}}},
		{" a , b@c , d:1 ", []jumpSpec{{Host: "a"}, {User: "b", Host: "c"}, {Host: "d", Port: 1}}},
		{"ssh://ops@jump.example.com:22", []jumpSpec{{User: "ops", Host: "jump.example.com", Port: 22}}},
		{"[2001:db8::1]:2200", []jumpSpec{{Host: "2001:db8::1", Port: 2200}}},
		{"u@[2001:db8::1]", []jumpSpec{{User: "u", Host: "2001:db8::1"}}},
		{"2001:db8::1", []jumpSpec{{Host: "2001:db8::1"}}},
		{"first.last@corp@bastion", []jumpSpec{{User: "first.last@corp", Host: "bastion"}}},
	}
	for _, tt := range tests {
		got, err := parseProxyJump(tt.in)
		if err != nil {
			t.Errorf("parseProxyJump(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseProxyJump(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseProxyJumpErrors(t *testing.T) {
	for _, in := range []string{"a,,b", "@host", "host:0", "host:99999", "host:port", "[::1", "[::1]x", "fe80::1:22:x", "a b", ","} {
		if got, err := parseProxyJump(in); err == nil {
			t.Errorf("parseProxyJump(%q) = %v, want an error", in, got)
		}
	}
}

func TestJumpSpecString(t *testing.T) {
	for in, want := range map[string]string{
		"u@h:2":       "u@h:2",
		"h":           "h",
		"[::1]:2222":  "[::1]:2222",
		"ssh://u@h:2": "u@h:2",
	} {
		hops, err := parseProxyJump(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := hops[0].String(); got != want {
			t.Errorf("%q: String() = %q, want %q", in, got, want)
		}
	}
}
