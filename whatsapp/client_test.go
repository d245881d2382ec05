package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testToken  = "EAAGtestACCESSTOKEN0123456789secret"
	testPhone  = "106540352242922"
	testCallID = "wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTdF"
	testSDP    = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"
)

// capturedRequest is what the fake Graph server saw.
type capturedRequest struct {
	method, path, auth, contentType, body string
}

// graphReply is the fake Graph server's answer.
type graphReply struct {
	status int
	body   string
	delay  time.Duration // before the headers; cut short by the request context
}

// newGraph starts a fake Graph API that answers every request with reply
// and hands the request it saw to the returned channel.
func newGraph(t *testing.T, reply graphReply) (*Client, <-chan capturedRequest, *atomic.Int32) {
	t.Helper()
	seen := make(chan capturedRequest, 64)
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		body, _ := io.ReadAll(r.Body)
		seen <- capturedRequest{
			method:      r.Method,
			path:        r.URL.EscapedPath(),
			auth:        r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"),
			body:        string(body),
		}
		if reply.delay > 0 {
			select {
			case <-time.After(reply.delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(reply.status)
		io.WriteString(w, reply.body)
	}))
	t.Cleanup(srv.Close)
	c := &Client{BaseURL: srv.URL, AccessToken: testToken, HTTPClient: srv.Client()}
	return c, seen, &count
}

func TestClientActions(t *testing.T) {
	const success = `{"success":true}`
	tests := []struct {
		name     string
		reply    string
		version  string
		phone    string
		call     func(context.Context, *Client, string) (string, error)
		wantPath string
		wantBody string
		wantID   string
	}{
		{
			name:  "pre_accept",
			reply: success,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.PreAccept(ctx, phone, testCallID, testSDP)
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"pre_accept","session":{"sdp_type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}}`,
		},
		{
			name:  "accept with callback data",
			reply: success,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.Accept(ctx, phone, testCallID, testSDP, "ticket-42")
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"accept","session":{"sdp_type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"},"biz_opaque_callback_data":"ticket-42"}`,
		},
		{
			name:  "accept without callback data",
			reply: success,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.Accept(ctx, phone, testCallID, testSDP, "")
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"accept","session":{"sdp_type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}}`,
		},
		{
			name:  "reject",
			reply: success,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.Reject(ctx, phone, testCallID)
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"reject"}`,
		},
		{
			name:  "terminate",
			reply: success,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.Terminate(ctx, phone, testCallID)
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"terminate"}`,
		},
		{
			name:  "connect",
			reply: `{"messaging_product":"whatsapp","calls":[{"id":"wacid.NEW"}]}`,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return c.Connect(ctx, phone, ConnectRequest{To: "15551234567", OfferSDP: testSDP})
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","to":"15551234567","action":"connect","session":{"sdp_type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}}`,
			wantID:   "wacid.NEW",
		},
		{
			name:  "connect to a bsuid with callback data",
			reply: `{"messaging_product":"whatsapp","calls":[{"id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgASGCA"}]}`,
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return c.Connect(ctx, phone, ConnectRequest{Recipient: "US.13491208655302741918", OfferSDP: testSDP, BizOpaqueCallbackData: "reminder-7"})
			},
			wantPath: "/v23.0/" + testPhone + "/calls",
			wantBody: `{"messaging_product":"whatsapp","recipient":"US.13491208655302741918","action":"connect","session":{"sdp_type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"},"biz_opaque_callback_data":"reminder-7"}`,
			wantID:   "wacid.HBgLMTU1NTEyMzQ1NjcVAgASGCA",
		},
		{
			name:    "custom version and escaped phone number id",
			reply:   success,
			version: "v24.0",
			phone:   "12/34?x",
			call: func(ctx context.Context, c *Client, phone string) (string, error) {
				return "", c.Terminate(ctx, phone, testCallID)
			},
			wantPath: "/v24.0/12%2F34%3Fx/calls",
			wantBody: `{"messaging_product":"whatsapp","call_id":"` + testCallID + `","action":"terminate"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen, _ := newGraph(t, graphReply{status: http.StatusOK, body: tt.reply})
			c.Version = tt.version
			phone := tt.phone
			if phone == "" {
				phone = testPhone
			}
			id, err := tt.call(context.Background(), c, phone)
			if err != nil {
				t.Fatalf("%s: unexpected error: %v", tt.name, err)
			}
			if id != tt.wantID {
				t.Errorf("call id = %q; want %q", id, tt.wantID)
			}
			got := <-seen
			want := capturedRequest{
				method:      http.MethodPost,
				path:        tt.wantPath,
				auth:        "Bearer " + testToken,
				contentType: "application/json",
				body:        tt.wantBody,
			}
			if got != want {
				t.Errorf("request = %+v\nwant      %+v", got, want)
			}
		})
	}
}

func TestClientBaseURLWithPathPrefix(t *testing.T) {
	c, seen, _ := newGraph(t, graphReply{status: http.StatusOK, body: `{"success":true}`})
	c.BaseURL += "/graph/"
	if err := c.Reject(context.Background(), testPhone, testCallID); err != nil {
		t.Fatalf("Reject() = %v; want nil", err)
	}
	if got, want := (<-seen).path, "/graph/v23.0/"+testPhone+"/calls"; got != want {
		t.Errorf("path = %q; want %q", got, want)
	}
}

func TestClientErrors(t *testing.T) {
	bigJSON := `{"success":true,"pad":"` + strings.Repeat("x", MaxResponseSize) + `"}`
	bigHTML := "<html><body>" + strings.Repeat("overloaded ", MaxResponseSize) + "</body></html>"
	tests := []struct {
		name       string
		reply      graphReply
		connect    bool
		wantIs     error     // errors.Is target, if any
		wantAPI    *APIError // errors.As result, if any
		wantSubstr string    // in err.Error()
	}{
		{
			name: "graph error json",
			reply: graphReply{status: http.StatusBadRequest, body: `{"error":{"message":"(#138006) Call not found","type":"OAuthException",` +
				`"code":138006,"error_subcode":2494010,"fbtrace_id":"AbCdEf123","is_transient":false}}`},
			wantAPI: &APIError{StatusCode: 400, Message: "(#138006) Call not found", Type: "OAuthException",
				Code: 138006, Subcode: 2494010, FBTraceID: "AbCdEf123"},
			wantSubstr: "pre_accept call " + testCallID + ": graph api error (http 400): (#138006) Call not found " +
				"[type=OAuthException code=138006 subcode=2494010 fbtrace_id=AbCdEf123]",
		},
		{
			name: "token echoed in graph message is redacted",
			reply: graphReply{status: http.StatusUnauthorized, body: `{"error":{"message":"Malformed access token ` + testToken +
				`\n","type":"OAuthException","code":190,"fbtrace_id":"T1"}}`},
			wantAPI: &APIError{StatusCode: 401, Message: "Malformed access token [REDACTED]", Type: "OAuthException",
				Code: 190, FBTraceID: "T1"},
		},
		{
			name:       "non-json 502",
			reply:      graphReply{status: http.StatusBadGateway, body: "<html><head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body></html>"},
			wantAPI:    &APIError{StatusCode: 502, Message: "502 Bad Gateway 502 Bad Gateway"},
			wantSubstr: "graph api error (http 502): 502 Bad Gateway",
		},
		{
			name:    "empty 503",
			reply:   graphReply{status: http.StatusServiceUnavailable},
			wantAPI: &APIError{StatusCode: 503},
		},
		{
			name:    "oversized error body is cut to a snippet",
			reply:   graphReply{status: http.StatusInternalServerError, body: bigHTML},
			wantAPI: &APIError{StatusCode: 500, Message: strings.Repeat("overloaded ", 17) + "overloaded..."},
		},
		{
			name:       "success false",
			reply:      graphReply{status: http.StatusOK, body: `{"success":false}`},
			wantIs:     ErrNotSuccess,
			wantSubstr: "pre_accept call " + testCallID + ": graph api did not report success (http 200)",
		},
		{
			name:   "empty object",
			reply:  graphReply{status: http.StatusOK, body: `{}`},
			wantIs: ErrNotSuccess,
		},
		{
			name:       "non-json 200",
			reply:      graphReply{status: http.StatusOK, body: "OK"},
			wantIs:     ErrNotSuccess,
			wantSubstr: `unexpected body (http 200): "OK"`,
		},
		{
			name:    "error object with 200",
			reply:   graphReply{status: http.StatusOK, body: `{"error":{"message":"Unsupported post request","code":100}}`},
			wantAPI: &APIError{StatusCode: 200, Message: "Unsupported post request", Code: 100},
		},
		{
			name:       "oversized success body",
			reply:      graphReply{status: http.StatusOK, body: bigJSON},
			wantIs:     ErrResponseTooLarge,
			wantSubstr: "more than 65536 bytes",
		},
		{
			name:       "connect without call id",
			reply:      graphReply{status: http.StatusOK, body: `{"messaging_product":"whatsapp","calls":[]}`},
			connect:    true,
			wantIs:     ErrNotSuccess,
			wantSubstr: "connect call: graph api did not report success: no call id in response (http 200)",
		},
		{
			name:    "connect graph error",
			reply:   graphReply{status: http.StatusForbidden, body: `{"error":{"message":"No call permission","code":138006}}`},
			connect: true,
			wantAPI: &APIError{StatusCode: 403, Message: "No call permission", Code: 138006},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := newGraph(t, tt.reply)
			var err error
			if tt.connect {
				_, err = c.Connect(context.Background(), testPhone, ConnectRequest{To: "15551234567", OfferSDP: testSDP})
			} else {
				err = c.PreAccept(context.Background(), testPhone, testCallID, testSDP)
			}
			if err == nil {
				t.Fatal("err = nil; want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false; want true", err, tt.wantIs)
			}
			var apiErr *APIError
			if got := errors.As(err, &apiErr); got != (tt.wantAPI != nil) {
				t.Fatalf("errors.As(%v, *APIError) = %v; want %v", err, got, tt.wantAPI != nil)
			}
			if tt.wantAPI != nil && *apiErr != *tt.wantAPI {
				t.Errorf("APIError = %#v\nwant       %#v", *apiErr, *tt.wantAPI)
			}
			if !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Errorf("err = %q; want it to contain %q", err, tt.wantSubstr)
			}
			if strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), "IN IP4") {
				t.Errorf("err = %q; leaks the token or SDP", err)
			}
		})
	}
}

func TestClientMissingParameters(t *testing.T) {
	tests := []struct {
		name       string
		token      string
		call       func(context.Context, *Client) error
		wantSubstr string
	}{
		{
			name:       "no access token",
			call:       func(ctx context.Context, c *Client) error { return c.Reject(ctx, testPhone, testCallID) },
			wantSubstr: "reject call " + testCallID + ": missing required parameter: access token",
		},
		{
			name:       "no phone number id",
			token:      testToken,
			call:       func(ctx context.Context, c *Client) error { return c.Terminate(ctx, "", testCallID) },
			wantSubstr: "terminate call " + testCallID + ": missing required parameter: phone number id",
		},
		{
			name:       "no call id",
			token:      testToken,
			call:       func(ctx context.Context, c *Client) error { return c.Reject(ctx, testPhone, "") },
			wantSubstr: "reject call: missing required parameter: call id",
		},
		{
			name:       "no answer sdp for pre_accept",
			token:      testToken,
			call:       func(ctx context.Context, c *Client) error { return c.PreAccept(ctx, testPhone, testCallID, "") },
			wantSubstr: "missing required parameter: answer sdp",
		},
		{
			name:       "no answer sdp for accept",
			token:      testToken,
			call:       func(ctx context.Context, c *Client) error { return c.Accept(ctx, testPhone, testCallID, "", "x") },
			wantSubstr: "missing required parameter: answer sdp",
		},
		{
			name:  "no recipient for connect",
			token: testToken,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Connect(ctx, testPhone, ConnectRequest{OfferSDP: testSDP})
				return err
			},
			wantSubstr: "connect call: missing required parameter: to or recipient",
		},
		{
			name:  "no offer for connect",
			token: testToken,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Connect(ctx, testPhone, ConnectRequest{To: "15551234567"})
				return err
			},
			wantSubstr: "connect call: missing required parameter: offer sdp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, count := newGraph(t, graphReply{status: http.StatusOK, body: `{"success":true}`})
			c.AccessToken = tt.token
			err := tt.call(context.Background(), c)
			if !errors.Is(err, ErrMissingParameter) {
				t.Fatalf("err = %v; want ErrMissingParameter", err)
			}
			if !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Errorf("err = %q; want it to contain %q", err, tt.wantSubstr)
			}
			if n := count.Load(); n != 0 {
				t.Errorf("server saw %d requests; want 0", n)
			}
		})
	}
}

func TestClientInvalidEndpoint(t *testing.T) {
	tests := []struct {
		name, baseURL, version, phone string
	}{
		{name: "unsupported scheme", baseURL: "ftp://127.0.0.1", phone: testPhone},
		{name: "no host", baseURL: "http://", phone: testPhone},
		{name: "unparsable", baseURL: "http://[::1", phone: testPhone},
		{name: "dot-dot phone number id", baseURL: "http://127.0.0.1:1", phone: ".."},
		{name: "dot version", baseURL: "http://127.0.0.1:1", version: ".", phone: testPhone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{BaseURL: tt.baseURL, Version: tt.version, AccessToken: testToken}
			err := c.Terminate(context.Background(), tt.phone, testCallID)
			if err == nil {
				t.Fatalf("Terminate() with base %q = nil; want an error", tt.baseURL)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("err = %q; leaks the token", err)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		reply   graphReply
		wantIs  error
	}{
		{
			name:    "client timeout before headers",
			timeout: 50 * time.Millisecond,
			ctx:     func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			reply:   graphReply{status: http.StatusOK, body: `{"success":true}`, delay: 10 * time.Second},
			wantIs:  context.DeadlineExceeded,
		},
		{
			name:    "caller deadline with client timeout disabled",
			timeout: -1,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			reply:  graphReply{status: http.StatusOK, body: `{"success":true}`, delay: 10 * time.Second},
			wantIs: context.DeadlineExceeded,
		},
		{
			name:    "caller cancels",
			timeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			reply:  graphReply{status: http.StatusOK, body: `{"success":true}`, delay: 10 * time.Second},
			wantIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, _ := newGraph(t, tt.reply)
			c.Timeout = tt.timeout
			ctx, cancel := tt.ctx()
			defer cancel()
			err := c.Accept(ctx, testPhone, testCallID, testSDP, "")
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Accept() = %v; want errors.Is %v", err, tt.wantIs)
			}
			if !strings.HasPrefix(err.Error(), "accept call "+testCallID+": ") {
				t.Errorf("err = %q; want the action and call id first", err)
			}
		})
	}
}

// TestClientTimeoutWhileReadingBody checks that the per-request timeout also
// bounds reading a response whose body stalls after the headers.
func TestClientTimeoutWhileReadingBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"success":`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, AccessToken: testToken, HTTPClient: srv.Client(), Timeout: 50 * time.Millisecond}
	err := c.Terminate(context.Background(), testPhone, testCallID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Terminate() = %v; want errors.Is context.DeadlineExceeded", err)
	}
}

// TestClientDefaultHTTPClient checks the package's own client: it works and
// does not follow redirects.
func TestClientDefaultHTTPClient(t *testing.T) {
	t.Cleanup(defaultHTTPClient().CloseIdleConnections)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/redirect/v23.0/"+testPhone+"/calls" {
			http.Redirect(w, r, "/v23.0/"+testPhone+"/calls", http.StatusTemporaryRedirect)
			return
		}
		io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()

	c := &Client{BaseURL: srv.URL, AccessToken: testToken}
	if err := c.Terminate(context.Background(), testPhone, testCallID); err != nil {
		t.Fatalf("Terminate() = %v; want nil", err)
	}
	c.BaseURL = srv.URL + "/redirect"
	err := c.Terminate(context.Background(), testPhone, testCallID)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("Terminate() after redirect = %v; want *APIError with status 307", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("server saw %d requests; want 2 (redirect not followed)", n)
	}
}

func TestClientConcurrent(t *testing.T) {
	c, seen, count := newGraph(t, graphReply{status: http.StatusOK, body: `{"success":true}`})
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- c.Terminate(context.Background(), testPhone, testCallID)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Terminate() = %v; want nil", err)
		}
	}
	if got := count.Load(); got != n {
		t.Errorf("server saw %d requests; want %d", got, n)
	}
	for range n {
		<-seen
	}
}

func TestClientDebugLogs(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	c, _, _ := newGraph(t, graphReply{status: http.StatusOK, body: `{"success":true}`})
	c.Logger = zap.New(core)
	if err := c.PreAccept(context.Background(), testPhone, testCallID, testSDP); err != nil {
		t.Fatalf("PreAccept() = %v; want nil", err)
	}
	entries := logs.AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("got %d log entries; want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if entries[0].Level != zapcore.DebugLevel || fields["action"] != "pre_accept" || fields["call_id"] != testCallID ||
		fields["status"] != int64(200) {
		t.Errorf("log entry = %v %v; want debug with action, call_id and status", entries[0].Entry, fields)
	}
	dump, _ := json.Marshal(fields)
	if strings.Contains(string(dump), testToken) || strings.Contains(string(dump), "IN IP4") {
		t.Errorf("log fields %s leak the token or SDP", dump)
	}

	// At info level nothing is logged.
	core, logs = observer.New(zapcore.InfoLevel)
	c.Logger = zap.New(core)
	if err := c.Terminate(context.Background(), testPhone, testCallID); err != nil {
		t.Fatalf("Terminate() = %v; want nil", err)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("got %d info log entries; want 0", n)
	}
}

func TestAPIErrorString(t *testing.T) {
	tests := []struct {
		give *APIError
		want string
	}{
		{&APIError{}, "graph api error"},
		{&APIError{StatusCode: 502}, "graph api error (http 502)"},
		{&APIError{StatusCode: 400, Message: "Bad", Code: 100}, "graph api error (http 400): Bad [code=100]"},
		{
			&APIError{StatusCode: 400, Message: "Bad", Type: "OAuthException", Code: 100, Subcode: 33, FBTraceID: "X"},
			"graph api error (http 400): Bad [type=OAuthException code=100 subcode=33 fbtrace_id=X]",
		},
	}
	for _, tt := range tests {
		if got := tt.give.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q; want %q", *tt.give, got, tt.want)
		}
	}
}

func BenchmarkClientTerminate(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, AccessToken: testToken, HTTPClient: srv.Client()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Terminate(ctx, testPhone, testCallID); err != nil {
			b.Fatal(err)
		}
	}
}
