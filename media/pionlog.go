package media

import (
	"fmt"
	"strings"

	"github.com/pion/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// pionLoggerFactory routes pion's logs into zap. pion's info, debug and trace
// messages are chatty per-connection chatter, so they become zap debug entries
// (formatted only when debug is enabled). Errors keep their level, and so do
// warnings, except the few that pion logs on every healthy call
// (expectedWarnings), which become debug entries.
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

// expectedWarnings are warnings pion logs on every healthy call, which tell
// an operator nothing: they become debug entries. Each is a message prefix
// and, if not empty, a text the message must also contain (the error that
// makes it harmless); any other warning keeps its level.
var expectedWarnings = []struct{ prefix, contains string }{
	// The controlling ICE agent's first check runs before the lite
	// caller's candidates are paired; the next one, 200 ms later, pairs
	// them. A call that never connects fails ICE and is logged as such.
	{prefix: "Failed to ping without candidate pairs"},
	// Teardown: the SRTP/SRTCP sessions close under pion's accept loops
	// for undeclared streams.
	{prefix: "Failed to accept RTCP", contains: "stream is already closed"},
	{prefix: "Failed to accept RTP", contains: "stream is already closed"},
	// Teardown: a candidate's connection on the shared UDP mux is closed
	// under its read loop.
	{prefix: "Failed to read from candidate", contains: "read/write on closed pipe"},
}

// warnLevel returns the level of a pion warning: debug if it is expected
// on every call, warn otherwise.
func warnLevel(msg string) zapcore.Level {
	for _, w := range expectedWarnings {
		if strings.HasPrefix(msg, w.prefix) && strings.Contains(msg, w.contains) {
			return zapcore.DebugLevel
		}
	}
	return zapcore.WarnLevel
}

// warn logs a pion warning at the level warnLevel gives it. It formats the
// message only if a warning or a debug entry would be written.
func (l pionLogger) warn(msg func() string) {
	core := l.logger.Core()
	if !core.Enabled(zapcore.WarnLevel) && !core.Enabled(zapcore.DebugLevel) {
		return
	}
	m := msg()
	l.log(warnLevel(m), m)
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
func (l pionLogger) Warn(msg string)                   { l.warn(func() string { return msg }) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.warn(func() string { return fmt.Sprintf(format, args...) })
}
func (l pionLogger) Error(msg string)                  { l.log(zapcore.ErrorLevel, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(zapcore.ErrorLevel, format, args...) }

// Interface guards
var (
	_ logging.LoggerFactory = pionLoggerFactory{}
	_ logging.LeveledLogger = pionLogger{}
)
