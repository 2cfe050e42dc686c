package rocketmq

import (
	"errors"
	"strings"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// ClientLogger adapts a Watermill logger to rocketmq-client-go's global logger, which otherwise
// writes every rebalance and pull to stdout through logrus. Install it once at start-up:
//
//	rlog.SetLogger(rocketmq.ClientLogger(logger, "warn"))
//
// minLevel is "debug", "info", "warn" or "error" (the client can change it with
// rlog.SetLogLevel). Client warnings are logged as Info with level=warning, fatal messages as
// errors (the client does not exit on them either).
func ClientLogger(logger watermill.LoggerAdapter, minLevel string) rlog.Logger {
	l := &clientLogger{logger: logger}
	l.Level(minLevel)
	return l
}

const (
	clientDebug int32 = iota
	clientInfo
	clientWarn
	clientError
)

type clientLogger struct {
	logger watermill.LoggerAdapter
	level  atomic.Int32
}

func clientFields(fields map[string]interface{}) watermill.LogFields {
	out := make(watermill.LogFields, len(fields)+1)
	for k, v := range fields {
		out[k] = v
	}
	return out
}

func (l *clientLogger) Debug(msg string, fields map[string]interface{}) {
	if l.level.Load() <= clientDebug {
		l.logger.Debug(msg, clientFields(fields))
	}
}

func (l *clientLogger) Info(msg string, fields map[string]interface{}) {
	if l.level.Load() <= clientInfo {
		l.logger.Info(msg, clientFields(fields))
	}
}

func (l *clientLogger) Warning(msg string, fields map[string]interface{}) {
	if l.level.Load() <= clientWarn {
		f := clientFields(fields)
		f["level"] = "warning"
		l.logger.Info(msg, f)
	}
}

func (l *clientLogger) Error(msg string, fields map[string]interface{}) {
	f := clientFields(fields)
	err, _ := f[rlog.LogKeyUnderlayError].(error)
	if err == nil {
		err = errors.New(msg)
	}
	l.logger.Error(msg, err, f)
}

func (l *clientLogger) Fatal(msg string, fields map[string]interface{}) {
	l.Error(msg, fields)
}

func (l *clientLogger) Level(level string) {
	switch strings.ToLower(level) {
	case "debug":
		l.level.Store(clientDebug)
	case "info":
		l.level.Store(clientInfo)
	case "warn", "warning":
		l.level.Store(clientWarn)
	case "error", "fatal":
		l.level.Store(clientError)
	}
}

// OutputPath is meaningless for an adapter: the Watermill logger decides where logs go.
func (l *clientLogger) OutputPath(string) error { return nil }
