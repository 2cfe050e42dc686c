package rocketmq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Metadata keys with a meaning for RocketMQ. Set them on a message before Publish; the Subscriber
// sets them on received messages.
const (
	// MetadataTags is the message's TAGS (one tag; subscribers filter on it server-side).
	MetadataTags = "rocketmq_tags"
	// MetadataKeys is the message's KEYS, space separated as RocketMQ stores them.
	MetadataKeys = "rocketmq_keys"
	// MetadataShardingKey selects the queue (messages with one key stay in order).
	MetadataShardingKey = "rocketmq_sharding_key"
	// MetadataDelayLevel is an explicit 4.x delay level 1..18 (levels above 18 are clamped by
	// the broker; 0 means no delay).
	MetadataDelayLevel = "rocketmq_delay_level"
	// MetadataRetryDelayLevel may be set by a handler or middleware on a received message before
	// Nack(). In NackBrokerRetry mode (concurrent consumption) the message goes back to the
	// broker with that delay level (1..18, larger values are clamped); a negative value sends it
	// straight to %DLQ%<group>. Without it the broker default applies (3 + reconsume times).
	// Orderly subscribers retry in place after NackResendSleep; there only a negative value
	// counts (straight to the DLQ, when MaxReconsumeTimes is set).
	MetadataRetryDelayLevel = "rocketmq_retry_delay_level"

	// UUIDProperty is the user property that carries the Watermill message UUID.
	UUIDProperty = "_watermill_message_uuid"

	// Watermill's delay component (github.com/ThreeDotsLabs/watermill/components/delay) metadata.
	delayedUntilKey = "_watermill_delayed_until"
	delayedForKey   = "_watermill_delayed_for"

	// deliverTimeProperty is RocketMQ 5.x's arbitrary delivery time, epoch milliseconds.
	deliverTimeProperty = "TIMER_DELIVER_MS"
)

// DelayLevels are the delays of RocketMQ 4.x delay levels 1..18 (broker default
// messageDelayLevel).
var DelayLevels = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// DelayLevelFor returns the smallest delay level whose delay is at least d, so a message is never
// delivered early; delays above 2h are clamped to level 18 (2h). It returns 0 for d <= 0.
func DelayLevelFor(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	for i, l := range DelayLevels {
		if l >= d {
			return i + 1
		}
	}
	return len(DelayLevels)
}

// Errors returned for messages RocketMQ cannot carry.
var (
	ErrInvalidMetadata = errors.New("rocketmq: invalid metadata")
	ErrMessageTooLarge = errors.New("rocketmq: message too large")
)

// systemProperties are the property names RocketMQ brokers and clients use themselves. User
// metadata with these names would change how the broker treats the message, so Marshal refuses
// them and Unmarshal does not turn them into metadata.
var systemProperties = map[string]struct{}{}

func init() {
	for _, p := range []string{
		"KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC", "REAL_QID", "TRAN_MSG", "PGROUP",
		"MIN_OFFSET", "MAX_OFFSET", "BUYER_ID", "ORIGIN_MESSAGE_ID", "TRANSFER_FLAG", "CORRECTION_FLAG",
		"MQ2_FLAG", "RECONSUME_TIME", "MSG_REGION", "TRACE_ON", "UNIQ_KEY", "MAX_RECONSUME_TIMES",
		"CONSUME_START_TIME", "TRAN_PREPARED_QUEUE_OFFSET", "TRANSACTION_CHECK_TIMES",
		"CHECK_IMMUNITY_TIME_IN_SECONDS", "SHARDING_KEY", "__transactionId__", "CORRELATION_ID",
		"REPLY_TO_CLIENT", "TTL", "ARRIVE_TIME", "MSG_TYPE", "CLUSTER", "INSTANCE_ID", "POP_CK",
		"POP_CK_OFFSET", "1ST_POP_TIME", "TIMER_DELIVER_MS", "TIMER_DELAY_SEC", "TIMER_DELAY_MS",
		"TIMER_OUT_MS", "TIMER_ENQUEUE_MS", "TIMER_DEQUEUE_MS", "TIMER_ROLL_TIMES", "TIMER_DEL_UNIQKEY",
		"__STARTDELIVERTIME", "INNER_NUM", "INNER_BASE", "INNER_MULTI_DISPATCH",
		"INNER_MULTI_QUEUE_OFFSET", "DLQ_ORIGIN_TOPIC", "DLQ_ORIGIN_MESSAGE_ID",
	} {
		systemProperties[p] = struct{}{}
	}
}

// derivedMetadata are metadata keys that map onto RocketMQ system properties instead of being
// stored as user properties.
var derivedMetadata = map[string]struct{}{
	MetadataTags: {}, MetadataKeys: {}, MetadataShardingKey: {}, MetadataDelayLevel: {},
	MetadataRetryDelayLevel: {},
}

// Marshaler converts between Watermill and RocketMQ messages.
type Marshaler interface {
	// Marshal builds the RocketMQ message for topic. It must not send anything.
	Marshal(topic string, msg *message.Message) (*primitive.Message, error)
	// Unmarshal builds the Watermill message of a received RocketMQ message.
	Unmarshal(msg *primitive.MessageExt) (*message.Message, error)
}

// DefaultMarshaler keeps the UUID in UUIDProperty and every metadata entry as a user property of
// the same name. MetadataTags, MetadataKeys, MetadataShardingKey and MetadataDelayLevel become
// the RocketMQ TAGS, KEYS, SHARDING_KEY and DELAY, and Watermill's delay metadata becomes a delay
// level (rounded up, clamped at 2h) or, with DeliveryTimeDelay, a 5.x delivery time.
//
// Metadata with an empty value is not kept (RocketMQ drops empty properties); Metadata.Get
// returns "" for it either way.
type DefaultMarshaler struct {
	// DeliveryTimeDelay: see PublisherConfig.DeliveryTimeDelay. The Publisher sets it from its
	// config when it uses the default marshaler.
	DeliveryTimeDelay bool
	// Now is the clock for _watermill_delayed_until; time.Now when nil.
	Now func() time.Time
}

func checkProperty(key, value string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidMetadata)
	}
	if strings.ContainsAny(key, "\u0001\u0002") {
		return fmt.Errorf("%w: key %q contains RocketMQ property separators \\u0001 or \\u0002", ErrInvalidMetadata, key)
	}
	if strings.ContainsAny(value, "\u0001\u0002") {
		return fmt.Errorf("%w: value of %q contains RocketMQ property separators \\u0001 or \\u0002", ErrInvalidMetadata, key)
	}
	return nil
}

// Marshal implements Marshaler.
func (m DefaultMarshaler) Marshal(topic string, msg *message.Message) (*primitive.Message, error) {
	if msg == nil {
		return nil, errors.New("rocketmq: nil message")
	}
	out := primitive.NewMessage(topic, msg.Payload)
	if err := checkProperty(UUIDProperty, msg.UUID); err != nil {
		return nil, err
	}
	out.WithProperty(UUIDProperty, msg.UUID)
	for k, v := range msg.Metadata {
		if err := checkProperty(k, v); err != nil {
			return nil, err
		}
		if _, ok := systemProperties[k]; ok {
			return nil, fmt.Errorf("%w: key %q is a RocketMQ system property; use the rocketmq_* metadata keys instead", ErrInvalidMetadata, k)
		}
		if k == UUIDProperty {
			return nil, fmt.Errorf("%w: key %q is reserved for the message UUID", ErrInvalidMetadata, k)
		}
		if _, ok := derivedMetadata[k]; ok {
			continue
		}
		out.WithProperty(k, v)
	}
	if v := msg.Metadata.Get(MetadataTags); v != "" {
		if strings.ContainsAny(v, " |") {
			return nil, fmt.Errorf("%w: tag %q must not contain ' ' or '|' (subscription expressions use them)", ErrInvalidMetadata, v)
		}
		out.WithTag(v)
	}
	if v := msg.Metadata.Get(MetadataKeys); v != "" {
		out.WithKeys(strings.Fields(v))
	}
	if v := msg.Metadata.Get(MetadataShardingKey); v != "" {
		out.WithShardingKey(v)
	}
	if err := m.applyDelay(out, msg); err != nil {
		return nil, err
	}
	return out, nil
}

func (m DefaultMarshaler) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m DefaultMarshaler) applyDelay(out *primitive.Message, msg *message.Message) error {
	if v := msg.Metadata.Get(MetadataDelayLevel); v != "" {
		level, err := strconv.Atoi(v)
		if err != nil || level < 0 {
			return fmt.Errorf("%w: %s %q is not a delay level (0..18)", ErrInvalidMetadata, MetadataDelayLevel, v)
		}
		if level > len(DelayLevels) {
			level = len(DelayLevels)
		}
		if level > 0 {
			out.WithDelayTimeLevel(level)
		}
		return nil
	}
	now := m.now()
	var until, viaFor time.Time
	if v := msg.Metadata.Get(delayedUntilKey); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not RFC3339: %v", ErrInvalidMetadata, delayedUntilKey, v, err)
		}
		until = t
	}
	if v := msg.Metadata.Get(delayedForKey); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not a duration: %v", ErrInvalidMetadata, delayedForKey, v, err)
		}
		viaFor = now.Add(d)
	}
	// Watermill's delay component sets both keys, and formats _until in whole seconds (up to a
	// second early). When _until is that truncation of now + _for, the latter is the precise
	// time; otherwise (a message republished later) _until, an absolute time, wins.
	deliverAt := until
	switch {
	case until.IsZero():
		deliverAt = viaFor
	case !viaFor.IsZero() && !viaFor.Before(until) && viaFor.Before(until.Add(time.Second)):
		deliverAt = viaFor
	}
	if deliverAt.IsZero() {
		return nil
	}
	delay := deliverAt.Sub(now)
	if delay <= 0 {
		return nil
	}
	if m.DeliveryTimeDelay {
		out.WithProperty(deliverTimeProperty, strconv.FormatInt(deliverAt.UnixMilli(), 10))
		return nil
	}
	out.WithDelayTimeLevel(DelayLevelFor(delay))
	return nil
}

// Unmarshal implements Marshaler. Messages produced without Watermill get their UNIQ_KEY (the
// client message id) as UUID.
func (m DefaultMarshaler) Unmarshal(ext *primitive.MessageExt) (*message.Message, error) {
	props := ext.GetProperties()
	uuid := props[UUIDProperty]
	if uuid == "" {
		uuid = ext.MsgId
	}
	msg := message.NewMessage(uuid, ext.Body)
	for k, v := range props {
		if _, ok := systemProperties[k]; ok || k == UUIDProperty {
			continue
		}
		msg.Metadata.Set(k, v)
	}
	if v := props[primitive.PropertyTags]; v != "" {
		msg.Metadata.Set(MetadataTags, v)
	}
	if v := props[primitive.PropertyKeys]; v != "" {
		msg.Metadata.Set(MetadataKeys, v)
	}
	if v := props[primitive.PropertyShardingKey]; v != "" {
		msg.Metadata.Set(MetadataShardingKey, v)
	}
	return msg, nil
}
