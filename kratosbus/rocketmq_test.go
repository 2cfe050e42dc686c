package kratosbus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/go-kratos/kratos/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// TestRocketMQBackend runs the default backend against a broker (minirmq, or the one in
// $ROCKETMQ_NAMESRV): the data-layer Publisher publishes, the subscriber of the registered
// group receives, and the consume span continues the publisher's trace with RocketMQ's message
// id and the group.
func TestRocketMQBackend(t *testing.T) {
	if raceEnabled {
		t.Skip("rocketmq-client-go v2.1.2 has data races of its own; run without -race")
	}
	ns := minirmq.NameServer(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	suffix := watermill.NewShortUUID()
	topic, group := "kb-orders-"+suffix, "kb-store-"+suffix

	pub, err := kratosbus.NewPublisher(kratosbus.WithNameServer(ns), kratosbus.WithTracerProvider(tp), kratosbus.WithLogger(quiet))
	require.NoError(t, err)
	defer pub.Close()

	bus, err := kratosbus.NewServer(kratosbus.WithNameServer(ns), kratosbus.WithTracerProvider(tp),
		kratosbus.WithLogger(quiet), kratosbus.WithCloseTimeout(5*time.Second),
		kratosbus.WithSubscriberConfig(func(c *rocketmq.SubscriberConfig) { c.ConsumeFrom = rocketmq.ConsumeFromFirst }))
	require.NoError(t, err)
	u, err := bus.Endpoint()
	require.NoError(t, err)
	assert.Equal(t, "rocketmq://"+strings.Split(ns, ";")[0], u.String())

	type seen struct {
		order   order
		tag     string
		msgID   string
		group   string
		traceID trace.TraceID
	}
	got := make(chan seen, 4)
	require.NoError(t, kratosbus.RegisterSubscriber(bus, topic, group,
		func(ctx context.Context, tp string, headers kratosbus.Headers, o *order) error {
			id, _ := rocketmq.MsgIDFromCtx(ctx)
			g, _ := rocketmq.ConsumerGroupFromCtx(ctx)
			got <- seen{order: *o, tag: headers[rocketmq.MetadataTags], msgID: id, group: g,
				traceID: trace.SpanContextFromContext(ctx).TraceID()}
			return nil
		}))

	app := kratos.New(kratos.Name("orders"), kratos.Logger(quiet), kratos.Server(bus))
	appErr := make(chan error, 1)
	go func() { appErr <- app.Run() }()
	select {
	case <-bus.Router().Running():
	case err := <-appErr:
		t.Fatalf("app stopped: %v", err)
	}

	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, pub.Publish(ctx, topic, order{ID: "r-1", Total: 7}, kratosbus.WithTag("created"), kratosbus.WithKeys("r-1")))
	span.End()

	s := wait(t, got, "the RocketMQ delivery")
	assert.Equal(t, order{ID: "r-1", Total: 7}, s.order)
	assert.Equal(t, "created", s.tag)
	assert.Equal(t, group, s.group)
	assert.NotEmpty(t, s.msgID)
	assert.Equal(t, span.SpanContext().TraceID(), s.traceID)

	require.NoError(t, app.Stop())
	require.NoError(t, wait(t, appErr, "app.Run"))

	var process sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Name() == "process "+topic {
			process = sp
		}
	}
	require.NotNil(t, process)
	a := map[attribute.Key]string{}
	for _, kv := range process.Attributes() {
		a[kv.Key] = kv.Value.Emit()
	}
	assert.Equal(t, "rocketmq", a["messaging.system"])
	assert.Equal(t, topic, a["messaging.destination.name"])
	assert.Equal(t, group, a["messaging.consumer.group.name"])
	assert.Equal(t, s.msgID, a["messaging.message.id"])
	assert.Equal(t, "created", a["messaging.rocketmq.message.tag"])
}

// TestRocketMQBrokerRetryByDefault: a handler error on the default backend becomes a broker
// retry (the message comes back with its reconsume count), not a local redelivery loop.
func TestRocketMQBrokerRetryByDefault(t *testing.T) {
	if raceEnabled {
		t.Skip("rocketmq-client-go v2.1.2 has data races of its own; run without -race")
	}
	ns := minirmq.NameServer(t, minirmq.WithTimeScale(0.05))
	suffix := watermill.NewShortUUID()
	topic, group := "kb-retry-"+suffix, "kb-retry-g-"+suffix
	pub, err := kratosbus.NewPublisher(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet))
	require.NoError(t, err)
	defer pub.Close()

	newBus := func(handler func(ctx context.Context, topic string, headers kratosbus.Headers, o *order) error) *kratosbus.Server {
		bus, err := kratosbus.NewServer(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet),
			kratosbus.WithCloseTimeout(5*time.Second), kratosbus.WithBrokerRetry(3, func(int32) int { return 1 }),
			kratosbus.WithSubscriberConfig(func(c *rocketmq.SubscriberConfig) { c.ConsumeFrom = rocketmq.ConsumeFromFirst }))
		require.NoError(t, err)
		require.NoError(t, kratosbus.RegisterSubscriber(bus, topic, group, handler))
		return bus
	}
	// The broker creates %RETRY%<group> on the group's first heartbeat; a consumer started
	// before that only sees the retry topic at its next route refresh (30 s). Start the group
	// once so that the retry topic exists.
	warm := newBus(func(context.Context, string, kratosbus.Headers, *order) error { return nil })
	stopWarm := startServer(t, warm)
	require.NoError(t, stopWarm())

	attempts := make(chan int32, 8)
	bus := newBus(func(ctx context.Context, _ string, _ kratosbus.Headers, o *order) error {
		n, _ := rocketmq.ReconsumeTimesFromCtx(ctx)
		attempts <- n
		if n == 0 {
			return errors.New("transient")
		}
		return nil
	})
	startServer(t, bus)
	require.NoError(t, pub.Publish(context.Background(), topic, order{ID: "again"}))
	assert.Equal(t, int32(0), wait(t, attempts, "the first delivery"))
	assert.Equal(t, int32(1), wait(t, attempts, "the broker retry"))
}

// TestRocketMQGracefulStopLosesNothing stops a server while handlers are in flight, then
// starts another one in the same group: every message ends up stored (at least once), and the
// first server's in-flight handlers finished instead of being cut off.
func TestRocketMQGracefulStopLosesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("rocketmq-client-go v2.1.2 has data races of its own; run without -race")
	}
	ns := minirmq.NameServer(t)
	suffix := watermill.NewShortUUID()
	topic, group := "kb-drain-"+suffix, "kb-drain-g-"+suffix
	repo := newOrderRepo(t)
	var mu sync.Mutex
	handled := map[string]int{}
	var cancelled atomic.Int32

	newBus := func() *kratosbus.Server {
		bus, err := kratosbus.NewServer(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet),
			kratosbus.WithCloseTimeout(10*time.Second),
			kratosbus.WithSubscriberConfig(func(c *rocketmq.SubscriberConfig) {
				c.ConsumeFrom = rocketmq.ConsumeFromFirst
				c.ConsumeGoroutines = 4
			}))
		require.NoError(t, err)
		require.NoError(t, kratosbus.RegisterSubscriber(bus, topic, group,
			func(ctx context.Context, _ string, _ kratosbus.Headers, o *order) error {
				select {
				case <-time.After(20 * time.Millisecond): // some work, so Stop finds handlers in flight
				case <-ctx.Done():
					cancelled.Add(1)
					return ctx.Err()
				}
				mu.Lock()
				handled[o.ID]++
				first := handled[o.ID] == 1
				mu.Unlock()
				if first {
					return repo.Save(ctx, o, "")
				}
				return nil // a redelivery after a crash is fine: at least once
			}))
		return bus
	}

	pub, err := kratosbus.NewPublisher(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet))
	require.NoError(t, err)
	defer pub.Close()
	const n = 40
	for i := range n {
		require.NoError(t, pub.Publish(context.Background(), topic, order{ID: fmt.Sprintf("d-%d", i), Total: i}))
	}

	first := newBus()
	stopFirst := startServer(t, first)
	require.Eventually(t, func() bool { return len(repo.IDs(t)) >= 8 }, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, stopFirst(), "the first server drains within its deadline")
	assert.Zero(t, cancelled.Load(), "Stop let the in-flight handlers finish")
	afterFirst := len(repo.IDs(t))

	second := newBus()
	startServer(t, second)
	require.Eventually(t, func() bool { return len(repo.IDs(t)) == n }, 60*time.Second, 10*time.Millisecond,
		"every message is stored once the second server consumed the rest")
	t.Logf("first server stored %d of %d messages before stopping", afterFirst, n)
}
