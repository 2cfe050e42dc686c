package kratosbus

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/stretchr/testify/assert"
)

type recordingLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *recordingLogger) Log(level log.Level, kv ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(level, kv))
	return nil
}

// Watermill logs at trace level for every message; Kratos has no such level, and mapping it
// to Debug flooded Kratos' default logger, which prints every level.
func TestWatermillTraceIsDropped(t *testing.T) {
	rec := &recordingLogger{}
	wl := newWatermillLogger(rec)
	wl.Trace("received message", watermill.LogFields{"uuid": "u-1"})
	assert.Empty(t, rec.lines)
	wl.Debug("subscribing", nil)
	wl.With(watermill.LogFields{"topic": "t"}).Trace("sent", nil)
	assert.Len(t, rec.lines, 1)
}
