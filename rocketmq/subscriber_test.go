package rocketmq_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

const receiveTimeout = 60 * time.Second

func receive(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-msgs:
		require.True(t, ok, "channel closed")
		return msg
	case <-time.After(receiveTimeout):
		t.Fatal("no message received")
		return nil
	}
}

// receiveDeadLetter reads the next message of group's dead-letter topic with a reader group of
// its own (the Subscriber makes the write-only %DLQ% topic readable).
func receiveDeadLetter(t *testing.T, ns []string, topic, group string) *message.Message {
	t.Helper()
	dlqSub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.GroupFunc = func(string) string { return "dlq-reader-" + topic }
	})
	dlq, err := dlqSub.Subscribe(context.Background(), "%DLQ%"+group)
	require.NoError(t, err)
	return receive(t, dlq)
}

func reconsumeTimes(t *testing.T, msg *message.Message) int32 {
	t.Helper()
	n, ok := rocketmq.ReconsumeTimesFromCtx(msg.Context())
	require.True(t, ok)
	return n
}

func TestNackRedeliversLocally(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("nack-local")
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	sent := message.NewMessage(watermill.NewUUID(), []byte("again"))
	require.NoError(t, pub.Publish(topic, sent))

	first := receive(t, msgs)
	require.Equal(t, sent.UUID, first.UUID)
	firstOffset, _ := rocketmq.QueueOffsetFromCtx(first.Context())
	first.Nack()

	second := receive(t, msgs)
	assert.Equal(t, sent.UUID, second.UUID)
	assert.Equal(t, int32(0), reconsumeTimes(t, second), "a local redelivery does not involve the broker")
	secondOffset, _ := rocketmq.QueueOffsetFromCtx(second.Context())
	assert.Equal(t, firstOffset, secondOffset)
	assert.NotSame(t, first, second, "every delivery is a fresh message (Ack/Nack are one-shot)")
	second.Ack()
}

func TestNackBrokerRetryThenDLQ(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("nack-broker")
	group := "g-" + topic
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.NackMode = rocketmq.NackBrokerRetry
		c.MaxReconsumeTimes = 1
		c.GroupFunc = func(string) string { return group }
	})
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	sent := message.NewMessage(watermill.NewUUID(), []byte("poison"))
	sent.Metadata.Set("app", "kept")
	require.NoError(t, pub.Publish(topic, sent))

	first := receive(t, msgs)
	require.Equal(t, sent.UUID, first.UUID)
	assert.Equal(t, int32(0), reconsumeTimes(t, first))
	first.Metadata.Set(rocketmq.MetadataRetryDelayLevel, "1") // 1 s instead of the default 10 s
	first.Nack()

	second := receive(t, msgs)
	assert.Equal(t, sent.UUID, second.UUID, "the broker redelivers the same message through %RETRY%")
	assert.Equal(t, int32(1), reconsumeTimes(t, second))
	tp, _ := rocketmq.TopicFromCtx(second.Context())
	assert.Equal(t, topic, tp, "retried messages report their original topic")
	assert.Equal(t, "kept", second.Metadata.Get("app"))
	second.Metadata.Set(rocketmq.MetadataRetryDelayLevel, "1")
	second.Nack() // reconsume times reached MaxReconsumeTimes: dead letter

	dead := receiveDeadLetter(t, ns, topic, group)
	assert.Equal(t, sent.UUID, dead.UUID)
	assert.Equal(t, "poison", string(dead.Payload))
	assert.Equal(t, "kept", dead.Metadata.Get("app"))
	dead.Ack()
}

func TestNegativeRetryDelayLevelGoesStraightToDLQ(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("nack-dlq")
	group := "g-" + topic
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.NackMode = rocketmq.NackBrokerRetry
		c.GroupFunc = func(string) string { return group }
	})
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	sent := message.NewMessage(watermill.NewUUID(), []byte("bad"))
	require.NoError(t, pub.Publish(topic, sent))
	first := receive(t, msgs)
	first.Metadata.Set(rocketmq.MetadataRetryDelayLevel, "-1")
	first.Nack()

	dead := receiveDeadLetter(t, ns, topic, group)
	assert.Equal(t, sent.UUID, dead.UUID)
	dead.Ack()

	select {
	case msg := <-msgs:
		t.Fatalf("message %s came back although it was dead-lettered", msg.UUID)
	default:
	}
}

func TestTagFilter(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("tags")
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) {
		c.TagFunc = func(_ string, msg *message.Message) string { return msg.Metadata.Get("kind") }
	})
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.TagFilter = "wanted" })
	require.NoError(t, sub.SubscribeInitialize(topic))

	var wanted []string
	for i := 0; i < 6; i++ {
		msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
		if i%2 == 0 {
			msg.Metadata.Set("kind", "wanted")
			wanted = append(wanted, msg.UUID)
		} else {
			msg.Metadata.Set("kind", "other")
		}
		require.NoError(t, pub.Publish(topic, msg))
	}
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	var got []string
	for range wanted {
		msg := receive(t, msgs)
		assert.Equal(t, "wanted", msg.Metadata.Get(rocketmq.MetadataTags))
		got = append(got, msg.UUID)
		msg.Ack()
	}
	assert.ElementsMatch(t, wanted, got)
}

func TestCloseWaitsForInFlightHandler(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("close-wait")
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.CloseTimeout = time.Minute })
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x"))))

	msg := receive(t, msgs)
	var acked atomic.Bool
	sawCancel := make(chan bool, 1)
	go func() {
		// The handler learns about the shutdown through the message context, then finishes.
		select {
		case <-msg.Context().Done():
			sawCancel <- true
		case <-time.After(receiveTimeout):
			sawCancel <- false
		}
		acked.Store(true)
		msg.Ack()
	}()
	require.NoError(t, sub.Close())
	assert.True(t, acked.Load(), "Close returned before the in-flight handler acked")
	assert.True(t, <-sawCancel, "message context was not cancelled by Close")
	_, open := <-msgs
	assert.False(t, open)
}

func TestUnackedMessageIsNotLostOnClose(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("close-unacked")
	group := "g-" + topic
	cfg := func(c *rocketmq.SubscriberConfig) {
		c.CloseTimeout = 100 * time.Millisecond
		c.GroupFunc = func(string) string { return group }
	}
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns, cfg)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	sent := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, pub.Publish(topic, sent))
	require.Equal(t, sent.UUID, receive(t, msgs).UUID)
	require.NoError(t, sub.Close()) // never acked: Close gives up after CloseTimeout

	sub2 := newSubscriber(t, ns, cfg)
	msgs2, err := sub2.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	again := receive(t, msgs2)
	assert.Equal(t, sent.UUID, again.UUID, "the same group must get the unacked message again")
	again.Ack()
}

func TestSubscribeContextCancelClosesChannel(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("ctx-cancel")
	sub := newSubscriber(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	cancel()
	select {
	case _, open := <-msgs:
		assert.False(t, open)
	case <-time.After(receiveTimeout):
		t.Fatal("channel not closed after the Subscribe context was cancelled")
	}
}

func TestBroadcastingDeliversToEveryConsumer(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("broadcast")
	group := "g-" + topic
	cfg := func(c *rocketmq.SubscriberConfig) {
		c.Model = rocketmq.Broadcasting
		c.GroupFunc = func(string) string { return group }
	}
	pub := newPublisher(t, ns)
	a, err := newSubscriber(t, ns, cfg).Subscribe(context.Background(), topic)
	require.NoError(t, err)
	b, err := newSubscriber(t, ns, cfg).Subscribe(context.Background(), topic)
	require.NoError(t, err)
	sent := message.NewMessage(watermill.NewUUID(), []byte("all"))
	require.NoError(t, pub.Publish(topic, sent))
	for _, ch := range []<-chan *message.Message{a, b} {
		msg := receive(t, ch)
		assert.Equal(t, sent.UUID, msg.UUID)
		msg.Ack()
	}
}

type failingUnmarshaler struct{ rocketmq.DefaultMarshaler }

func (f failingUnmarshaler) Unmarshal(ext *primitive.MessageExt) (*message.Message, error) {
	if string(ext.Body) == "garbage" {
		return nil, errors.New("cannot decode")
	}
	return f.DefaultMarshaler.Unmarshal(ext)
}

// A message the Unmarshaler rejects can never reach a handler; it is dead-lettered, not dropped.
func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("undecodable")
	group := "g-" + topic
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.NackMode = rocketmq.NackBrokerRetry
		c.GroupFunc = func(string) string { return group }
		c.Unmarshaler = failingUnmarshaler{}
	})
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	garbage := message.NewMessage(watermill.NewUUID(), []byte("garbage"))
	fine := message.NewMessage(watermill.NewUUID(), []byte("fine"))
	require.NoError(t, pub.Publish(topic, garbage, fine))

	got := receive(t, msgs)
	assert.Equal(t, fine.UUID, got.UUID)
	got.Ack()

	dead := receiveDeadLetter(t, ns, topic, group)
	assert.Equal(t, garbage.UUID, dead.UUID)
	dead.Ack()
}

// In orderly mode a Nack suspends the queue and redelivers the message in place; after
// MaxReconsumeTimes it goes to the DLQ and the queue moves on.
func TestOrderlyNackRetriesInPlaceThenDLQ(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("orderly-nack")
	group := "g-" + topic
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) {
		c.ShardingKeyFunc = func(string, *message.Message) string { return "k" }
	})
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.Orderly = true
		c.NackMode = rocketmq.NackBrokerRetry
		c.MaxReconsumeTimes = 1
		c.NackResendSleep = 10 * time.Millisecond
		c.GroupFunc = func(string) string { return group }
	})
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	bad := message.NewMessage(watermill.NewUUID(), []byte("bad"))
	next := message.NewMessage(watermill.NewUUID(), []byte("next"))
	require.NoError(t, pub.Publish(topic, bad, next))

	var times []int32
	for {
		msg := receive(t, msgs)
		if msg.UUID == next.UUID {
			msg.Ack()
			break
		}
		require.Equal(t, bad.UUID, msg.UUID, "the queue must not move past the failing message")
		times = append(times, reconsumeTimes(t, msg))
		msg.Nack()
	}
	assert.Equal(t, []int32{0, 1, 2}, times, "delivered until reconsume times exceed MaxReconsumeTimes")

	dead := receiveDeadLetter(t, ns, topic, group)
	assert.Equal(t, bad.UUID, dead.UUID)
	dead.Ack()
}

func TestOrderlyNegativeRetryDelayLevelDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("orderly-dlq")
	group := "g-" + topic
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) {
		c.ShardingKeyFunc = func(string, *message.Message) string { return "k" }
	})
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.Orderly = true
		c.NackMode = rocketmq.NackBrokerRetry
		c.MaxReconsumeTimes = 5
		c.NackResendSleep = 10 * time.Millisecond
		c.GroupFunc = func(string) string { return group }
	})
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	bad := message.NewMessage(watermill.NewUUID(), []byte("bad"))
	next := message.NewMessage(watermill.NewUUID(), []byte("next"))
	require.NoError(t, pub.Publish(topic, bad, next))

	first := receive(t, msgs)
	require.Equal(t, bad.UUID, first.UUID)
	first.Metadata.Set(rocketmq.MetadataRetryDelayLevel, "-1")
	first.Nack()
	second := receive(t, msgs)
	assert.Equal(t, next.UUID, second.UUID, "the dead-lettered message must not come back")
	second.Ack()

	dead := receiveDeadLetter(t, ns, topic, group)
	assert.Equal(t, bad.UUID, dead.UUID)
	dead.Ack()
}
