package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/go-kratos/kratos/v2/metadata"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

func TestMain(m *testing.M) {
	rlog.SetLogLevel("error")
	// rocketmq-client-go v2.1.2 leaves these behind after Shutdown (see the rocketmq package's
	// TestMain); none belongs to this module.
	const client = "github.com/apache/rocketmq-client-go/v2/"
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction(client+"primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client+"consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client+"internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
	)
}

type event struct {
	ID string `json:"id"`
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func runRouter(t *testing.T, r *router.Router) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	<-r.Running()
	t.Cleanup(func() {
		require.NoError(t, r.Close())
		require.NoError(t, <-done)
	})
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestTracingContinuesTheProducersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()

	r, err := router.New(router.Config{
		Publisher:  gc,
		Subscriber: gc,
		Middleware: []message.HandlerMiddleware{
			func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					out, err := h(msg)
					if err != nil {
						return nil, nil // ack failures: the test checks the span, not redelivery
					}
					return out, nil
				}
			},
			middleware.Tracing(middleware.WithTracerProvider(tp)),
		},
	})
	require.NoError(t, err)
	type seen struct {
		sc    trace.SpanContext
		fails bool
	}
	got := make(chan seen, 2)
	require.NoError(t, router.Handle(r, "orders", "receipts", func(ctx context.Context, e *event) ([]*event, error) {
		got <- seen{sc: trace.SpanContextFromContext(ctx), fails: e.ID == "bad"}
		if e.ID == "bad" {
			return nil, middleware.Permanent(errors.New("rejected"))
		}
		return []*event{{ID: e.ID + "-receipt"}}, nil
	}, router.WithGroup("billing")))
	receipts, err := gc.Subscribe(context.Background(), "receipts")
	require.NoError(t, err)
	runRouter(t, r)

	pub, err := router.NewPublisher(middleware.TracingPublisher(gc, middleware.WithTracerProvider(tp)), nil)
	require.NoError(t, err)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "http request")
	require.NoError(t, pub.Publish(ctx, "orders", event{ID: "o-1"}))
	parent.End()

	s := wait(t, got, "the handler")
	assert.Equal(t, parent.SpanContext().TraceID(), s.sc.TraceID(), "the consumer must continue the producer's trace")

	out := wait(t, receipts, "the produced message")
	out.Ack()
	outCtx := middleware.ExtractTrace(context.Background(), out.Metadata, nil)
	assert.Equal(t, s.sc.SpanID(), trace.SpanContextFromContext(outCtx).SpanID(),
		"produced messages carry the consumer span as their parent")

	var send, process sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		switch sp.Name() {
		case "send orders":
			send = sp
		case "process orders":
			process = sp
		}
	}
	require.NotNil(t, send, "producer span")
	require.NotNil(t, process, "consumer span")
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	assert.Equal(t, parent.SpanContext().SpanID(), send.Parent().SpanID())
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())
	assert.Equal(t, send.SpanContext().SpanID(), process.Parent().SpanID())
	a := attrs(process.Attributes())
	assert.Equal(t, "rocketmq", a["messaging.system"])
	assert.Equal(t, "orders", a["messaging.destination.name"])
	assert.Equal(t, "billing", a["messaging.consumer.group.name"])
	assert.Equal(t, "process", a["messaging.operation.type"])
	assert.NotEmpty(t, a["messaging.message.id"])
	assert.Equal(t, codes.Unset, process.Status().Code)

	// A failing handler marks its span.
	require.NoError(t, pub.Publish(context.Background(), "orders", event{ID: "bad"}))
	require.True(t, wait(t, got, "the failing handler").fails)
	require.Eventually(t, func() bool {
		for _, sp := range rec.Ended() {
			if sp.Name() == "process orders" && sp.Status().Code == codes.Error {
				return sp.Status().Description == "rejected"
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
}

func TestTracingCustomMessageID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	mw := middleware.Tracing(middleware.WithTracerProvider(tp), middleware.WithSystem("kafka"),
		middleware.WithMessageID(func(m *message.Message) string { return "native-" + m.UUID }),
		middleware.WithConsumerGroup(func(*message.Message) string { return "g" }),
		middleware.WithDestination(func(*message.Message) string { return "t" }),
		middleware.WithAttributes(func(*message.Message) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("messaging.rocketmq.message.tag", "tagA")}
		}),
		middleware.WithPropagator(propagation.TraceContext{}))
	_, err := mw(func(msg *message.Message) ([]*message.Message, error) { return nil, nil })(message.NewMessage("u1", nil))
	require.NoError(t, err)
	require.Len(t, rec.Ended(), 1)
	a := attrs(rec.Ended()[0].Attributes())
	assert.Equal(t, "native-u1", a["messaging.message.id"])
	assert.Equal(t, "kafka", a["messaging.system"])
	assert.Equal(t, "g", a["messaging.consumer.group.name"])
	assert.Equal(t, "tagA", a["messaging.rocketmq.message.tag"])
	assert.Equal(t, "process t", rec.Ended()[0].Name())
}

type reconsumeKey struct{}

func reconsumeTimes(ctx context.Context) (int32, bool) {
	n, ok := ctx.Value(reconsumeKey{}).(int32)
	return n, ok
}

func TestBrokerRetrySetsDelayLevel(t *testing.T) {
	assert.Equal(t, rocketmq.MetadataRetryDelayLevel, middleware.MetadataRetryDelayLevel)

	mw, err := middleware.BrokerRetry{ReconsumeTimes: reconsumeTimes, MaxReconsumeTimes: 3}.Middleware()
	require.NoError(t, err)
	run := func(n int32, handlerErr error) (string, error) {
		msg := message.NewMessage("u", []byte("{}"))
		msg.SetContext(context.WithValue(context.Background(), reconsumeKey{}, n))
		_, err := mw(func(*message.Message) ([]*message.Message, error) { return nil, handlerErr })(msg)
		return msg.Metadata.Get(middleware.MetadataRetryDelayLevel), err
	}
	boom := errors.New("db down")
	for n, want := range map[int32]string{0: "3", 1: "4", 2: "5", 3: "-1", 7: "-1"} {
		level, err := run(n, boom)
		assert.ErrorIs(t, err, boom)
		assert.Equal(t, want, level, "reconsume times %d", n)
	}
	level, err := run(0, nil)
	assert.NoError(t, err)
	assert.Empty(t, level, "success leaves the message alone")

	level, err = run(0, fmt.Errorf("wrapped: %w", middleware.Permanent(boom)))
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "-1", level, "permanent errors skip the retries")

	level, _ = run(0, &router.DecodeError{Err: boom})
	assert.Equal(t, "-1", level)

	clamped, err := middleware.BrokerRetry{ReconsumeTimes: reconsumeTimes, MaxReconsumeTimes: 100,
		DelayLevel: func(n int32) int { return int(n) * 10 }}.Middleware()
	require.NoError(t, err)
	for n, want := range map[int32]string{0: "1", 1: "10", 5: "18"} {
		msg := message.NewMessage("u", nil)
		msg.SetContext(context.WithValue(context.Background(), reconsumeKey{}, n))
		_, _ = clamped(func(*message.Message) ([]*message.Message, error) { return nil, boom })(msg)
		assert.Equal(t, want, msg.Metadata.Get(middleware.MetadataRetryDelayLevel))
	}

	_, err = middleware.BrokerRetry{}.Middleware()
	assert.ErrorContains(t, err, "ReconsumeTimes is required")
	_, err = middleware.BrokerRetry{ReconsumeTimes: reconsumeTimes, MaxReconsumeTimes: -1}.Middleware()
	assert.ErrorContains(t, err, "negative")
	assert.Nil(t, middleware.Permanent(nil))
	assert.False(t, middleware.IsPermanent(boom))
}

func TestKratosMetadata(t *testing.T) {
	msg := message.NewMessage("u", nil)
	msg.Metadata.Set("x-md-global-tenant", "acme")
	msg.Metadata.Set("X-MD-LOCAL-caller", "checkout")
	msg.Metadata.Set("traceparent", "not kratos")

	var server metadata.Metadata
	produced, err := middleware.KratosMetadata()(func(m *message.Message) ([]*message.Message, error) {
		server, _ = metadata.FromServerContext(m.Context())
		return []*message.Message{message.NewMessage("out", nil)}, nil
	})(msg)
	require.NoError(t, err)
	assert.Equal(t, "acme", server.Get("x-md-global-tenant"))
	assert.Equal(t, "checkout", server.Get("x-md-local-caller"))
	assert.Empty(t, server.Get("traceparent"))
	require.Len(t, produced, 1)
	assert.Equal(t, message.Metadata{"x-md-global-tenant": "acme"}, produced[0].Metadata,
		"only global keys travel further")

	// Publishing side: client metadata and the global keys of the incoming request.
	ctx := metadata.NewServerContext(context.Background(), metadata.New(map[string][]string{
		"x-md-global-tenant": {"acme"}, "x-md-local-caller": {"checkout"},
	}))
	ctx = metadata.AppendToClientContext(ctx, "x-md-local-hop", "1")
	md := message.Metadata{}
	middleware.InjectKratosMetadata(ctx, md)
	assert.Equal(t, message.Metadata{"x-md-global-tenant": "acme", "x-md-local-hop": "1"}, md)

	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()
	sub, err := gc.Subscribe(context.Background(), "t")
	require.NoError(t, err)
	pub, err := router.NewPublisher(middleware.KratosMetadataPublisher(gc), nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ctx, "t", event{ID: "1"}))
	got := wait(t, sub, "the published message")
	got.Ack()
	assert.Equal(t, "acme", got.Metadata.Get("x-md-global-tenant"))
	assert.Equal(t, "1", got.Metadata.Get("x-md-local-hop"))
	assert.Empty(t, got.Metadata.Get("x-md-local-caller"))
}

func TestInjectExtractTraceCarryTraceAndBaggage(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	ctx, span := tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "op")
	defer span.End()

	md := message.Metadata{}
	middleware.InjectTrace(ctx, md, nil)
	assert.NotEmpty(t, md.Get("traceparent"))
	assert.Equal(t, "tenant=acme", md.Get("baggage"), "the default propagator is the one Tracing uses: trace context and baggage")

	got := middleware.ExtractTrace(context.Background(), md, nil)
	assert.Equal(t, span.SpanContext().TraceID(), trace.SpanContextFromContext(got).TraceID())
	assert.Equal(t, "acme", baggage.FromContext(got).Member("tenant").Value())

	// An explicit propagator is used instead of the default.
	md = message.Metadata{}
	middleware.InjectTrace(ctx, md, propagation.TraceContext{})
	assert.NotEmpty(t, md.Get("traceparent"))
	assert.Empty(t, md.Get("baggage"))
}

func TestTracingPublisherDecoratorAndOptions(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()
	out, err := gc.Subscribe(context.Background(), "orders")
	require.NoError(t, err)

	decorate := middleware.TracingPublisherDecorator(middleware.WithTracerProvider(tp),
		middleware.WithMessageID(func(m *message.Message) string { return m.Metadata.Get("key") }),
		middleware.WithAttributes(func(m *message.Message) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("messaging.rocketmq.message.tag", m.Metadata.Get("tag"))}
		}))
	pub, err := decorate(gc)
	require.NoError(t, err)

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	withKey := message.NewMessage("u-1", []byte(`{}`))
	withKey.Metadata.Set("key", "k-1")
	withKey.Metadata.Set("tag", "paid")
	withKey.SetContext(ctx)
	noKey := message.NewMessage("u-2", []byte(`{}`))
	noKey.SetContext(ctx)
	require.NoError(t, pub.Publish("orders", withKey, noKey))
	parent.End()

	for range 2 {
		m := wait(t, out, "the published message")
		m.Ack()
		sc := trace.SpanContextFromContext(middleware.ExtractTrace(context.Background(), m.Metadata, nil))
		assert.Equal(t, parent.SpanContext().TraceID(), sc.TraceID(), "the message carries the producer span")
	}
	ids := map[string]map[string]string{}
	for _, sp := range rec.Ended() {
		if sp.Name() == "send orders" {
			a := attrs(sp.Attributes())
			ids[a["messaging.message.id"]] = a
			assert.Equal(t, parent.SpanContext().SpanID(), sp.Parent().SpanID())
		}
	}
	require.Contains(t, ids, "k-1", "WithMessageID applies to the producer span")
	assert.Equal(t, "paid", ids["k-1"]["messaging.rocketmq.message.tag"], "WithAttributes applies to the producer span")
	assert.Contains(t, ids, "u-2", "an empty message id falls back to the Watermill UUID")
}
