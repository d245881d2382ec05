package whatsapp

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits for text taken from remote responses into errors.
const (
	maxSnippetLen = 200 // a non-JSON body in APIError.Message
	maxMessageLen = 512 // Graph's error message
	maxFieldLen   = 128 // Graph's error type and trace id
)

// minRedactLen is the shortest secret that is redacted from remote text;
// shorter strings would match innocent text (real access tokens are long).
const minRedactLen = 8

// redacted replaces a secret found in remote text.
const redacted = "[REDACTED]"

// snippet returns a short, printable, single-line excerpt of a response
// body for an error message, with secret redacted and HTML tags removed.
func snippet(body []byte, secret string) string {
	s := redact(strings.ToValidUTF8(string(body), ""), secret)
	if strings.HasPrefix(strings.TrimSpace(s), "<") {
		s = stripTags(s)
	}
	return truncate(oneLine(s), maxSnippetLen)
}

// clean makes a remote string safe for an error message: one line, secret
// redacted, at most n bytes.
func clean(s, secret string, n int) string {
	return truncate(oneLine(redact(s, secret)), n)
}

// redact replaces every occurrence of secret in s.
func redact(s, secret string) string {
	if len(secret) < minRedactLen {
		return s
	}
	return strings.ReplaceAll(s, secret, redacted)
}

// stripTags removes everything between '<' and '>' (markup), replacing
// each tag with a space.
func stripTags(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inTag := false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
		case r == '>' && inTag:
			inTag = false
			b.WriteByte(' ')
		case !inTag:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// oneLine drops invalid UTF-8, turns control and other non-printable
// characters into spaces, collapses runs of spaces and trims the result.
func oneLine(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range strings.ToValidUTF8(s, "") {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ellipsis marks a truncated string.
const ellipsis = "..."

// truncate cuts s to at most n bytes on a rune boundary, ending a cut
// string with "..." when n leaves room for it.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= len(ellipsis) {
		return s[:runeStart(s, max(n, 0))]
	}
	return s[:runeStart(s, n-len(ellipsis))] + ellipsis
}

// runeStart returns the largest rune boundary of s at or before i, where
// i < len(s).
func runeStart(s string, i int) int {
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
