package rocketmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func newAdmin(t *testing.T, ns []string) *rocketmq.Admin {
	t.Helper()
	a, err := rocketmq.NewAdmin(rocketmq.AdminConfig{NameServers: ns})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// The admin calls drive no push consumer, so they run under the race detector too.
func TestAdminTopicsOffsetsAndLookups(t *testing.T) {
	ns := strings.Split(minirmq.NameServer(t), ";")
	a := newAdmin(t, ns)
	ctx := context.Background()
	topic := uniqueTopic("admin")

	require.NoError(t, a.CreateTopic(ctx, topic, rocketmq.WithQueues(2)))
	route, err := a.Route(ctx, topic)
	require.NoError(t, err)
	require.Len(t, route.Queues, 1)
	assert.Equal(t, 2, route.Queues[0].ReadQueues)
	assert.Equal(t, 6, route.Queues[0].Perm)
	topics, err := a.Topics(ctx)
	require.NoError(t, err)
	assert.Contains(t, topics, topic)

	pub := newPublisher(t, ns)
	for i := 0; i < 5; i++ {
		m := message.NewMessage(watermill.NewUUID(), []byte("payload"))
		m.Metadata.Set(rocketmq.MetadataKeys, "order-"+string(rune('a'+i))+" common")
		require.NoError(t, pub.Publish(topic, m))
	}
	offsets, err := a.QueueOffsets(ctx, topic)
	require.NoError(t, err)
	require.Len(t, offsets, 2)
	var stored int64
	for _, q := range offsets {
		stored += q.Max - q.Min
	}
	assert.EqualValues(t, 5, stored)

	// The real broker indexes keys asynchronously.
	var byKey []*primitive.MessageExt
	require.Eventually(t, func() bool {
		msgs, err := a.MessagesByKey(ctx, topic, "order-c", 10)
		require.NoError(t, err)
		byKey = msgs
		return len(msgs) == 1
	}, 10*time.Second, 50*time.Millisecond)
	common, err := a.MessagesByKey(ctx, topic, "common", 10)
	require.NoError(t, err)
	assert.Len(t, common, 5, "every key of a message is indexed")

	byID, err := a.MessageByOffsetID(ctx, byKey[0].OffsetMsgId)
	require.NoError(t, err)
	assert.Equal(t, byKey[0].MsgId, byID.MsgId)
	assert.Equal(t, "payload", string(byID.Body))
	byUniq, err := a.MessageByUniqueID(ctx, topic, byKey[0].MsgId)
	require.NoError(t, err)
	assert.Equal(t, byKey[0].OffsetMsgId, byUniq.OffsetMsgId)

	require.NoError(t, a.DeleteTopic(ctx, topic))
	_, err = a.Route(ctx, topic)
	assert.ErrorIs(t, err, rocketmq.ErrTopicNotFound)
}

func TestAdminBadInput(t *testing.T) {
	_, err := rocketmq.NewAdmin(rocketmq.AdminConfig{})
	assert.ErrorContains(t, err, "NameServers is empty")
	_, err = rocketmq.NewAdmin(rocketmq.AdminConfig{NameServers: []string{"no-port"}})
	assert.ErrorContains(t, err, "not host:port")

	a := newAdmin(t, strings.Split(minirmq.NameServer(t), ";"))
	ctx := context.Background()
	assert.ErrorContains(t, a.CreateTopic(ctx, ""), "topic is empty")
	assert.ErrorContains(t, a.CreateTopic(ctx, uniqueTopic("t"), rocketmq.WithQueues(0)), "queue counts must be positive")
	_, err = a.MessageByOffsetID(ctx, "xyz")
	assert.ErrorContains(t, err, "not an offset message id")
	_, err = a.GroupProgress(ctx, "", "t")
	assert.ErrorContains(t, err, "consumer group is empty")
	_, err = a.Route(ctx, uniqueTopic("missing"))
	assert.True(t, errors.Is(err, rocketmq.ErrTopicNotFound), "%v", err)

	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")
	_, err = a.Topics(ctx)
	assert.ErrorContains(t, err, "closed")
}

func TestAdminGroupProgressClientsAndReset(t *testing.T) {
	ns := nameServers(t) // drives a push consumer: skipped under -race (client races)
	a := newAdmin(t, ns)
	ctx := context.Background()
	topic, group := uniqueTopic("progress"), "g-"+watermill.NewShortUUID()
	require.NoError(t, a.CreateTopic(ctx, topic, rocketmq.WithQueues(2)))
	before := time.Now().Add(-time.Minute)
	pub := newPublisher(t, ns)
	publish := func(n int) {
		for i := 0; i < n; i++ {
			require.NoError(t, pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x"))))
		}
	}
	publish(6)

	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.GroupFunc = func(string) string { return group } })
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	for i := 0; i < 6; i++ {
		select {
		case m := <-msgs:
			m.Ack()
		case <-time.After(30 * time.Second):
			t.Fatal("messages not delivered")
		}
	}
	clients, err := a.GroupClients(ctx, group)
	require.NoError(t, err)
	assert.Len(t, clients, 1, "the subscriber is online")
	require.NoError(t, sub.Close()) // commits the final offsets

	require.Eventually(t, func() bool {
		p, err := a.GroupProgress(ctx, group, topic)
		return err == nil && len(p.Queues) == 2 && p.Lag == 0
	}, 30*time.Second, 100*time.Millisecond, "everything acked is committed")
	require.Eventually(t, func() bool {
		c, err := a.GroupClients(ctx, group)
		return err == nil && len(c) == 0
	}, 10*time.Second, 100*time.Millisecond, "no client once the subscriber closed")

	publish(4)
	p, err := a.GroupProgress(ctx, group, topic)
	require.NoError(t, err)
	assert.EqualValues(t, 4, p.Lag, "the backlog")

	reset, err := a.ResetOffsets(ctx, group, topic, before)
	require.NoError(t, err)
	require.Len(t, reset, 2)
	for _, q := range reset {
		assert.Zero(t, q.ConsumerOffset, "a time before every message resets to the start")
	}
	p, err = a.GroupProgress(ctx, group, topic)
	require.NoError(t, err)
	assert.EqualValues(t, 10, p.Lag, "everything is to be consumed again")
}
