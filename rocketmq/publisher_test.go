package rocketmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

func TestPublisherRejectsBadInput(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	pub := newPublisher(t, ns)
	topic := uniqueTopic("bad-input")
	ok := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte("x")) }

	err := pub.Publish("", ok())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "topic name is empty")

	err = pub.Publish("has space", ok())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not allow")

	err = pub.Publish(topic, ok(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "message 1 of 2 is nil")

	withSep := ok()
	withSep.Metadata.Set("bad\u0001key", "v")
	err = pub.Publish(topic, withSep)
	require.ErrorIs(t, err, rocketmq.ErrInvalidMetadata)
	assert.Contains(t, err.Error(), withSep.UUID, "the error names the message")

	withSepValue := ok()
	withSepValue.Metadata.Set("key", "v\u0002")
	require.ErrorIs(t, pub.Publish(topic, withSepValue), rocketmq.ErrInvalidMetadata)

	huge := message.NewMessage(watermill.NewUUID(), bytes.Repeat([]byte("z"), rocketmq.DefaultMaxMessageSize+1))
	err = pub.Publish(topic, huge)
	require.ErrorIs(t, err, rocketmq.ErrMessageTooLarge)
	assert.Contains(t, err.Error(), "4194305 byte body")

	hugeProps := ok()
	hugeProps.Metadata.Set("big", strings.Repeat("p", 40000))
	require.ErrorIs(t, pub.Publish(topic, hugeProps), rocketmq.ErrMessageTooLarge)

	require.NoError(t, pub.Close())
	require.ErrorIs(t, pub.Publish(topic, ok()), rocketmq.ErrPublisherClosed)
	require.NoError(t, pub.Close(), "Close is idempotent")
}

// A Publish call with one bad message must not publish the good ones before it.
func TestPublishIsAllOrNothingForInvalidMessages(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("no-partial")
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) {
		c.ShardingKeyFunc = func(string, *message.Message) string { return "same-queue" }
	})
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.Orderly = true })
	require.NoError(t, sub.SubscribeInitialize(topic))

	good := message.NewMessage(watermill.NewUUID(), []byte("good"))
	bad := message.NewMessage(watermill.NewUUID(), []byte("bad"))
	bad.Metadata.Set("TAGS", "system property")
	require.ErrorIs(t, pub.Publish(topic, good, bad), rocketmq.ErrInvalidMetadata)

	sentinel := message.NewMessage(watermill.NewUUID(), []byte("sentinel"))
	require.NoError(t, pub.Publish(topic, sentinel))
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	first := receive(t, msgs)
	assert.Equal(t, sentinel.UUID, first.UUID, "the good message of the failed call was published")
	first.Ack()
}

func TestSubscriberRejectsBadInput(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.GroupFunc = func(topic string) string { return "group with spaces " + topic }
	})
	_, err := sub.Subscribe(context.Background(), "")
	assert.ErrorContains(t, err, "topic name is empty")
	assert.ErrorContains(t, sub.SubscribeInitialize("bad/topic"), "not allow")
	_, err = sub.Subscribe(context.Background(), "fine")
	assert.ErrorContains(t, err, "GroupFunc")

	require.NoError(t, sub.Close())
	_, err = sub.Subscribe(context.Background(), "fine")
	assert.ErrorIs(t, err, rocketmq.ErrSubscriberClosed)
	assert.ErrorIs(t, sub.SubscribeInitialize("fine"), rocketmq.ErrSubscriberClosed)
}

func TestNewPublisherAndSubscriberValidateConfig(t *testing.T) {
	_, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{}, nil)
	assert.ErrorContains(t, err, "NameServers is empty")
	_, err = rocketmq.NewSubscriber(rocketmq.SubscriberConfig{
		NameServers: []string{"127.0.0.1:9876"}, Model: rocketmq.Broadcasting, NackMode: rocketmq.NackBrokerRetry,
	}, nil)
	assert.ErrorContains(t, err, "Broadcasting")
}

func TestBatchPublishKeepsEveryMessage(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("batch")
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) { c.BatchMaxBytes = 8 * 1024 })
	sub := newSubscriber(t, ns)
	require.NoError(t, sub.SubscribeInitialize(topic))

	// 300 messages of ~100 bytes in chunks of 8 KiB, with a delayed and a sharded message in
	// the middle that must be sent on their own.
	var sent []*message.Message
	for i := 0; i < 300; i++ {
		msg := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("payload-%03d-%s", i, strings.Repeat("x", 80))))
		msg.Metadata.Set("i", fmt.Sprint(i))
		switch i {
		case 100:
			msg.Metadata.Set(rocketmq.MetadataDelayLevel, "1")
		case 200:
			msg.Metadata.Set(rocketmq.MetadataShardingKey, "k")
		}
		sent = append(sent, msg)
	}
	require.NoError(t, pub.Publish(topic, sent...))

	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	byUUID := map[string]*message.Message{}
	for len(byUUID) < len(sent) {
		msg := receive(t, msgs)
		byUUID[msg.UUID] = msg
		msg.Ack()
	}
	for _, s := range sent {
		got, ok := byUUID[s.UUID]
		require.True(t, ok, "message %s missing", s.Metadata.Get("i"))
		assert.Equal(t, s.Payload, got.Payload)
		assert.Equal(t, s.Metadata.Get("i"), got.Metadata.Get("i"))
	}
	assert.Equal(t, "k", byUUID[sent[200].UUID].Metadata.Get(rocketmq.MetadataShardingKey))
}

func TestLargeBodyRoundTrip(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("large")
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns)
	body := bytes.Repeat([]byte("0123456789abcdef"), 256*1024) // 4 MiB exactly, compressed by the client
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	sent := message.NewMessage(watermill.NewUUID(), body)
	require.NoError(t, pub.Publish(topic, sent))
	got := receive(t, msgs)
	assert.Equal(t, sent.UUID, got.UUID)
	assert.True(t, bytes.Equal(body, got.Payload))
	got.Ack()
}

// Watermill's delay component sets _watermill_delayed_for; the broker must hold the message for
// at least that long (1 s is delay level 1).
func TestWatermillDelayIsHonoured(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("delay")
	pub, err := delay.NewPublisher(newPublisher(t, ns), delay.PublisherConfig{})
	require.NoError(t, err)
	sub := newSubscriber(t, ns)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	msg := message.NewMessage(watermill.NewUUID(), []byte("later"))
	msg.SetContext(delay.WithContext(context.Background(), delay.For(time.Second)))
	published := time.Now()
	require.NoError(t, pub.Publish(topic, msg))

	got := receive(t, msgs)
	assert.Equal(t, msg.UUID, got.UUID)
	assert.GreaterOrEqual(t, time.Since(published), 900*time.Millisecond, "delivered before its delay")
	assert.NotEmpty(t, got.Metadata.Get("_watermill_delayed_for"), "delay metadata survives")
	got.Ack()
}

func TestPublishHonoursMessageContext(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	pub := newPublisher(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg := message.NewMessage(watermill.NewUUID(), []byte("x"))
	msg.SetContext(ctx)
	err := pub.Publish(uniqueTopic("ctx"), msg)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "context canceled"), "%v", err)
}

// With DeliveryTimeDelay the exact delivery time goes to the broker (RocketMQ 5.x timer
// messages, which minirmq implements); a 4.x broker ignores it.
func TestDeliveryTimeDelay(t *testing.T) {
	t.Parallel()
	if os.Getenv("ROCKETMQ_NAMESRV") != "" && os.Getenv("ROCKETMQ_5X") == "" {
		t.Skip("needs a RocketMQ 5.x broker (set ROCKETMQ_5X=1 with one)")
	}
	ns := nameServers(t)
	topic := uniqueTopic("deliver-at")
	pub, err := delay.NewPublisher(newPublisher(t, ns, func(c *rocketmq.PublisherConfig) { c.DeliveryTimeDelay = true }), delay.PublisherConfig{})
	require.NoError(t, err)
	sub := newSubscriber(t, ns)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	// 2.5 s is no delay level: a 4.x level would round it up to 5 s.
	msg := message.NewMessage(watermill.NewUUID(), []byte("at"))
	msg.SetContext(delay.WithContext(context.Background(), delay.For(2500*time.Millisecond)))
	published := time.Now()
	require.NoError(t, pub.Publish(topic, msg))
	got := receive(t, msgs)
	assert.Equal(t, msg.UUID, got.UUID)
	assert.GreaterOrEqual(t, time.Since(published), 2400*time.Millisecond, "delivered before its time")
	got.Ack()
}
