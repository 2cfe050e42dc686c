// Package rocketmq implements Watermill's message.Publisher and message.Subscriber over
// Apache RocketMQ, using github.com/apache/rocketmq-client-go/v2 (v2.1.2), so that Watermill's
// router, middleware and components (cqrs, forwarder, requeuer, delay, requestreply) run on
// RocketMQ unchanged.
//
// # Mapping
//
// The Watermill UUID travels in the user property UUIDProperty and every metadata entry as a
// user property of the same name (keys or values containing RocketMQ's separators \u0001 and
// \u0002, and keys that are RocketMQ system properties, are rejected with ErrInvalidMetadata).
// TAGS, KEYS, the sharding key and a 4.x delay level come from the metadata keys MetadataTags,
// MetadataKeys, MetadataShardingKey and MetadataDelayLevel, or from PublisherConfig.TagFunc,
// KeysFunc and ShardingKeyFunc. Received messages carry the same keys, and the Subscriber puts
// the RocketMQ view of the message on msg.Context() (MsgIDFromCtx, TagsFromCtx, KeysFromCtx,
// QueueIDFromCtx, QueueOffsetFromCtx, ReconsumeTimesFromCtx, BornTimestampFromCtx,
// ConsumerGroupFromCtx, TopicFromCtx).
//
// Watermill's delay metadata (_watermill_delayed_until, _watermill_delayed_for) is rounded UP to
// the next 4.x delay level (1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h), so
// nothing is delivered early; delays above 2h are clamped to 2h. With
// PublisherConfig.DeliveryTimeDelay the exact time is sent as RocketMQ 5.x's TIMER_DELIVER_MS.
//
// # Publishing
//
// Publish marshals every message first (a bad message fails the call before anything is sent),
// then sends consecutive messages without delay and sharding key as RocketMQ batches and the
// others one by one, in order. Bodies above MaxMessageSize (4 MiB) fail with ErrMessageTooLarge.
// TransactionalPublisher sends half messages and runs a local transaction; the broker's
// check-back is answered by CheckLocalTransaction.
//
// # Subscribing
//
// Every Subscribe call starts its own push consumer with a unique client instance, in the group
// GroupFunc(topic) (RocketMQ expects all members of a group to subscribe to the same topics).
// Ack commits the message. Nack either hands it out again at once (NackRedeliverLocally) or
// gives it back to the broker (NackBrokerRetry): it returns through %RETRY%<group> after a delay
// level (MetadataRetryDelayLevel set by a handler or middleware before Nack, or the broker
// default 3 + reconsume times; negative means straight to %DLQ%<group>) and lands in
// %DLQ%<group> after MaxReconsumeTimes. In orderly mode a Nack suspends the queue for
// NackResendSleep and the message is redelivered in place, until MaxReconsumeTimes sends it to
// the DLQ (a negative MetadataRetryDelayLevel does so at once).
//
// With NackRedeliverLocally in concurrent mode a client callback carries up to
// ConsumeBatchSize messages, delivered one after the other and committed together; this keeps
// the Subscriber within a few percent of a bare push consumer's throughput, at the price of some
// redelivered duplicates after a Close in the middle of a callback.
//
// Close stops deliveries, cancels the contexts of delivered messages, waits up to CloseTimeout
// for their Ack or Nack, shuts the consumers down (committing acked offsets; unacked messages
// are delivered again later) and closes the channels. It is idempotent.
//
// # Known behaviour of the broker and client
//
//   - A push consumer cannot start on a topic without a route; SubscribeInitialize (always) and
//     Subscribe (with AutoCreateTopic) create topics through the admin API.
//   - A real broker answers a new group's offset query with 0 while the queue still starts at
//     offset 0, so ConsumeFromLast still reads the old messages of a young topic.
//   - rocketmq-client-go v2.1.2 keeps broker locks on queues an orderly consumer loses in a
//     rebalance; the Subscriber releases them itself. The client also leaves goroutines behind
//     after Shutdown and has data races of its own between Shutdown and its background work.
package rocketmq
