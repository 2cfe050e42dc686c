package router

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// PublishOption adjusts a message before it is published.
type PublishOption func(*message.Message)

// WithMetadata sets one metadata key (a RocketMQ user property, a Kafka header...).
func WithMetadata(key, value string) PublishOption {
	return func(m *message.Message) { m.Metadata.Set(key, value) }
}

// WithHeaders sets several metadata keys.
func WithHeaders(headers map[string]string) PublishOption {
	return func(m *message.Message) {
		for k, v := range headers {
			m.Metadata.Set(k, v)
		}
	}
}

// WithUUID replaces the generated message UUID, for example with an idempotency key.
func WithUUID(uuid string) PublishOption {
	return func(m *message.Message) { m.UUID = uuid }
}

// NewMessage encodes v with codec into a message whose context is ctx, so that publisher
// decorators (trace and metadata propagation) can read the caller's span and metadata.
func NewMessage(ctx context.Context, codec Codec, v any, opts ...PublishOption) (*message.Message, error) {
	if codec == nil {
		return nil, errors.New("router: nil codec")
	}
	if v == nil {
		return nil, errors.New("router: cannot publish a nil value")
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, fmt.Errorf("router: cannot publish a nil %T", v)
	}
	payload, err := codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("router: encoding %T with codec %s: %w", v, codec.Name(), err)
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	if ctx != nil {
		msg.SetContext(ctx)
	}
	for _, opt := range opts {
		if opt != nil {
			opt(msg)
		}
	}
	return msg, nil
}

// Publisher publishes values, encoded with a codec, through any Watermill publisher.
type Publisher struct {
	pub   message.Publisher
	codec Codec
}

// NewPublisher wraps pub; codec nil means JSON. Closing the Publisher closes pub.
func NewPublisher(pub message.Publisher, codec Codec) (*Publisher, error) {
	if pub == nil {
		return nil, errors.New("router: nil publisher")
	}
	if codec == nil {
		codec = JSON()
	}
	return &Publisher{pub: pub, codec: codec}, nil
}

// Publish encodes v and publishes it to topic. ctx travels with the message to the publisher
// decorators; whether the backend honours its cancellation depends on the backend.
func (p *Publisher) Publish(ctx context.Context, topic string, v any, opts ...PublishOption) error {
	if topic == "" {
		return errors.New("router: publish to an empty topic")
	}
	msg, err := NewMessage(ctx, p.codec, v, opts...)
	if err != nil {
		return err
	}
	if err := p.pub.Publish(topic, msg); err != nil {
		return fmt.Errorf("router: publishing to %q: %w", topic, err)
	}
	return nil
}

// Codec returns the codec values are encoded with.
func (p *Publisher) Codec() Codec { return p.codec }

// Watermill returns the underlying publisher.
func (p *Publisher) Watermill() message.Publisher { return p.pub }

// Close closes the underlying publisher.
func (p *Publisher) Close() error { return p.pub.Close() }
