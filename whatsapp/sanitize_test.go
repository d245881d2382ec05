package whatsapp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSnippet(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		secret string
		want   string
	}{
		{name: "plain text", give: "Service Unavailable", want: "Service Unavailable"},
		{name: "html", give: "<html>\n<h1>502 Bad Gateway</h1>\n<hr><center>nginx</center></html>", want: "502 Bad Gateway nginx"},
		{name: "control characters", give: "a\x00b\r\nc\x1b[31md", want: "a b c [31md"},
		{name: "invalid utf-8 dropped", give: "ok\xff\xfe!", want: "ok!"},
		{name: "secret redacted", give: "token=" + testToken + " rejected", secret: testToken, want: "token=[REDACTED] rejected"},
		{name: "secret redacted in html", give: "<p>" + testToken + "</p>", secret: testToken, want: "[REDACTED]"},
		{name: "short secret not redacted", give: "abc", secret: "abc", want: "abc"},
		{name: "empty", give: "", want: ""},
		{name: "text starting with less-than is not html", give: "a < b", want: "a < b"},
		{name: "long", give: strings.Repeat("é", 300), want: strings.Repeat("é", 98) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := snippet([]byte(tt.give), tt.secret)
			if got != tt.want {
				t.Errorf("snippet(%q) = %q; want %q", tt.give, got, tt.want)
			}
			if len(got) > maxSnippetLen || !utf8.ValidString(got) {
				t.Errorf("snippet(%q) = %q: %d bytes, valid UTF-8 %v; want at most %d valid bytes",
					tt.give, got, len(got), utf8.ValidString(got), maxSnippetLen)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		give string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven chars", 10, "eleven ..."},
		{"ééééé", 6, "é..."},
		{"abcd", 3, "abc"},
		{"abc", 2, "ab"},
		{"éé", 3, "é"},
		{"abc", 0, ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.give, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q; want %q", tt.give, tt.n, got, tt.want)
		}
	}
}
