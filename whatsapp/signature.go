package whatsapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// signaturePrefix starts every X-Hub-Signature-256 header value.
const signaturePrefix = "sha256="

// VerifySignature checks the X-Hub-Signature-256 header value of a webhook
// delivery against the raw body bytes: the header must be
// "sha256=<hex HMAC-SHA256(appSecret, body)>". It must run before the body is
// parsed. The comparison is constant-time (hmac.Equal); uppercase hex and a
// prefix in any case are accepted.
//
// It returns ErrMissingSignature when header is empty or lacks the "sha256="
// prefix, and ErrInvalidSignature when the hex is malformed, the signature
// does not match, or appSecret is empty (which would let anyone sign). The
// returned errors never contain the header value or the secret.
//
// See https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads.
func VerifySignature(appSecret, body []byte, header string) error {
	header = strings.TrimSpace(header)
	if len(header) < len(signaturePrefix) || !strings.EqualFold(header[:len(signaturePrefix)], signaturePrefix) {
		return ErrMissingSignature
	}
	if len(appSecret) == 0 {
		return fmt.Errorf("%w: no app secret configured", ErrInvalidSignature)
	}
	got, err := hex.DecodeString(header[len(signaturePrefix):])
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: malformed hex digest", ErrInvalidSignature)
	}
	if !hmac.Equal(got, mac(appSecret, body)) {
		return ErrInvalidSignature
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 header value Meta would send for body:
// "sha256=" followed by the lowercase hex HMAC-SHA256 of body keyed with
// appSecret. Simulators and tests use it to produce signed deliveries.
func Sign(appSecret, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(appSecret, body))
}

// mac computes HMAC-SHA256(key, body).
func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}

// VerifyChallenge answers Meta's subscription check, a GET on the callback
// URL with the query
// "hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<challenge>".
// It reports ok when the mode is "subscribe", verifyToken is not empty, the
// token matches it (in constant time) and a challenge is present; challenge
// is then hub.challenge verbatim, to be echoed as the 200 text/plain body.
// Anything else should be answered with 403.
func VerifyChallenge(q url.Values, verifyToken string) (challenge string, ok bool) {
	if verifyToken == "" || q.Get("hub.mode") != "subscribe" {
		return "", false
	}
	// Comparing digests keeps the comparison constant-time in the token
	// length too.
	want := sha256.Sum256([]byte(verifyToken))
	got := sha256.Sum256([]byte(q.Get("hub.verify_token")))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return "", false
	}
	challenge = q.Get("hub.challenge")
	if challenge == "" {
		return "", false
	}
	return challenge, true
}
