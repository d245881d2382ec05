package whatsappcalls

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func TestUnmarshalClusterBlock(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    *ClusterConfig
		wantErr string
	}{
		{
			name: "address only",
			give: "cluster 127.0.0.1:6379\n",
			want: &ClusterConfig{Redis: "127.0.0.1:6379"},
		},
		{
			name: "every option",
			give: `cluster [::1]:6380 {
				username u
				password {env.REDIS_PASSWORD}
				db 3
				tls
				key_prefix p:
				node_id n1
				node_address 10.0.0.1:443
				claim_ttl 5s
			}`,
			want: &ClusterConfig{Redis: "[::1]:6380", Username: "u", Password: "{env.REDIS_PASSWORD}", DB: 3,
				TLS: true, KeyPrefix: "p:", NodeID: "n1", NodeAddress: "10.0.0.1:443", ClaimTTL: caddy.Duration(5 * time.Second)},
		},
		{name: "tls takes no value", give: "cluster 127.0.0.1:6379 {\ntls yes\n}", wantErr: "wrong argument count"},
		{name: "two addresses", give: "cluster 127.0.0.1:6379 127.0.0.1:6380", wantErr: "wrong argument count"},
		{name: "negative db", give: "cluster 127.0.0.1:6379 {\ndb -1\n}", wantErr: "must be a database number"},
		{name: "password without value", give: "cluster 127.0.0.1:6379 {\npassword\n}", wantErr: "wrong argument count"},
		{name: "no port", give: "cluster localhost", wantErr: "must be host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("whatsapp_calls {" + required + tt.give + "\n}"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalCaddyfile(%q) = %v; want an error containing %q", tt.give, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q) = %v", tt.give, err)
			}
			if !reflect.DeepEqual(h.Cluster, tt.want) {
				t.Fatalf("UnmarshalCaddyfile(%q).Cluster = %+v; want %+v", tt.give, h.Cluster, tt.want)
			}
		})
	}
}

func TestClusterNodeConfig(t *testing.T) {
	t.Setenv("TEST_REDIS_PASSWORD", "hunter2-secret")
	t.Setenv("TEST_NODE_ID", "node-7")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    ClusterConfig
		wantErr string
	}{
		{
			name:    "secrets and node id from env",
			give:    ClusterConfig{Redis: "redis.internal:6379", Password: "{env.TEST_REDIS_PASSWORD}", NodeID: "{env.TEST_NODE_ID}", TLS: true},
			wantErr: "",
		},
		{name: "unset password", give: ClusterConfig{Redis: "r:1", Password: "{env.TEST_UNSET_X}", NodeID: "n"}, wantErr: "cluster password: {env.TEST_UNSET_X} is not set"},
		{name: "bad ca", give: ClusterConfig{Redis: "r:1", NodeID: "n", TLSCA: ca}, wantErr: "no PEM certificate"},
		{name: "short ttl", give: ClusterConfig{Redis: "r:1", NodeID: "n", ClaimTTL: caddy.Duration(time.Millisecond)}, wantErr: "claim_ttl must be 1s or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.give.nodeConfig(zap.NewNop())
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("nodeConfig() error %q shows the password", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("nodeConfig() = %v; want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("nodeConfig() = %v", err)
			}
			if cfg.Password != "hunter2-secret" || cfg.NodeID != "node-7" || cfg.TLS == nil || cfg.TLS.ServerName != "redis.internal" {
				t.Fatalf("nodeConfig() = password set %t, node %q, tls %v; want env values and TLS to redis.internal",
					cfg.Password == "hunter2-secret", cfg.NodeID, cfg.TLS)
			}
			if k := clusterKey(cfg); strings.Contains(k, "hunter2") {
				t.Fatalf("clusterKey() = %q shows the password", k)
			}
		})
	}
}
