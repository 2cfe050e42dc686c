package kratosbus

import (
	"context"
	"sort"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-kratos/kratos/v2/transport"
)

// KindRocketMQ is the transport kind of message handlers, as "http" and "grpc" are for
// requests. Kratos middleware can switch on it.
const KindRocketMQ transport.Kind = "rocketmq"

// Headers is the metadata of a message (RocketMQ user properties). In a handler it is the
// message's own metadata: keys set there are seen by the middleware that runs after the
// handler, such as the RocketMQ retry delay level.
type Headers map[string]string

// Transport is the transport.Transporter of a message handler. The request header is the
// message metadata, so Kratos' tracing middleware extracts the producer's trace context and
// its metadata middleware reads the "x-md-" keys.
type Transport struct {
	endpoint string
	topic    string
	group    string
	msg      *message.Message
	reply    metadataHeader
}

var _ transport.Transporter = (*Transport)(nil)

// Kind returns KindRocketMQ.
func (t *Transport) Kind() transport.Kind { return KindRocketMQ }

// Endpoint returns the server's endpoint.
func (t *Transport) Endpoint() string { return t.endpoint }

// Operation returns the topic, which plays the part of an RPC method in logs and span names.
func (t *Transport) Operation() string { return t.topic }

// RequestHeader returns the message metadata.
func (t *Transport) RequestHeader() transport.Header { return metadataHeader(t.msg.Metadata) }

// ReplyHeader returns a header middleware may write to; messages have no reply, so nothing
// reads it.
func (t *Transport) ReplyHeader() transport.Header { return t.reply }

// Topic returns the topic the message was consumed from.
func (t *Transport) Topic() string { return t.topic }

// Group returns the consumer group of the subscription.
func (t *Transport) Group() string { return t.group }

// Message returns the Watermill message being handled.
func (t *Transport) Message() *message.Message { return t.msg }

// FromServerContext returns the Transport of the message a handler processes.
func FromServerContext(ctx context.Context) (*Transport, bool) {
	tr, ok := transport.FromServerContext(ctx)
	if !ok {
		return nil, false
	}
	t, ok := tr.(*Transport)
	return t, ok
}

// metadataHeader adapts message metadata (one value per key) to transport.Header.
type metadataHeader message.Metadata

func (h metadataHeader) Get(key string) string { return h[key] }

func (h metadataHeader) Set(key, value string) { h[key] = value }

// Add keeps the first value: message metadata holds one value per key.
func (h metadataHeader) Add(key, value string) {
	if _, ok := h[key]; !ok {
		h[key] = value
	}
}

func (h metadataHeader) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (h metadataHeader) Values(key string) []string {
	if v, ok := h[key]; ok {
		return []string{v}
	}
	return nil
}
