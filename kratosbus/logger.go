package kratosbus

import (
	"sort"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/go-kratos/kratos/v2/log"
)

// watermillLogger lets Watermill's router and the RocketMQ Pub/Sub log through a Kratos
// logger, so a service has one log stream and one format.
type watermillLogger struct {
	l      log.Logger
	fields watermill.LogFields
}

func newWatermillLogger(l log.Logger) watermill.LoggerAdapter {
	return &watermillLogger{l: l}
}

func (w *watermillLogger) log(level log.Level, msg string, err error, fields watermill.LogFields) {
	all := w.fields.Add(fields)
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]any, 0, 2*len(keys)+4)
	kv = append(kv, log.DefaultMessageKey, msg)
	if err != nil {
		kv = append(kv, "error", err.Error())
	}
	for _, k := range keys {
		kv = append(kv, k, all[k])
	}
	_ = w.l.Log(level, kv...)
}

func (w *watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.log(log.LevelError, msg, err, fields)
}

func (w *watermillLogger) Info(msg string, fields watermill.LogFields) {
	w.log(log.LevelInfo, msg, nil, fields)
}

func (w *watermillLogger) Debug(msg string, fields watermill.LogFields) {
	w.log(log.LevelDebug, msg, nil, fields)
}

// Trace drops the message: Kratos has no trace level, and Watermill logs at trace level for
// every message, which at Debug would flood Kratos' default logger (it prints every level).
func (w *watermillLogger) Trace(string, watermill.LogFields) {}

func (w *watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return &watermillLogger{l: w.l, fields: w.fields.Add(fields)}
}
