package router

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signalLogger closes reached the first time a log message contains one of the markers.
type signalLogger struct {
	watermill.NopLogger
	markers []string
	once    sync.Once
	reached chan struct{}
}

func (l *signalLogger) log(msg string) {
	for _, m := range l.markers {
		if strings.Contains(msg, m) {
			l.once.Do(func() { close(l.reached) })
		}
	}
}

func (l *signalLogger) Info(msg string, _ watermill.LogFields)  { l.log(msg) }
func (l *signalLogger) Debug(msg string, _ watermill.LogFields) { l.log(msg) }
func (l *signalLogger) With(watermill.LogFields) watermill.LoggerAdapter {
	return l
}

// A handler registered while running, with Shutdown starting between its registration with
// Watermill and its subscription, must not hold Shutdown until CloseTimeout: before the fix,
// Watermill's Close waited (holding the lock RunHandlers needs) for a handler that could no
// longer start.
func TestShutdownDuringLateRegistration(t *testing.T) {
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()
	logger := &signalLogger{
		// Watermill's Close logs the first once it holds its handler lock; Shutdown logs the
		// second before it waits for late registrations.
		markers: []string{"Closing router", "registered while running"},
		reached: make(chan struct{}),
	}
	r, err := New(Config{Subscriber: gc, DropUndecodable: true, CloseTimeout: time.Hour, Logger: logger})
	require.NoError(t, err)
	nop := func(context.Context, *struct{}) error { return nil }
	require.NoError(t, Subscribe(r, "first", nop))
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	<-r.Running()

	shutdownErr := make(chan error, 1)
	testHookLateAdd = func(r *Router) {
		go func() { shutdownErr <- r.Shutdown(context.Background()) }()
		select {
		case <-logger.reached:
		case <-time.After(10 * time.Second):
			t.Error("Shutdown did not get to closing the router")
		}
	}
	t.Cleanup(func() { testHookLateAdd = nil })

	subscribed := make(chan error, 1)
	go func() { subscribed <- Subscribe(r, "late", nop) }()
	select {
	case err := <-shutdownErr:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown is stuck behind the handler registered while it started (CloseTimeout is an hour)")
	}
	if err := <-subscribed; err != nil {
		assert.ErrorIs(t, err, ErrClosed)
	}
	assert.NoError(t, <-runErr)
}
