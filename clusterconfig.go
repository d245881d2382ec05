package whatsappcalls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/cluster"
)

// ClusterConfig lets several Caddy nodes behind one load balancer share
// their calls through Redis: a connect is answered by exactly one node,
// a terminate (or any hang-up) landing on another node reaches the owner,
// the calls of a node that died are terminated toward Meta by a peer, and
// every node can list every call. Media stays on the node that answered:
// each node's udp_port must be reachable from Meta.
//
// Without it the handler runs on one node, with no Redis at all.
type ClusterConfig struct {
	// The Redis server's host:port. Required.
	Redis string `json:"redis,omitempty"`

	// The Redis ACL user name. Default: none.
	Username string `json:"username,omitempty"`

	// The Redis password; use a placeholder such as {env.REDIS_PASSWORD}.
	// It is never logged. Default: none.
	Password string `json:"password,omitempty"`

	// The Redis database number. Default: 0.
	DB int `json:"db,omitempty"`

	// Connect to Redis over TLS. Default: false.
	TLS bool `json:"tls,omitempty"`

	// The server name that Redis's TLS certificate must carry. Default:
	// the host of the redis address. Implies tls.
	TLSServerName string `json:"tls_server_name,omitempty"`

	// A PEM file of CA certificates that Redis's TLS certificate must
	// chain to. Default: the system roots. Implies tls.
	TLSCA string `json:"tls_ca,omitempty"`

	// The prefix of every Redis key and channel, so that several clusters
	// can share one Redis. Default: whatsapp_calls:
	KeyPrefix string `json:"key_prefix,omitempty"`

	// This node's id, unique in the cluster and stable across restarts
	// (so that a restarted node ends what its last run left). It may use
	// placeholders such as {env.NODE_ID}. Default: the host name.
	NodeID string `json:"node_id,omitempty"`

	// This node's internal address (host:port), shown in the call list so
	// that operators know which node holds a call's media. Default: none.
	NodeAddress string `json:"node_address,omitempty"`

	// How long a call's claim lives unless its node refreshes it (every
	// third of it). The calls of a node that died are terminated toward
	// Meta between claim_ttl and 1.5 claim_ttl after it died. Default: 15s.
	ClaimTTL caddy.Duration `json:"claim_ttl,omitempty"`
}

// unmarshalCaddyfile reads the cluster block:
//
//	cluster <host:port> {
//		username        <user>
//		password        <password>
//		db              <n>
//		tls
//		tls_server_name <name>
//		tls_ca          <pem-file>
//		key_prefix      <prefix>
//		node_id         <id>
//		node_address    <host:port>
//		claim_ttl       <duration>
//	}
func (c *ClusterConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("cluster needs the Redis address (host:port)")
	}
	c.Redis = d.Val()
	if err := checkRedisAddr(c.Redis); err != nil {
		return d.Err(err.Error())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("cluster %s already specified", opt)
		}
		seen[opt] = true
		switch opt {
		case "username":
			if err := oneArg(d, &c.Username); err != nil {
				return err
			}
		case "password":
			if err := oneArg(d, &c.Password); err != nil {
				return err
			}
		case "db":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("cluster db %q: must be a database number", v)
			}
			c.DB = n
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.TLS = true
		case "tls_server_name":
			if err := oneArg(d, &c.TLSServerName); err != nil {
				return err
			}
		case "tls_ca":
			if err := oneArg(d, &c.TLSCA); err != nil {
				return err
			}
		case "key_prefix":
			if err := oneArg(d, &c.KeyPrefix); err != nil {
				return err
			}
		case "node_id":
			if err := oneArg(d, &c.NodeID); err != nil {
				return err
			}
		case "node_address":
			if err := oneArg(d, &c.NodeAddress); err != nil {
				return err
			}
		case "claim_ttl":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < time.Second {
				return d.Errf("cluster claim_ttl %q: must be a duration of 1s or more", v)
			}
			c.ClaimTTL = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized cluster subdirective '%s'", opt)
		}
	}
	return nil
}

// checkRedisAddr checks a Redis address, unless a placeholder supplies
// it (Provision checks it then).
func checkRedisAddr(addr string) error {
	if hasPlaceholder(addr) {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("cluster %q: the Redis address must be host:port", addr)
	}
	return nil
}

// validate checks the block without resolving placeholders.
func (c *ClusterConfig) validate() error {
	if c.Redis == "" {
		return errors.New("cluster: redis is required")
	}
	if err := checkRedisAddr(c.Redis); err != nil {
		return err
	}
	if c.DB < 0 {
		return errors.New("cluster: db must not be negative")
	}
	if c.ClaimTTL != 0 && time.Duration(c.ClaimTTL) < time.Second {
		return errors.New("cluster: claim_ttl must be 1s or more")
	}
	return nil
}

// nodeConfig resolves the block's placeholders and secrets into a
// cluster.Config without its callbacks. It reads the tls_ca file but does
// no network I/O.
func (c *ClusterConfig) nodeConfig(logger *zap.Logger) (cluster.Config, error) {
	if err := c.validate(); err != nil {
		return cluster.Config{}, err
	}
	cfg := cluster.Config{
		DB:       c.DB,
		ClaimTTL: time.Duration(c.ClaimTTL),
		Logger:   logger,
	}
	var err error
	for _, o := range []struct {
		option, value string
		dst           *string
		secret        bool
	}{
		{"cluster", c.Redis, &cfg.Addr, false},
		{"cluster username", c.Username, &cfg.Username, true},
		{"cluster password", c.Password, &cfg.Password, true},
		{"cluster key_prefix", c.KeyPrefix, &cfg.KeyPrefix, false},
		{"cluster node_id", c.NodeID, &cfg.NodeID, false},
		{"cluster node_address", c.NodeAddress, &cfg.NodeAddr, false},
		{"cluster tls_server_name", c.TLSServerName, nil, false},
		{"cluster tls_ca", c.TLSCA, nil, false},
	} {
		if o.value == "" {
			continue
		}
		var v string
		if o.secret {
			v, err = resolveSecret(o.option, o.value)
		} else {
			v, err = resolveOption(o.option, o.value)
		}
		if err != nil {
			return cluster.Config{}, err
		}
		if o.dst != nil {
			*o.dst = v
		}
	}
	if err := checkRedisAddr(cfg.Addr); err != nil || hasPlaceholder(cfg.Addr) {
		return cluster.Config{}, errors.New("cluster: the Redis address must be host:port after placeholders")
	}
	if cfg.NodeID == "" {
		if cfg.NodeID, err = os.Hostname(); err != nil || cfg.NodeID == "" {
			return cluster.Config{}, fmt.Errorf("cluster node_id: not set, and no host name to default to: %v", err)
		}
	}
	if c.TLS || c.TLSServerName != "" || c.TLSCA != "" {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if c.TLSServerName != "" {
			cfg.TLS.ServerName, _ = resolveOption("cluster tls_server_name", c.TLSServerName)
		}
		if c.TLSCA != "" {
			path, _ := resolveOption("cluster tls_ca", c.TLSCA)
			pem, err := os.ReadFile(path)
			if err != nil {
				return cluster.Config{}, fmt.Errorf("cluster tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cluster.Config{}, fmt.Errorf("cluster tls_ca %s: no PEM certificate in it", path)
			}
			cfg.TLS.RootCAs = pool
		}
	}
	return cfg, nil
}

// clusterKey names what a node's identity depends on, for the registry
// key: configs that differ in it never share a node. The password enters
// only as a hash.
func clusterKey(cfg cluster.Config) string {
	sum := sha256.Sum256([]byte(cfg.Username + "\x00" + cfg.Password))
	return fmt.Sprintf("%s/%d/%s/%s/%t/%s", cfg.Addr, cfg.DB, cfg.KeyPrefix, cfg.NodeID, cfg.TLS != nil, hex.EncodeToString(sum[:8]))
}
