package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// go-redis logs its own retries and reconnects through one process-wide
// logger that writes to stderr. They go to the newest Node's logger at
// debug level instead, since the Node logs each Redis outage and recovery
// once at WARN and INFO. The messages name the Redis address, never the
// credentials.
var (
	redisLogOnce sync.Once
	redisLog     atomic.Pointer[zap.Logger]
)

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if l := redisLog.Load(); l != nil {
		if ce := l.Check(zap.DebugLevel, "go-redis"); ce != nil {
			ce.Write(zap.String("message", fmt.Sprintf(format, v...)))
		}
	}
}

func useRedisLogger(l *zap.Logger) {
	redisLog.Store(l.Named("redis"))
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}
