package middleware

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/router"
)

// TracerName is the instrumentation scope of the spans this package creates.
const TracerName = "github.com/rocketbus/rocketbus/middleware"

// TraceOption configures Tracing and TracingPublisher. WithTracerProvider, WithPropagator,
// WithSystem, WithMessageID and WithAttributes apply to both; WithConsumerGroup and
// WithDestination only to Tracing (a publisher has no group, and its destination is the topic
// it publishes to).
type TraceOption func(*traceConfig)

type traceConfig struct {
	provider      trace.TracerProvider
	propagator    propagation.TextMapPropagator
	system        string
	messageID     func(*message.Message) string
	consumerGroup func(*message.Message) string
	destination   func(*message.Message) string
	attributes    func(*message.Message) []attribute.KeyValue
}

// WithTracerProvider sets the provider spans come from. Default: the global provider.
func WithTracerProvider(tp trace.TracerProvider) TraceOption {
	return func(c *traceConfig) { c.provider = tp }
}

// WithPropagator sets how trace context travels in message metadata. Default: W3C Trace Context
// and Baggage (traceparent, tracestate, baggage keys), not the global propagator, whose default
// propagates nothing.
func WithPropagator(p propagation.TextMapPropagator) TraceOption {
	return func(c *traceConfig) { c.propagator = p }
}

// WithSystem sets messaging.system. Default: "rocketmq".
func WithSystem(system string) TraceOption { return func(c *traceConfig) { c.system = system } }

// WithMessageID sets how messaging.message.id is read; with RocketMQ pass a function over
// rocketmq.MsgIDFromCtx(msg.Context()). Default: the Watermill UUID. TracingPublisher calls it
// before the message is sent, so an id the broker assigns is not known yet: an empty result
// falls back to the Watermill UUID.
func WithMessageID(f func(*message.Message) string) TraceOption {
	return func(c *traceConfig) { c.messageID = f }
}

// WithConsumerGroup sets how messaging.consumer.group.name is read. Default: the group of the
// router.Subscription in the message's context. Tracing only.
func WithConsumerGroup(f func(*message.Message) string) TraceOption {
	return func(c *traceConfig) { c.consumerGroup = f }
}

// WithDestination sets how the consumed topic is read. Default: the topic the Watermill router
// subscribed. Tracing only: TracingPublisher names the topic it publishes to.
func WithDestination(f func(*message.Message) string) TraceOption {
	return func(c *traceConfig) { c.destination = f }
}

// WithAttributes adds attributes computed from each message (tags, keys, queue...) to the
// consumer spans of Tracing and the producer spans of TracingPublisher.
func WithAttributes(f func(*message.Message) []attribute.KeyValue) TraceOption {
	return func(c *traceConfig) { c.attributes = f }
}

// DefaultPropagator is the propagator every function of this package uses when given none:
// W3C Trace Context and Baggage (traceparent, tracestate, baggage keys). It is not the global
// propagator, whose default propagates nothing.
func DefaultPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

func newTraceConfig(opts []TraceOption) traceConfig {
	c := traceConfig{system: "rocketmq"}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.provider == nil {
		c.provider = otel.GetTracerProvider()
	}
	if c.propagator == nil {
		c.propagator = DefaultPropagator()
	}
	if c.messageID == nil {
		c.messageID = func(m *message.Message) string { return m.UUID }
	}
	if c.consumerGroup == nil {
		c.consumerGroup = func(m *message.Message) string {
			s, _ := router.SubscriptionFromContext(m.Context())
			return s.Group
		}
	}
	if c.destination == nil {
		c.destination = func(m *message.Message) string {
			if t := message.SubscribeTopicFromCtx(m.Context()); t != "" {
				return t
			}
			s, _ := router.SubscriptionFromContext(m.Context())
			return s.Topic
		}
	}
	return c
}

// Tracing returns handler middleware that continues the producer's trace: it extracts the trace
// context from the message metadata, runs the handler in a consumer span ("process <topic>")
// with the messaging semantic-convention attributes, records the handler's error, and injects
// the span's context into the messages the handler produces.
func Tracing(opts ...TraceOption) message.HandlerMiddleware {
	c := newTraceConfig(opts)
	tracer := c.provider.Tracer(TracerName, trace.WithSchemaURL(semconv.SchemaURL))
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			destination := c.destination(msg)
			ctx := c.propagator.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
			attrs := []attribute.KeyValue{
				semconv.MessagingSystemKey.String(c.system),
				semconv.MessagingOperationName("process"),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingDestinationName(destination),
				semconv.MessagingMessageID(c.messageID(msg)),
				semconv.MessagingMessageBodySize(len(msg.Payload)),
			}
			if g := c.consumerGroup(msg); g != "" {
				attrs = append(attrs, semconv.MessagingConsumerGroupName(g))
			}
			if c.attributes != nil {
				attrs = append(attrs, c.attributes(msg)...)
			}
			ctx, span := tracer.Start(ctx, "process "+destination,
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
			defer span.End()

			orig := msg.Context()
			msg.SetContext(ctx)
			produced, err := h(msg)
			// Later middleware (Retry, PoisonQueue) and the subscriber see the original context
			// again; the span has ended for them.
			msg.SetContext(orig)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				span.SetAttributes(semconv.ErrorType(err))
				return produced, err
			}
			for _, out := range produced {
				if out.Metadata == nil {
					out.Metadata = message.Metadata{}
				}
				c.propagator.Inject(ctx, propagation.MapCarrier(out.Metadata))
			}
			return produced, nil
		}
	}
}

// TracingPublisher wraps pub so that every message is sent in a producer span ("send <topic>")
// whose context is injected into the message metadata. The parent is the span of the
// message's context, or else the trace context already in its metadata.
func TracingPublisher(pub message.Publisher, opts ...TraceOption) message.Publisher {
	c := newTraceConfig(opts)
	return &tracingPublisher{
		pub:    pub,
		c:      c,
		tracer: c.provider.Tracer(TracerName, trace.WithSchemaURL(semconv.SchemaURL)),
	}
}

// TracingPublisherDecorator is TracingPublisher as a Watermill publisher decorator.
func TracingPublisherDecorator(opts ...TraceOption) message.PublisherDecorator {
	return func(pub message.Publisher) (message.Publisher, error) {
		return TracingPublisher(pub, opts...), nil
	}
}

type tracingPublisher struct {
	pub    message.Publisher
	c      traceConfig
	tracer trace.Tracer
}

func (p *tracingPublisher) Publish(topic string, msgs ...*message.Message) error {
	spans := make([]trace.Span, 0, len(msgs))
	for _, msg := range msgs {
		if msg == nil {
			continue
		}
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		parent := msg.Context()
		if !trace.SpanContextFromContext(parent).IsValid() {
			parent = p.c.propagator.Extract(parent, propagation.MapCarrier(msg.Metadata))
		}
		id := p.c.messageID(msg)
		if id == "" {
			id = msg.UUID
		}
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(p.c.system),
			semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(topic),
			semconv.MessagingMessageID(id),
			semconv.MessagingMessageBodySize(len(msg.Payload)),
		}
		if p.c.attributes != nil {
			attrs = append(attrs, p.c.attributes(msg)...)
		}
		ctx, span := p.tracer.Start(parent, "send "+topic,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		p.c.propagator.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		spans = append(spans, span)
	}
	err := p.pub.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorType(err))
		}
		span.End()
	}
	return err
}

func (p *tracingPublisher) Close() error { return p.pub.Close() }

// InjectTrace writes the trace context of ctx into md with propagator, or DefaultPropagator
// when it is nil (as Tracing and TracingPublisher do).
func InjectTrace(ctx context.Context, md message.Metadata, propagator propagation.TextMapPropagator) {
	if propagator == nil {
		propagator = DefaultPropagator()
	}
	propagator.Inject(ctx, propagation.MapCarrier(md))
}

// ExtractTrace returns ctx with the remote span context (and baggage) found in md, read with
// propagator, or DefaultPropagator when it is nil.
func ExtractTrace(ctx context.Context, md message.Metadata, propagator propagation.TextMapPropagator) context.Context {
	if propagator == nil {
		propagator = DefaultPropagator()
	}
	return propagator.Extract(ctx, propagation.MapCarrier(md))
}
