package media

import (
	"fmt"

	"github.com/pion/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// pionLoggerFactory routes pion's logs into zap. pion's info, debug and trace
// messages are chatty per-connection chatter, so they become zap debug entries
// (formatted only when debug is enabled); warnings and errors keep their level.
type pionLoggerFactory struct {
	logger *zap.Logger
}

// NewLogger implements logging.LoggerFactory.
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{logger: f.logger.With(zap.String("pion", scope))}
}

// pionLogger implements logging.LeveledLogger on zap.
type pionLogger struct {
	logger *zap.Logger
}

func (l pionLogger) log(level zapcore.Level, msg string) {
	if ce := l.logger.Check(level, msg); ce != nil {
		ce.Write()
	}
}

func (l pionLogger) logf(level zapcore.Level, format string, args ...any) {
	if !l.logger.Core().Enabled(level) {
		return
	}
	l.log(level, fmt.Sprintf(format, args...))
}

func (l pionLogger) Trace(msg string)                  { l.log(zapcore.DebugLevel, msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.logf(zapcore.DebugLevel, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.log(zapcore.DebugLevel, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(zapcore.DebugLevel, format, args...) }
func (l pionLogger) Info(msg string)                   { l.log(zapcore.DebugLevel, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(zapcore.DebugLevel, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.log(zapcore.WarnLevel, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(zapcore.WarnLevel, format, args...) }
func (l pionLogger) Error(msg string)                  { l.log(zapcore.ErrorLevel, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(zapcore.ErrorLevel, format, args...) }

// Interface guards
var (
	_ logging.LoggerFactory = pionLoggerFactory{}
	_ logging.LeveledLogger = pionLogger{}
)
