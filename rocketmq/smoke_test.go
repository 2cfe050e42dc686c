package rocketmq_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

func TestPublishSubscribeRoundTrip(t *testing.T) {
	ns := nameServers(t)
	topic := uniqueTopic("smoke")
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns)
	require.NoError(t, sub.SubscribeInitialize(topic))

	sent := message.NewMessage(watermill.NewUUID(), []byte("hello"))
	sent.Metadata.Set("k", "v")
	sent.Metadata.Set(rocketmq.MetadataTags, "tagA")
	sent.Metadata.Set(rocketmq.MetadataKeys, "key1 key2")
	require.NoError(t, pub.Publish(topic, sent))

	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	select {
	case got := <-msgs:
		assert.Equal(t, sent.UUID, got.UUID)
		assert.Equal(t, "hello", string(got.Payload))
		assert.Equal(t, "v", got.Metadata.Get("k"))
		assert.Equal(t, "tagA", got.Metadata.Get(rocketmq.MetadataTags))
		ctx := got.Context()
		id, ok := rocketmq.MsgIDFromCtx(ctx)
		assert.True(t, ok)
		assert.NotEmpty(t, id)
		tags, _ := rocketmq.TagsFromCtx(ctx)
		assert.Equal(t, "tagA", tags)
		keys, _ := rocketmq.KeysFromCtx(ctx)
		assert.Equal(t, "key1 key2", keys)
		tp, _ := rocketmq.TopicFromCtx(ctx)
		assert.Equal(t, topic, tp)
		group, _ := rocketmq.ConsumerGroupFromCtx(ctx)
		assert.Equal(t, "rocketbus_"+topic, group)
		born, _ := rocketmq.BornTimestampFromCtx(ctx)
		assert.WithinDuration(t, time.Now(), born, time.Minute)
		rt, ok := rocketmq.ReconsumeTimesFromCtx(ctx)
		assert.True(t, ok)
		assert.Zero(t, rt)
		_, ok = rocketmq.QueueIDFromCtx(ctx)
		assert.True(t, ok)
		_, ok = rocketmq.QueueOffsetFromCtx(ctx)
		assert.True(t, ok)
		got.Ack()
	case <-time.After(30 * time.Second):
		t.Fatal("no message")
	}
	require.NoError(t, sub.Close())
	_, open := <-msgs
	assert.False(t, open)
	require.NoError(t, sub.Close(), "Close is idempotent")
}
