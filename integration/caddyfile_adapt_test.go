// Package integration holds the plugin's golden Caddyfile adapt tests and
// its full-server tests.
package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/whatsappcalls/caddy-whatsapp-calls"
)

// TestCaddyfileAdaptToJSON adapts every caddyfile_adapt/*.caddyfiletest and
// compares the result with the JSON below its "----------" line, or, when
// that part is not JSON, checks that adapting fails with that text. It is
// Caddy core's runner, trimmed of its Windows path handling.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	t.Setenv("WHATSAPP_APP_SECRET", "not-used-by-adapt")
	files, err := filepath.Glob("caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	winNewlines := regexp.MustCompile(`\r?\n`)

	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("read %s: %v", file, err)
			}
			parts := strings.Split(string(data), "----------")
			if len(parts) != 2 {
				t.Fatalf("%s: want one ---------- separator, found %d parts", file, len(parts))
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			expected = winNewlines.ReplaceAllString(expected, "\n")

			if len(expected) > 0 && expected[0] == '{' {
				if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
					t.Errorf("failed to adapt %s", file)
				}
				return
			}

			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("adapt %s: want error containing %q, got none", file, expected)
			}
			if got := winNewlines.ReplaceAllString(err.Error(), "\n"); !strings.Contains(got, expected) {
				t.Errorf("adapt %s: error = %q; want it to contain %q", file, got, expected)
			}
		})
	}
}
