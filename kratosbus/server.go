package kratosbus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-kratos/kratos/v2/log"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/transport"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

var (
	_ transport.Server     = (*Server)(nil)
	_ transport.Endpointer = (*Server)(nil)
)

// Server runs message handlers as a Kratos transport server: pass it to kratos.Server next to
// the HTTP and gRPC servers. Register handlers with RegisterSubscriber before the app runs.
type Server struct {
	o        options
	r        *router.Router
	ownedPub message.Publisher
	log      *log.Helper
	endpoint *url.URL

	mu       sync.Mutex
	groups   map[string]string // consumer group -> topic
	stopping bool

	closePub sync.Once
	pubErr   error
}

// NewServer creates a server on RocketMQ (WithNameServer) or on another Watermill backend
// (WithBackend). Handler errors become RocketMQ broker retries by default (see
// WithBrokerRetry); every message is traced (WithTracerProvider, WithPropagator).
func NewServer(opts ...Option) (*Server, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, groups: map[string]string{}, log: log.NewHelper(log.With(o.logger, "module", "kratosbus"))}
	wl := newWatermillLogger(o.logger)

	var pub message.Publisher
	var newSub SubscriberFactory
	if o.usesRocketMQ() {
		p, err := newRocketMQPublisher(o, wl)
		if err != nil {
			return nil, err
		}
		s.ownedPub = p
		pub = p
		newSub = func(group string) (message.Subscriber, error) { return newRocketMQSubscriber(o, group, wl) }
	} else {
		if o.newSubscriber == nil {
			return nil, errors.New("kratosbus: WithBackend needs a subscriber factory for a Server")
		}
		pub = o.publisher
		newSub = func(group string) (message.Subscriber, error) {
			sub, err := o.newSubscriber(group)
			if err == nil && sameObject(sub, pub) {
				// A pub/sub in one object (gochannel) belongs to the caller, who keeps
				// publishing with it after the server stopped: the server must not close it.
				sub = keepOpen{sub}
			}
			return sub, err
		}
	}

	mws := []message.HandlerMiddleware{middleware.Tracing(traceOptions(o)...)}
	if o.usesRocketMQ() && !o.retry.disabled {
		retry, err := middleware.BrokerRetry{
			ReconsumeTimes:    rocketmq.ReconsumeTimesFromCtx,
			MaxReconsumeTimes: o.retry.maxReconsumeTimes,
			DelayLevel:        o.retry.delayLevel,
			Logger:            wl,
		}.Middleware()
		if err != nil {
			s.closeOwned()
			return nil, err
		}
		mws = append(mws, retry)
	}
	mws = append(mws, o.wmMiddleware...)
	mws = append(mws, middleware.KratosMetadata())

	r, err := router.New(router.Config{
		Publisher:     middleware.TracingPublisher(middleware.KratosMetadataPublisher(pub), traceOptions(o)...),
		NewSubscriber: newSub,
		Codec:         o.codec,
		PoisonTopic:   o.poisonTopic,
		Middleware:    mws,
		CloseTimeout:  o.closeTimeout,
		Logger:        wl,
	})
	if err != nil {
		s.closeOwned()
		return nil, fmt.Errorf("kratosbus: %w", err)
	}
	s.r = r
	s.endpoint = endpointOf(o)
	return s, nil
}

// sameObject reports whether sub and pub are one value, without panicking on dynamic types
// that cannot be compared.
func sameObject(sub message.Subscriber, pub message.Publisher) bool {
	if sub == nil || pub == nil {
		return false
	}
	a, b := any(sub), any(pub)
	ta := reflect.TypeOf(a)
	if ta != reflect.TypeOf(b) || !ta.Comparable() {
		return false
	}
	return a == b
}

// keepOpen hides Close from the router, which closes the subscribers it gets from the factory.
type keepOpen struct{ message.Subscriber }

func (keepOpen) Close() error { return nil }

func newRocketMQPublisher(o options, wl watermill.LoggerAdapter) (*rocketmq.Publisher, error) {
	cfg := rocketmq.PublisherConfig{NameServers: o.nameServers}
	for _, f := range o.pubConfig {
		f(&cfg)
	}
	p, err := rocketmq.NewPublisher(cfg, wl)
	if err != nil {
		return nil, fmt.Errorf("kratosbus: %w", err)
	}
	return p, nil
}

func newRocketMQSubscriber(o options, group string, wl watermill.LoggerAdapter) (*rocketmq.Subscriber, error) {
	cfg := rocketmq.SubscriberConfig{
		NameServers:     o.nameServers,
		AutoCreateTopic: true,
		CloseTimeout:    o.closeTimeout,
		NackMode:        rocketmq.NackBrokerRetry,
	}
	if o.retry.disabled {
		cfg.NackMode = rocketmq.NackRedeliverLocally
	} else {
		cfg.MaxReconsumeTimes = o.retry.maxReconsumeTimes
	}
	for _, f := range o.subConfig {
		f(&cfg)
	}
	if group != "" {
		cfg.GroupFunc = func(string) string { return group }
	}
	return rocketmq.NewSubscriber(cfg, wl)
}

// traceOptions reads RocketMQ's own message id and group when the backend provides them.
func traceOptions(o options) []middleware.TraceOption {
	return []middleware.TraceOption{
		middleware.WithTracerProvider(o.tracer),
		middleware.WithPropagator(o.propagator),
		middleware.WithMessageID(func(m *message.Message) string {
			if id, ok := rocketmq.MsgIDFromCtx(m.Context()); ok && id != "" {
				return id
			}
			return m.UUID
		}),
		middleware.WithConsumerGroup(func(m *message.Message) string {
			if g, ok := rocketmq.ConsumerGroupFromCtx(m.Context()); ok && g != "" {
				return g
			}
			s, _ := router.SubscriptionFromContext(m.Context())
			return s.Group
		}),
		middleware.WithAttributes(func(m *message.Message) []attribute.KeyValue {
			var attrs []attribute.KeyValue
			if tags, ok := rocketmq.TagsFromCtx(m.Context()); ok && tags != "" {
				attrs = append(attrs, semconv.MessagingRocketMQMessageTag(tags))
			}
			if n, ok := rocketmq.ReconsumeTimesFromCtx(m.Context()); ok {
				attrs = append(attrs, attribute.Int("messaging.rocketmq.message.reconsume_times", int(n)))
			}
			return attrs
		}),
	}
}

func endpointOf(o options) *url.URL {
	switch {
	case o.endpoint != nil:
		return o.endpoint
	case o.usesRocketMQ():
		return &url.URL{Scheme: string(KindRocketMQ), Host: o.nameServers[0]}
	default:
		return &url.URL{Scheme: "watermill", Host: "local"}
	}
}

// Router returns the underlying router, for publishing handlers (router.Handle) and options
// RegisterSubscriber does not offer.
func (s *Server) Router() *router.Router { return s.r }

// Endpoint implements transport.Endpointer: the registry sees rocketmq://<name server>.
func (s *Server) Endpoint() (*url.URL, error) { return s.endpoint, nil }

// Start subscribes every registered handler and blocks until Stop. A subscription failure is
// returned, which makes Kratos stop the app. Start after Stop returns nil at once.
func (s *Server) Start(ctx context.Context) error {
	s.log.Infof("[%s] server starting: %s", KindRocketMQ, s.endpoint)
	err := s.r.Run(ctx)
	if errors.Is(err, router.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kratosbus: %w", err)
	}
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if !stopping {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("kratosbus: every subscription ended before Stop")
	}
	return nil
}

// Stop stops consuming and waits for in-flight handlers while ctx lasts (Kratos passes its
// stop timeout, 10 s by default); when ctx ends first, the handlers' contexts are cancelled
// and their messages are not acked. Then it closes the backend it created.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.log.Infof("[%s] server stopping", KindRocketMQ)
	err := s.r.Shutdown(ctx)
	return errors.Join(err, s.closeOwned())
}

func (s *Server) closeOwned() error {
	s.closePub.Do(func() {
		if s.ownedPub != nil {
			s.pubErr = s.ownedPub.Close()
		}
	})
	return s.pubErr
}

// RegisterSubscriber registers handler for the messages of topic in consumer group group
// (with RocketMQ, "" means "rocketbus_<topic>"). Each message is decoded into a T with the
// server's codec and handled inside the server's Kratos middleware chain; headers is the
// message metadata. A nil error acks the message; an error retries it (broker retry with
// RocketMQ). A RocketMQ consumer group must not span topics, so a group can serve one topic.
func RegisterSubscriber[T any](srv *Server, topic, group string, handler func(ctx context.Context, topic string, headers Headers, msg *T) error, opts ...router.HandlerOption) error {
	if srv == nil {
		return errors.New("kratosbus: RegisterSubscriber on a nil server")
	}
	if handler == nil {
		return fmt.Errorf("kratosbus: nil handler for topic %q", topic)
	}
	return srv.register(topic, group, func(ctx context.Context, headers Headers, req any) (any, error) {
		return nil, handler(ctx, topic, headers, req.(*T))
	}, func(h kmiddleware.Handler) error {
		return router.Subscribe(srv.r, topic, func(ctx context.Context, v *T) error {
			_, err := h(ctx, v)
			return err
		}, append([]router.HandlerOption{router.WithGroup(group)}, opts...)...)
	})
}

// RegisterHandler is RegisterSubscriber for handlers that publish: the values handler returns
// are encoded and published to publishTopic, and the input is acked once they are published.
// They carry the handler's trace context and the "x-md-global-" Kratos metadata.
func RegisterHandler[In, Out any](srv *Server, topic, group, publishTopic string, handler func(ctx context.Context, topic string, headers Headers, msg *In) ([]*Out, error), opts ...router.HandlerOption) error {
	if srv == nil {
		return errors.New("kratosbus: RegisterHandler on a nil server")
	}
	if handler == nil {
		return fmt.Errorf("kratosbus: nil handler for topic %q", topic)
	}
	return srv.register(topic, group, func(ctx context.Context, headers Headers, req any) (any, error) {
		return handler(ctx, topic, headers, req.(*In))
	}, func(h kmiddleware.Handler) error {
		return router.Handle(srv.r, topic, publishTopic, func(ctx context.Context, v *In) ([]*Out, error) {
			reply, err := h(ctx, v)
			if err != nil {
				return nil, err
			}
			outs, ok := reply.([]*Out)
			if !ok && reply != nil {
				return nil, fmt.Errorf("kratosbus: Kratos middleware replaced the handler's result with a %T", reply)
			}
			return outs, nil
		}, append([]router.HandlerOption{router.WithGroup(group)}, opts...)...)
	})
}

// register claims group for topic, wraps inner in the Kratos chain and hands it to add, which
// registers it with the router; a failed registration releases the group it claimed.
func (s *Server) register(topic, group string, inner func(ctx context.Context, headers Headers, req any) (any, error), add func(kmiddleware.Handler) error) error {
	claimed, err := s.claimGroup(topic, group)
	if err != nil {
		return err
	}
	if err := add(s.chain(topic, group, inner)); err != nil {
		if claimed {
			s.releaseGroup(group)
		}
		return fmt.Errorf("kratosbus: %w", err)
	}
	return nil
}

// chain wraps a handler in the server's Kratos middleware, behind a Transport for the message.
func (s *Server) chain(topic, group string, inner func(ctx context.Context, headers Headers, req any) (any, error)) kmiddleware.Handler {
	var h kmiddleware.Handler = func(ctx context.Context, req any) (any, error) {
		msg, _ := router.MessageFromContext(ctx)
		return inner(ctx, Headers(msg.Metadata), req)
	}
	if len(s.o.middleware) > 0 {
		h = kmiddleware.Chain(s.o.middleware...)(h)
	}
	endpoint := s.endpoint.String()
	return func(ctx context.Context, req any) (any, error) {
		msg, _ := router.MessageFromContext(ctx)
		tr := &Transport{endpoint: endpoint, topic: topic, group: group, msg: msg, reply: metadataHeader{}}
		return h(transport.NewServerContext(ctx, tr), req)
	}
}

// claimGroup records that group consumes topic; it reports whether the claim is new.
func (s *Server) claimGroup(topic, group string) (bool, error) {
	if group == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.groups[group]; ok {
		if t != topic {
			return false, fmt.Errorf("kratosbus: consumer group %q already consumes topic %q; a RocketMQ group must not span topics, use one group per topic", group, t)
		}
		return false, nil
	}
	s.groups[group] = topic
	return true, nil
}

func (s *Server) releaseGroup(group string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, group)
}
