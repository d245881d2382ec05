package whatsappcalls

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeSyntaxBlock checks that the README's Caddyfile syntax block is
// the one in UnmarshalCaddyfile's doc comment, as the style guide asks.
func TestReadmeSyntaxBlock(t *testing.T) {
	src, err := os.ReadFile("caddyfile.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(line, "//\twhatsapp_calls "):
			in = true
		case in && !strings.HasPrefix(line, "//\t"):
			in = false
		}
		if in {
			doc = append(doc, strings.TrimPrefix(line, "//\t"))
		}
	}
	m := regexp.MustCompile("(?s)## Caddyfile\n\n```\n(whatsapp_calls .*?)\n```").FindSubmatch(readme)
	if len(doc) == 0 || m == nil {
		t.Fatalf("syntax block not found (doc comment: %d lines, README: %v)", len(doc), m != nil)
	}
	if got, want := string(m[1]), strings.Join(doc, "\n"); got != want {
		t.Errorf("README syntax block differs from UnmarshalCaddyfile's doc comment:\nREADME:\n%s\n\ndoc comment:\n%s", got, want)
	}
}
