package shell

import (
	"os/exec"
	"testing"
)

func TestQuoteRoundTrip(t *testing.T) {
	words := []string{
		"", "plain", "two words", "it's", `"double"`, `back\slash`, "$HOME `id` $(id)",
		"semi;colon && rm -rf /", "new\nline", "'", "''", "*?[]", "tab\there", "ünïcode",
	}
	for _, w := range words {
		// printf %s prints its argument exactly as the shell parsed it.
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(w)).Output()
		if err != nil {
			t.Fatalf("sh -c with %q: %v", w, err)
		}
		if string(out) != w {
			t.Errorf("Quote(%q) parsed back as %q", w, out)
		}
	}
}
