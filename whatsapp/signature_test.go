package whatsapp

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	secret := []byte("app-secret-0123456789")
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	valid := Sign(secret, body)
	hexDigest := strings.TrimPrefix(valid, "sha256=")

	tests := []struct {
		name    string
		secret  []byte
		body    []byte
		header  string
		wantErr error
	}{
		{name: "valid", secret: secret, body: body, header: valid},
		{name: "uppercase hex", secret: secret, body: body, header: "sha256=" + strings.ToUpper(hexDigest)},
		{name: "uppercase prefix", secret: secret, body: body, header: "SHA256=" + hexDigest},
		{name: "surrounding spaces", secret: secret, body: body, header: " " + valid + " "},
		{name: "empty body", secret: secret, body: nil, header: Sign(secret, nil)},
		{name: "known vector", secret: []byte("key"), body: []byte("The quick brown fox jumps over the lazy dog"),
			header: "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
		{name: "wrong secret", secret: []byte("other-secret"), body: body, header: valid, wantErr: ErrInvalidSignature},
		{name: "tampered body", secret: secret, body: append([]byte(" "), body...), header: valid, wantErr: ErrInvalidSignature},
		{name: "empty body with signature of other body", secret: secret, body: nil, header: valid, wantErr: ErrInvalidSignature},
		{name: "empty header", secret: secret, body: body, header: "", wantErr: ErrMissingSignature},
		{name: "missing prefix", secret: secret, body: body, header: hexDigest, wantErr: ErrMissingSignature},
		{name: "sha1 header", secret: secret, body: body, header: "sha1=" + hexDigest[:40], wantErr: ErrMissingSignature},
		{name: "prefix only", secret: secret, body: body, header: "sha256=", wantErr: ErrInvalidSignature},
		{name: "bad hex", secret: secret, body: body, header: "sha256=zz" + hexDigest[2:], wantErr: ErrInvalidSignature},
		{name: "odd length hex", secret: secret, body: body, header: valid[:len(valid)-1], wantErr: ErrInvalidSignature},
		{name: "truncated digest", secret: secret, body: body, header: valid[:len(valid)-2], wantErr: ErrInvalidSignature},
		{name: "extra bytes", secret: secret, body: body, header: valid + "00", wantErr: ErrInvalidSignature},
		{name: "empty secret", secret: nil, body: body, header: Sign(nil, body), wantErr: ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.secret, tt.body, tt.header)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("VerifySignature(%q) = %v; want %v", tt.header, err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), hexDigest) || strings.Contains(err.Error(), string(secret))) {
				t.Errorf("err = %q; leaks the header or secret", err)
			}
		})
	}
}

func TestSign(t *testing.T) {
	got := Sign([]byte("key"), []byte("The quick brown fox jumps over the lazy dog"))
	want := "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
	if got != want {
		t.Errorf("Sign() = %q; want %q", got, want)
	}
}

func TestVerifyChallenge(t *testing.T) {
	const token = "my-verify-token"
	tests := []struct {
		name   string
		query  string
		token  string
		want   string
		wantOK bool
	}{
		{name: "valid", query: "hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=1158201444", token: token, want: "1158201444", wantOK: true},
		{name: "challenge echoed verbatim", query: "hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=a%20b%2Bc%3C", token: token, want: "a b+c<", wantOK: true},
		{name: "wrong token", query: "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1", token: token},
		{name: "token prefix", query: "hub.mode=subscribe&hub.verify_token=my-verify&hub.challenge=1", token: token},
		{name: "token case differs", query: "hub.mode=subscribe&hub.verify_token=MY-VERIFY-TOKEN&hub.challenge=1", token: token},
		{name: "missing token", query: "hub.mode=subscribe&hub.challenge=1", token: token},
		{name: "wrong mode", query: "hub.mode=unsubscribe&hub.verify_token=my-verify-token&hub.challenge=1", token: token},
		{name: "missing mode", query: "hub.verify_token=my-verify-token&hub.challenge=1", token: token},
		{name: "missing challenge", query: "hub.mode=subscribe&hub.verify_token=my-verify-token", token: token},
		{name: "empty configured token", query: "hub.mode=subscribe&hub.verify_token=&hub.challenge=1", token: ""},
		{name: "empty query", query: "", token: token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := VerifyChallenge(q, tt.token)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("VerifyChallenge(%q) = %q, %v; want %q, %v", tt.query, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	secret := []byte("app-secret-0123456789")
	body := []byte(connectPayload)
	header := Sign(secret, body)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := VerifySignature(secret, body, header); err != nil {
			b.Fatal(err)
		}
	}
}
