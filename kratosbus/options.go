package kratosbus

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-kratos/kratos/v2/encoding"
	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// Option configures a Server or a Publisher. Options that only make sense for one of them are
// ignored by the other.
type Option func(*options)

// SubscriberFactory creates the subscriber of one consumer group (see router.Config).
type SubscriberFactory func(group string) (message.Subscriber, error)

type options struct {
	nameServers   []string
	codec         router.Codec
	codecName     string
	tracer        trace.TracerProvider
	propagator    propagation.TextMapPropagator
	logger        log.Logger
	middleware    []kmiddleware.Middleware
	wmMiddleware  []message.HandlerMiddleware
	publisher     message.Publisher
	newSubscriber SubscriberFactory
	endpoint      *url.URL
	closeTimeout  time.Duration
	poisonTopic   string
	subConfig     []func(*rocketmq.SubscriberConfig)
	pubConfig     []func(*rocketmq.PublisherConfig)
	retry         brokerRetry
	retrySet      bool // WithBrokerRetry or WithoutBrokerRetry was given
	backendSet    bool // WithBackend was given
}

type brokerRetry struct {
	disabled          bool
	maxReconsumeTimes int32
	delayLevel        func(int32) int
}

// WithNameServer sets the RocketMQ name servers (host:port) of the default backend.
func WithNameServer(addrs ...string) Option {
	return func(o *options) {
		for _, a := range addrs {
			for _, s := range strings.Split(a, ";") {
				if s = strings.TrimSpace(s); s != "" {
					o.nameServers = append(o.nameServers, s)
				}
			}
		}
	}
}

// WithCodec selects the payload codec by name: "json" (default), "protobuf"/"proto", or any
// codec registered with Kratos' encoding package ("yaml", "xml", ...).
func WithCodec(name string) Option {
	return func(o *options) { o.codecName = name; o.codec = nil }
}

// WithCodecValue sets the payload codec; any Kratos encoding.Codec fits.
func WithCodecValue(c router.Codec) Option {
	return func(o *options) { o.codec = c; o.codecName = "" }
}

// WithTracerProvider sets the OpenTelemetry tracer provider of the consume and publish spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// WithGlobalTracerProvider uses otel.GetTracerProvider(). It is also the default; the option
// exists to say so explicitly (as kratos-transport's servers do) and to undo an earlier
// WithTracerProvider in a list of options.
func WithGlobalTracerProvider() Option {
	return func(o *options) { o.tracer = otel.GetTracerProvider() }
}

// WithPropagator sets how trace context travels in message metadata. Default: W3C Trace Context
// and Baggage.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.propagator = p }
}

// WithGlobalPropagator uses otel.GetTextMapPropagator(); note that OpenTelemetry's default
// global propagator propagates nothing until otel.SetTextMapPropagator is called.
func WithGlobalPropagator() Option {
	return func(o *options) { o.propagator = otel.GetTextMapPropagator() }
}

// WithLogger sets the Kratos logger the server, the router and the backend log to. Default:
// log.GetLogger().
func WithLogger(l log.Logger) Option { return func(o *options) { o.logger = l } }

// WithMiddleware sets the Kratos middleware chain every message handler runs in (recovery,
// logging, tracing, metadata, validate...). Inside it, transport.FromServerContext returns a
// *Transport of kind "rocketmq" whose request header is the message metadata.
func WithMiddleware(m ...kmiddleware.Middleware) Option {
	return func(o *options) { o.middleware = append(o.middleware, m...) }
}

// WithRouterMiddleware adds Watermill handler middleware (Watermill's Retry, PoisonQueue,
// CorrelationID, Recoverer, Timeout, Throttle, or this module's middleware package) around the
// Kratos chain.
func WithRouterMiddleware(m ...message.HandlerMiddleware) Option {
	return func(o *options) { o.wmMiddleware = append(o.wmMiddleware, m...) }
}

// WithBackend replaces RocketMQ with any Watermill backend: pub publishes (handler outputs,
// poisoned messages, and the data-layer Publisher's messages), newSubscriber creates the
// subscriber of a consumer group. For backends without groups (gochannel) return the same
// subscriber for every group. The caller keeps ownership of pub and closes it after the
// server stopped. The server closes the subscribers newSubscriber returns, except one that is
// pub itself (a pub/sub in one object like gochannel), which stays the caller's. A Publisher
// needs only pub (newSubscriber may be nil).
func WithBackend(pub message.Publisher, newSubscriber SubscriberFactory) Option {
	return func(o *options) { o.publisher = pub; o.newSubscriber = newSubscriber; o.backendSet = true }
}

// WithEndpoint sets the URL Endpoint reports to Kratos' registry. Default:
// rocketmq://<first name server>.
func WithEndpoint(u *url.URL) Option { return func(o *options) { o.endpoint = u } }

// WithCloseTimeout bounds how long the server waits for in-flight handlers when Stop's context
// has no deadline. Default 30 s.
func WithCloseTimeout(d time.Duration) Option { return func(o *options) { o.closeTimeout = d } }

// WithPoisonTopic names the topic undecodable messages go to. Default router.DefaultPoisonTopic.
func WithPoisonTopic(topic string) Option { return func(o *options) { o.poisonTopic = topic } }

// WithSubscriberConfig adjusts the RocketMQ subscriber configuration of the default backend
// (consume-from, orderly, tag filter, ...). Name servers and group are set by the server.
func WithSubscriberConfig(f func(*rocketmq.SubscriberConfig)) Option {
	return func(o *options) { o.subConfig = append(o.subConfig, f) }
}

// WithPublisherConfig adjusts the RocketMQ publisher configuration of the default backend.
func WithPublisherConfig(f func(*rocketmq.PublisherConfig)) Option {
	return func(o *options) { o.pubConfig = append(o.pubConfig, f) }
}

// WithBrokerRetry tunes the RocketMQ-native retry of the default backend: a handler error
// sends the message back to the broker, which redelivers it after the delay of
// delayLevel(reconsumeTimes) (nil: the broker's 10 s, 30 s, 1 m... schedule) and moves it to
// %DLQ%<group> after maxReconsumeTimes failures (0: 16).
func WithBrokerRetry(maxReconsumeTimes int32, delayLevel func(reconsumeTimes int32) int) Option {
	return func(o *options) {
		o.retry = brokerRetry{maxReconsumeTimes: maxReconsumeTimes, delayLevel: delayLevel}
		o.retrySet = true
	}
}

// WithoutBrokerRetry makes the default backend redeliver failed messages locally and at once
// (rocketmq.NackRedeliverLocally); pair it with Watermill's Retry and PoisonQueue.
func WithoutBrokerRetry() Option {
	return func(o *options) { o.retry = brokerRetry{disabled: true}; o.retrySet = true }
}

func newOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.logger == nil {
		o.logger = log.GetLogger()
	}
	if o.tracer == nil {
		o.tracer = otel.GetTracerProvider()
	}
	if o.propagator == nil {
		o.propagator = middleware.DefaultPropagator()
	}
	if o.codec == nil {
		c, err := codecByName(o.codecName)
		if err != nil {
			return o, err
		}
		o.codec = c
	}
	if o.closeTimeout < 0 {
		return o, fmt.Errorf("kratosbus: negative close timeout %s", o.closeTimeout)
	}
	if o.closeTimeout == 0 {
		o.closeTimeout = 30 * time.Second
	}
	if o.poisonTopic == "" {
		o.poisonTopic = router.DefaultPoisonTopic
	}
	if o.retry.maxReconsumeTimes < 0 {
		return o, fmt.Errorf("kratosbus: negative max reconsume times %d", o.retry.maxReconsumeTimes)
	}
	for i, m := range o.middleware {
		if m == nil {
			return o, fmt.Errorf("kratosbus: Kratos middleware %d is nil", i)
		}
	}
	if o.backendSet {
		// The RocketMQ options configure the default backend only: with another backend they
		// would do nothing, which is a configuration mistake to report, not ignore.
		switch {
		case o.publisher == nil:
			return o, errors.New("kratosbus: WithBackend with a nil publisher")
		case len(o.nameServers) > 0:
			return o, errors.New("kratosbus: WithNameServer and WithBackend both set: choose RocketMQ or another Watermill backend")
		case o.retrySet:
			return o, errors.New("kratosbus: WithBrokerRetry/WithoutBrokerRetry apply to the RocketMQ backend only, not to WithBackend")
		case len(o.subConfig) > 0:
			return o, errors.New("kratosbus: WithSubscriberConfig applies to the RocketMQ backend only, not to WithBackend")
		case len(o.pubConfig) > 0:
			return o, errors.New("kratosbus: WithPublisherConfig applies to the RocketMQ backend only, not to WithBackend")
		}
	}
	if o.publisher == nil && len(o.nameServers) == 0 {
		return o, errors.New("kratosbus: no backend: set WithNameServer for RocketMQ or WithBackend for another Watermill backend")
	}
	return o, nil
}

func (o *options) usesRocketMQ() bool { return o.publisher == nil }

func codecByName(name string) (router.Codec, error) {
	c, err := router.CodecByName(name)
	if err == nil {
		return c, nil
	}
	if kc := encoding.GetCodec(strings.ToLower(name)); kc != nil {
		return kc, nil
	}
	return nil, fmt.Errorf("kratosbus: unknown codec %q (neither json, protobuf nor a codec registered with Kratos' encoding package)", name)
}
