package rocketmq

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Limits enforced by Apache RocketMQ brokers. They are checked on the client side so that a bad
// message fails with an error naming the problem instead of a terse broker response code.
const (
	// DefaultMaxMessageSize is the broker's default maxMessageSize (4 MiB) for one message body.
	DefaultMaxMessageSize = 4 * 1024 * 1024
	// maxPropertiesSize is the broker's limit for the encoded properties of one message.
	maxPropertiesSize = 32767
	// maxNameLength is the client's limit for topic and group names.
	maxNameLength = 127
	// defaultBatchMaxBytes keeps a batch well below the broker's body limit, which also applies to
	// the encoded batch as a whole.
	defaultBatchMaxBytes = 1024 * 1024
)

// validateName checks a topic or group name the way the broker does; the client itself only finds
// out through an opaque response code, or not at all for groups derived at run time.
func validateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("rocketmq: %s name is empty", kind)
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("rocketmq: %s name %q is longer than %d characters", kind, name, maxNameLength)
	}
	if !validNameChars(name) {
		return fmt.Errorf("rocketmq: %s name %q contains characters RocketMQ does not allow (only letters, digits, '%%', '|', '_' and '-')", kind, name)
	}
	return nil
}

func validNameChars(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '%', c == '|', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// PublisherConfig configures a Publisher. Only NameServers is required.
type PublisherConfig struct {
	// NameServers are the name server addresses (host:port).
	NameServers []string
	// GroupName is the producer group. It matters for transactions (the broker checks back with
	// a producer of that group) and for broker-side statistics. Default "rocketbus_producer".
	GroupName string
	// InstanceName is the prefix of the client instance name. A unique suffix is always appended:
	// rocketmq-client-go shares one client per ClientIP@InstanceName, and two producers of one
	// group on a shared client cannot coexist.
	InstanceName string
	// Credentials enable ACL (AccessKey/SecretKey, optional SecurityToken).
	Credentials primitive.Credentials
	// Namespace is prepended to topics and groups by the client ("ns%topic").
	Namespace string
	// Retries is how many times a failed send is retried on another queue/broker. Default 2.
	// Set a negative value for no retries.
	Retries int
	// SendTimeout bounds one send attempt of a message or batch (a send with retries gets
	// SendTimeout per attempt). Default 3s, which is also the client's own fixed bound per
	// attempt, so only shorter values change anything.
	SendTimeout time.Duration
	// Marshaler converts Watermill messages to RocketMQ messages. Default DefaultMarshaler{}.
	Marshaler Marshaler
	// TagFunc gives the TAGS of a message that has no MetadataTags. Optional.
	TagFunc func(topic string, msg *message.Message) string
	// KeysFunc gives the KEYS of a message that has no MetadataKeys. Optional.
	KeysFunc func(topic string, msg *message.Message) []string
	// ShardingKeyFunc gives the sharding key of a message that has no MetadataShardingKey.
	// Messages with the same sharding key go to the same queue, which is what orderly
	// subscribers rely on. Optional.
	ShardingKeyFunc func(topic string, msg *message.Message) string
	// DisableBatch sends every message of a Publish call on its own. By default consecutive
	// messages that allow it (no delay, no sharding key) are sent as RocketMQ batches.
	DisableBatch bool
	// BatchMaxBytes caps the encoded size of one batch. Default 1 MiB.
	BatchMaxBytes int
	// MaxMessageSize is the largest body accepted before sending. Default 4 MiB (the broker's
	// default maxMessageSize); messages above it fail with ErrMessageTooLarge.
	MaxMessageSize int
	// DeliveryTimeDelay makes Watermill delay metadata set RocketMQ 5.x's arbitrary delivery time
	// (TIMER_DELIVER_MS) instead of rounding up to a 4.x delay level. Only 5.x brokers with the
	// timer wheel honour it; a 4.x broker delivers such messages at once.
	DeliveryTimeDelay bool
}

func (c *PublisherConfig) setDefaults() {
	if c.GroupName == "" {
		c.GroupName = "rocketbus_producer"
	}
	if c.InstanceName == "" {
		c.InstanceName = "rocketbus"
	}
	if c.Retries == 0 {
		c.Retries = 2
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 3 * time.Second
	}
	if c.Marshaler == nil {
		c.Marshaler = DefaultMarshaler{}
	}
	if c.BatchMaxBytes == 0 {
		c.BatchMaxBytes = defaultBatchMaxBytes
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
}

// Validate reports the first configuration problem, if any.
func (c PublisherConfig) Validate() error {
	if err := validateNameServers(c.NameServers); err != nil {
		return err
	}
	if err := validateName("producer group", c.GroupName); err != nil {
		return err
	}
	if c.SendTimeout < 0 {
		return fmt.Errorf("rocketmq: SendTimeout %s is negative", c.SendTimeout)
	}
	if c.BatchMaxBytes < 0 {
		return fmt.Errorf("rocketmq: BatchMaxBytes %d is negative", c.BatchMaxBytes)
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > DefaultMaxMessageSize*32 {
		return fmt.Errorf("rocketmq: MaxMessageSize %d is out of range", c.MaxMessageSize)
	}
	if c.Credentials.AccessKey != "" && c.Credentials.SecretKey == "" ||
		c.Credentials.AccessKey == "" && c.Credentials.SecretKey != "" {
		return errors.New("rocketmq: Credentials need both AccessKey and SecretKey")
	}
	return nil
}

func validateNameServers(servers []string) error {
	if len(servers) == 0 {
		return errors.New("rocketmq: NameServers is empty")
	}
	for _, s := range servers {
		if s == "" || strings.ContainsAny(s, "; ") || !strings.Contains(s, ":") {
			return fmt.Errorf("rocketmq: name server address %q is not host:port", s)
		}
	}
	return nil
}

// ConsumeFrom says where a consumer group that has no committed offset starts.
type ConsumeFrom int

const (
	// ConsumeFromLast starts at the end of each queue. Note that a real broker answers a brand-new
	// group's offset query with 0 while the queue still starts at offset 0 (nothing deleted yet),
	// so on a young topic "last" still reads the old messages.
	ConsumeFromLast ConsumeFrom = iota
	// ConsumeFromFirst starts at the first message still stored.
	ConsumeFromFirst
	// ConsumeFromTimestamp starts at SubscriberConfig.ConsumeTimestamp.
	ConsumeFromTimestamp
)

// MessageModel is RocketMQ's delivery model within a consumer group.
type MessageModel int

const (
	// Clustering shares the queues of a topic among the consumers of a group (each message is
	// handled once per group). Offsets live on the broker.
	Clustering MessageModel = iota
	// Broadcasting delivers every message to every consumer of the group. Offsets live on the
	// consumer side and failed messages cannot go back to the broker.
	Broadcasting
)

// NackMode decides what Nack() does.
type NackMode int

const (
	// NackRedeliverLocally hands the same message to the output channel again (after
	// NackResendSleep), without the broker. Order and offsets are not affected.
	NackRedeliverLocally NackMode = iota
	// NackBrokerRetry gives the message back to RocketMQ: in concurrent mode it is sent to
	// %RETRY%<group> with a delay level (MetadataRetryDelayLevel, or the broker default
	// 3 + reconsume times) and ends in %DLQ%<group> after MaxReconsumeTimes; in orderly mode the
	// queue is suspended and the message redelivered, and it goes to the DLQ after
	// MaxReconsumeTimes.
	NackBrokerRetry
)

// SubscriberConfig configures a Subscriber. Only NameServers is required.
type SubscriberConfig struct {
	// NameServers are the name server addresses (host:port).
	NameServers []string
	// GroupFunc returns the consumer group for a topic. RocketMQ expects all consumers of a group
	// to subscribe to the same topics, so the group is derived from the topic. Default:
	// "rocketbus_" + topic.
	GroupFunc func(topic string) string
	// InstanceName is the prefix of the client instance names; a unique suffix is appended per
	// Subscribe call (one push consumer, hence one client, per call).
	InstanceName string
	// Credentials enable ACL.
	Credentials primitive.Credentials
	// Namespace is prepended to topics and groups by the client.
	Namespace string
	// ConsumeFrom applies to groups without a committed offset. Default ConsumeFromLast.
	ConsumeFrom ConsumeFrom
	// ConsumeTimestamp is the start for ConsumeFromTimestamp.
	ConsumeTimestamp time.Time
	// Model is Clustering (default) or Broadcasting.
	Model MessageModel
	// Orderly consumes each queue in order, one message at a time per queue (the queue is locked
	// on the broker). Publish with a sharding key to keep related messages in one queue.
	Orderly bool
	// TagFilter is a server-side tag expression ("*" by default, or "a || b").
	TagFilter string
	// SQLFilter is a server-side SQL92 filter over properties; it needs
	// enablePropertyFilter=true on the broker. Mutually exclusive with TagFilter.
	SQLFilter string
	// MaxReconsumeTimes bounds broker retries before the DLQ. 0 means the client default (16
	// in concurrent mode, unlimited in orderly mode).
	MaxReconsumeTimes int32
	// NackMode decides what Nack() does. Default NackRedeliverLocally.
	NackMode NackMode
	// NackResendSleep is the pause before a local redelivery. Default 0 in local mode; in orderly
	// broker-retry mode it is the queue suspension time (default 1s).
	NackResendSleep time.Duration
	// CloseTimeout bounds how long Close waits for handlers working on delivered messages.
	// Default 30s (Watermill's router default).
	CloseTimeout time.Duration
	// ConsumeGoroutines is the number of messages handled concurrently per Subscribe in
	// concurrent mode. Default 20 (the client default).
	ConsumeGoroutines int
	// PullBatchSize is how many messages one pull fetches per queue. Default 32.
	PullBatchSize int32
	// ConsumeBatchSize is how many messages one client callback carries with
	// NackRedeliverLocally in concurrent mode (broker retries and orderly mode always use 1).
	// The messages of a callback are delivered one after the other, which saves the client a
	// goroutine per message, but they are committed together: when a subscription closes in
	// the middle of a callback, its already acked messages are delivered again later (at most
	// ConsumeGoroutines * (ConsumeBatchSize-1) duplicates per close). Default 8; 1 for none.
	ConsumeBatchSize int
	// AutoCreateTopic makes Subscribe create a missing topic through the admin API (a push
	// consumer cannot start on a topic without a route; SubscribeInitialize always does this).
	// It also makes write-only topics readable (brokers create %DLQ%<group> topics without
	// read permission), and in NackBrokerRetry mode creates %RETRY%<group> up front.
	AutoCreateTopic bool
	// TopicQueueNums is the number of read/write queues of created topics. Default 4.
	TopicQueueNums int
	// BrokerAddrs are the brokers topics are created on. Default: the brokers in the route of
	// the broker's default topic TBW102 as the name server reports it.
	BrokerAddrs []string
	// Unmarshaler converts RocketMQ messages to Watermill messages. Default DefaultMarshaler{}.
	Unmarshaler Marshaler
}

func (c *SubscriberConfig) setDefaults() {
	if c.GroupFunc == nil {
		c.GroupFunc = func(topic string) string { return "rocketbus_" + topic }
	}
	if c.InstanceName == "" {
		c.InstanceName = "rocketbus"
	}
	if c.TagFilter == "" && c.SQLFilter == "" {
		c.TagFilter = "*"
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.ConsumeGoroutines == 0 {
		c.ConsumeGoroutines = 20
	}
	if c.PullBatchSize == 0 {
		c.PullBatchSize = 32
	}
	if c.ConsumeBatchSize == 0 {
		c.ConsumeBatchSize = 8
	}
	if c.TopicQueueNums == 0 {
		c.TopicQueueNums = 4
	}
	if c.Orderly && c.NackMode == NackBrokerRetry && c.NackResendSleep == 0 {
		c.NackResendSleep = time.Second
	}
	if c.Unmarshaler == nil {
		c.Unmarshaler = DefaultMarshaler{}
	}
}

// Validate reports the first configuration problem, if any.
func (c SubscriberConfig) Validate() error {
	if err := validateNameServers(c.NameServers); err != nil {
		return err
	}
	if c.GroupFunc == nil {
		return errors.New("rocketmq: GroupFunc is nil")
	}
	if c.ConsumeFrom < ConsumeFromLast || c.ConsumeFrom > ConsumeFromTimestamp {
		return fmt.Errorf("rocketmq: unknown ConsumeFrom %d", c.ConsumeFrom)
	}
	if c.ConsumeFrom == ConsumeFromTimestamp && c.ConsumeTimestamp.IsZero() {
		return errors.New("rocketmq: ConsumeFromTimestamp needs ConsumeTimestamp")
	}
	if c.Model != Clustering && c.Model != Broadcasting {
		return fmt.Errorf("rocketmq: unknown Model %d", c.Model)
	}
	if c.NackMode != NackRedeliverLocally && c.NackMode != NackBrokerRetry {
		return fmt.Errorf("rocketmq: unknown NackMode %d", c.NackMode)
	}
	if c.Model == Broadcasting && c.NackMode == NackBrokerRetry {
		return errors.New("rocketmq: NackBrokerRetry is impossible in Broadcasting mode (the client drops failed broadcast messages); use NackRedeliverLocally")
	}
	if c.TagFilter != "" && c.SQLFilter != "" {
		return errors.New("rocketmq: TagFilter and SQLFilter are mutually exclusive")
	}
	if c.MaxReconsumeTimes < 0 {
		return fmt.Errorf("rocketmq: MaxReconsumeTimes %d is negative", c.MaxReconsumeTimes)
	}
	if c.CloseTimeout < 0 || c.NackResendSleep < 0 {
		return errors.New("rocketmq: CloseTimeout and NackResendSleep must not be negative")
	}
	if c.ConsumeGoroutines < 1 || c.ConsumeGoroutines > 100000 {
		return fmt.Errorf("rocketmq: ConsumeGoroutines %d is out of range [1, 100000]", c.ConsumeGoroutines)
	}
	if c.PullBatchSize < 1 || c.PullBatchSize > 1024 {
		return fmt.Errorf("rocketmq: PullBatchSize %d is out of range [1, 1024]", c.PullBatchSize)
	}
	if c.ConsumeBatchSize < 1 || c.ConsumeBatchSize > 1024 {
		return fmt.Errorf("rocketmq: ConsumeBatchSize %d is out of range [1, 1024]", c.ConsumeBatchSize)
	}
	if c.TopicQueueNums < 1 || c.TopicQueueNums > 1024 {
		return fmt.Errorf("rocketmq: TopicQueueNums %d is out of range [1, 1024]", c.TopicQueueNums)
	}
	if c.Credentials.AccessKey != "" && c.Credentials.SecretKey == "" ||
		c.Credentials.AccessKey == "" && c.Credentials.SecretKey != "" {
		return errors.New("rocketmq: Credentials need both AccessKey and SecretKey")
	}
	return nil
}
