package kratosbus

import (
	"context"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/wire"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// PublishOption adjusts one published message.
type PublishOption = router.PublishOption

// WithHeader sets one metadata key (a RocketMQ user property).
func WithHeader(key, value string) PublishOption { return router.WithMetadata(key, value) }

// WithHeaders sets several metadata keys.
func WithHeaders(h Headers) PublishOption { return router.WithHeaders(h) }

// WithTag sets the RocketMQ TAGS subscribers can filter on.
func WithTag(tag string) PublishOption { return router.WithMetadata(rocketmq.MetadataTags, tag) }

// WithKeys sets the RocketMQ KEYS (message lookup keys in the console and mqadmin).
func WithKeys(keys ...string) PublishOption {
	return router.WithMetadata(rocketmq.MetadataKeys, strings.Join(keys, " "))
}

// WithShardingKey keeps messages with the same key in one queue, hence in order for orderly
// subscribers.
func WithShardingKey(key string) PublishOption {
	return router.WithMetadata(rocketmq.MetadataShardingKey, key)
}

// WithDelayLevel delays delivery by a RocketMQ 4.x delay level (1 = 1 s ... 18 = 2 h).
func WithDelayLevel(level int) PublishOption {
	return router.WithMetadata(rocketmq.MetadataDelayLevel, strconv.Itoa(level))
}

// Sender is what business code needs from a publisher; depend on it to substitute a fake in
// tests.
type Sender interface {
	Publish(ctx context.Context, topic string, v any, opts ...PublishOption) error
}

// Publisher publishes values for the data layer: the value is encoded with the codec, the
// trace context and Kratos metadata of ctx travel in the message metadata.
type Publisher struct {
	p     *router.Publisher
	owned message.Publisher
}

var _ Sender = (*Publisher)(nil)

// NewPublisher creates a publisher on RocketMQ (WithNameServer) or on any Watermill publisher
// (WithBackend). It reads WithCodec/WithCodecValue, WithTracerProvider, WithPropagator,
// WithLogger and WithPublisherConfig.
func NewPublisher(opts ...Option) (*Publisher, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	pub := o.publisher
	var owned message.Publisher
	if o.usesRocketMQ() {
		p, err := newRocketMQPublisher(o, newWatermillLogger(o.logger))
		if err != nil {
			return nil, err
		}
		pub, owned = p, p
	}
	decorated := middleware.TracingPublisher(middleware.KratosMetadataPublisher(pub), traceOptions(o)...)
	rp, err := router.NewPublisher(decorated, o.codec)
	if err != nil {
		return nil, err
	}
	return &Publisher{p: rp, owned: owned}, nil
}

// Publish encodes v and publishes it to topic; it returns once the backend accepted the
// message (RocketMQ: the broker stored it).
func (p *Publisher) Publish(ctx context.Context, topic string, v any, opts ...PublishOption) error {
	return p.p.Publish(ctx, topic, v, opts...)
}

// Close closes the backend publisher the Publisher created; a backend passed with WithBackend
// stays open (its owner closes it).
func (p *Publisher) Close() error {
	if p.owned == nil {
		return nil
	}
	return p.owned.Close()
}

// PublisherOptions are the options ProvidePublisher builds a Publisher from; provide them from
// the service's configuration (for example from conf.Data).
type PublisherOptions []Option

// ProvidePublisher is the wire provider of a Publisher: it returns the cleanup function wire
// runs when the app is torn down.
func ProvidePublisher(opts PublisherOptions) (*Publisher, func(), error) {
	p, err := NewPublisher(opts...)
	if err != nil {
		return nil, nil, err
	}
	return p, func() { _ = p.Close() }, nil
}

// ProviderSet provides *Publisher and binds it to Sender, for the data layer's wire set:
//
//	wire.Build(data.ProviderSet, kratosbus.ProviderSet, ...)
//
// with a provider of PublisherOptions.
var ProviderSet = wire.NewSet(ProvidePublisher, wire.Bind(new(Sender), new(*Publisher)))
