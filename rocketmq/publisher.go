package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	rmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("rocketmq: publisher is closed")

// Publisher publishes Watermill messages to RocketMQ. It is safe for concurrent use.
type Publisher struct {
	config   PublisherConfig
	producer rmq.Producer
	logger   watermill.LoggerAdapter

	// mu is held for reading by every Publish so that Close waits for sends in progress
	// instead of shutting the client down under them.
	mu     sync.RWMutex
	closed bool
}

// NewPublisher validates config, starts a producer and returns the Publisher.
func NewPublisher(config PublisherConfig, logger watermill.LoggerAdapter) (*Publisher, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	if dm, ok := config.Marshaler.(DefaultMarshaler); ok && config.DeliveryTimeDelay {
		dm.DeliveryTimeDelay = true
		config.Marshaler = dm
	}
	p, err := producer.NewDefaultProducer(producerOptions(config)...)
	if err != nil {
		return nil, fmt.Errorf("rocketmq: create producer: %w", err)
	}
	if err := p.Start(); err != nil {
		_ = p.Shutdown()
		return nil, fmt.Errorf("rocketmq: start producer: %w", err)
	}
	return &Publisher{config: config, producer: p, logger: logger}, nil
}

func producerOptions(config PublisherConfig) []producer.Option {
	opts := []producer.Option{
		producer.WithNameServer(config.NameServers),
		producer.WithGroupName(config.GroupName),
		producer.WithInstanceName(config.InstanceName + "-" + watermill.NewShortUUID()),
		producer.WithRetry(config.Retries),
		producer.WithSendMsgTimeout(config.SendTimeout),
		producer.WithQueueSelector(newShardingSelector()),
	}
	if config.Namespace != "" {
		opts = append(opts, producer.WithNamespace(config.Namespace))
	}
	if !config.Credentials.IsEmpty() {
		opts = append(opts, producer.WithCredentials(config.Credentials))
	}
	return opts
}

// shardingSelector keeps messages with one sharding key on one queue (what orderly consumers need)
// and spreads the others round-robin. The client's hash selector picks a random queue for
// messages without a key, which makes batches and plain sends uneven.
type shardingSelector struct {
	roundRobin producer.QueueSelector
}

func newShardingSelector() producer.QueueSelector {
	return &shardingSelector{roundRobin: producer.NewRoundRobinQueueSelector()}
}

func (s *shardingSelector) Select(msg *primitive.Message, mqs []*primitive.MessageQueue, lastBroker string) *primitive.MessageQueue {
	key := msg.GetShardingKey()
	if key == "" || len(mqs) == 0 {
		return s.roundRobin.Select(msg, mqs, lastBroker)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return mqs[h.Sum32()%uint32(len(mqs))]
}

// Publish sends msgs to topic in order. Consecutive messages without delay and sharding key are
// sent as batches (unless DisableBatch); the others one by one. Publish returns after the
// broker acknowledged every message, or with the first error (earlier messages stay published).
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPublisherClosed
	}
	if err := validateName("topic", topic); err != nil {
		return err
	}
	out, propSizes, err := marshalAll(p.config, topic, msgs)
	if err != nil {
		return err
	}
	// encodedSize approximates the size of a message in a batch body (the client's
	// Message.Marshal layout).
	encodedSize := func(i int) int { return 20 + len(out[i].Body) + propSizes[i] }

	for start := 0; start < len(out); {
		end := start + 1
		if !p.config.DisableBatch && len(out) > 1 && batchable(out[start]) {
			size := encodedSize(start)
			for end < len(out) && batchable(out[end]) && size+encodedSize(end) <= p.config.BatchMaxBytes {
				size += encodedSize(end)
				end++
			}
		}
		if err := p.send(msgs[start], out[start:end]); err != nil {
			return fmt.Errorf("rocketmq: publish %d message(s) to %q (first uuid %s): %w", end-start, topic, msgs[start].UUID, err)
		}
		if p.logger != nil {
			p.logger.Trace("Message(s) published", watermill.LogFields{"topic": topic, "count": end - start})
		}
		start = end
	}
	return nil
}

// marshalAll converts every message before anything is sent, so that a bad message in the middle
// of a call does not leave half of it published.
func marshalAll(config PublisherConfig, topic string, msgs []*message.Message) ([]*primitive.Message, []int, error) {
	out := make([]*primitive.Message, len(msgs))
	propSizes := make([]int, len(msgs))
	for i, msg := range msgs {
		if msg == nil {
			return nil, nil, fmt.Errorf("rocketmq: message %d of %d is nil", i, len(msgs))
		}
		if len(msg.Payload) > config.MaxMessageSize {
			return nil, nil, fmt.Errorf("%w: message %s has a %d byte body, the limit is %d", ErrMessageTooLarge, msg.UUID, len(msg.Payload), config.MaxMessageSize)
		}
		m, err := config.Marshaler.Marshal(topic, msg)
		if err != nil {
			return nil, nil, fmt.Errorf("rocketmq: marshal message %s: %w", msg.UUID, err)
		}
		if m.GetTags() == "" && config.TagFunc != nil {
			m.WithTag(config.TagFunc(topic, msg))
		}
		if m.GetKeys() == "" && config.KeysFunc != nil {
			if keys := config.KeysFunc(topic, msg); len(keys) > 0 {
				m.WithKeys(keys)
			}
		}
		if m.GetShardingKey() == "" && config.ShardingKeyFunc != nil {
			m.WithShardingKey(config.ShardingKeyFunc(topic, msg))
		}
		// Counting the encoded properties copies them; the metadata tells cheaply when the
		// limit is far away.
		n := metadataSize(msg)
		if n > maxPropertiesSize/2 {
			n = propertiesSize(m)
		}
		if n > maxPropertiesSize {
			return nil, nil, fmt.Errorf("%w: message %s has %d bytes of properties, the broker limit is %d", ErrMessageTooLarge, msg.UUID, n, maxPropertiesSize)
		}
		out[i] = m
		propSizes[i] = n
	}
	return out, propSizes, nil
}

// metadataSize estimates the encoded properties of msg: its metadata, its UUID and room for the
// few system properties the client adds.
func metadataSize(msg *message.Message) int {
	n := 128 + len(UUIDProperty) + len(msg.UUID)
	for k, v := range msg.Metadata {
		n += len(k) + len(v) + 2
	}
	return n
}

// propertiesSize is the length of m's encoded properties (key \u0001 value \u0002 per entry).
func propertiesSize(m *primitive.Message) int {
	n := 0
	for k, v := range m.GetProperties() {
		n += len(k) + len(v) + 2
	}
	return n
}

// batchable reports whether the broker accepts m inside a batch: it refuses delayed and
// transactional messages there, and a batch goes to one queue, which would break sharding.
func batchable(m *primitive.Message) bool {
	return m.GetProperty(primitive.PropertyDelayTimeLevel) == "" &&
		m.GetProperty(deliverTimeProperty) == "" &&
		m.GetShardingKey() == "" &&
		m.GetProperty(primitive.PropertyTransactionPrepared) == ""
}

func (p *Publisher) send(first *message.Message, batch []*primitive.Message) error {
	ctx := first.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	// The client bounds every attempt by 3 s itself; a shorter SendTimeout needs a deadline.
	if p.config.SendTimeout < clientAttemptTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.config.SendTimeout*time.Duration(1+p.config.Retries))
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		res, err := p.producer.SendSync(ctx, batch...)
		if err != nil {
			if !routeMissing(err) || attempt >= maxRouteRetries {
				return err
			}
			// Nothing was sent: the client had no usable route yet. This happens for a
			// topic that was just created (the broker registers it with the name server a
			// moment later) and when several goroutines of one producer meet a new topic at
			// once. The client's own retries do not wait, so wait here.
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(routeRetryDelay(attempt)):
			}
			continue
		}
		if res.Status != primitive.SendOK {
			return fmt.Errorf("broker answered %s", sendStatus(res.Status))
		}
		return nil
	}
}

const (
	maxRouteRetries = 8
	// clientAttemptTimeout is rocketmq-client-go's fixed timeout for one send attempt.
	clientAttemptTimeout = 3 * time.Second
)

func routeRetryDelay(attempt int) time.Duration {
	return min(20*time.Millisecond<<attempt, time.Second)
}

// routeMissing recognises the client's "no route" errors, raised before anything is sent.
func routeMissing(err error) bool {
	return strings.Contains(err.Error(), "route info not found")
}

func sendStatus(s primitive.SendStatus) string {
	switch s {
	case primitive.SendFlushDiskTimeout:
		return "FLUSH_DISK_TIMEOUT"
	case primitive.SendFlushSlaveTimeout:
		return "FLUSH_SLAVE_TIMEOUT"
	case primitive.SendSlaveNotAvailable:
		return "SLAVE_NOT_AVAILABLE"
	case primitive.SendUnknownError:
		return "UNKNOWN_ERROR"
	default:
		return fmt.Sprintf("status %d", s)
	}
}

// Close waits for Publish calls in progress and shuts the producer down. It is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.producer.Shutdown(); err != nil {
		return fmt.Errorf("rocketmq: shut down producer: %w", err)
	}
	return nil
}
