package minirmq_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSendModesAndPushConsume(t *testing.T) {
	tg := newTarget(t)
	topic := unique("T")
	tg.createTopic(t, topic, 4)
	p := tg.producer(t)
	ctx := context.Background()

	syncMsg := primitive.NewMessage(topic, []byte("sync"))
	syncMsg.WithTag("TagA")
	syncMsg.WithKeys([]string{"k1", "k2"})
	syncMsg.WithProperty("color", "blue")
	res, err := p.SendSync(ctx, syncMsg)
	require.NoError(t, err)
	require.Equal(t, primitive.SendOK, res.Status)
	assert.Len(t, res.OffsetMsgID, 32, "offset message id is 16 bytes in hex")
	assert.NotEmpty(t, res.MsgID)

	var asyncDone sync.WaitGroup
	asyncDone.Add(1)
	var asyncErr error
	require.NoError(t, p.SendAsync(ctx, func(_ context.Context, r *primitive.SendResult, err error) {
		asyncErr = err
		asyncDone.Done()
	}, primitive.NewMessage(topic, []byte("async"))))
	asyncDone.Wait()
	require.NoError(t, asyncErr)

	require.NoError(t, p.SendOneWay(ctx, primitive.NewMessage(topic, []byte("oneway"))))

	batch := []*primitive.Message{
		primitive.NewMessage(topic, []byte("batch-0")),
		primitive.NewMessage(topic, []byte("batch-1")),
		primitive.NewMessage(topic, []byte("batch-2")),
	}
	res, err = p.SendSync(ctx, batch...)
	require.NoError(t, err)
	assert.Equal(t, primitive.SendOK, res.Status)
	assert.Len(t, strings.Split(res.OffsetMsgID, ","), 3, "a batch answers one offset id per message")

	var got received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&got))
	waitFor(t, "all six messages", 30*time.Second, func() bool { return got.len() >= 6 })
	assert.Equal(t, map[string]int{"sync": 1, "async": 1, "oneway": 1, "batch-0": 1, "batch-1": 1, "batch-2": 1}, got.bodies())
	for _, m := range got.snapshot() {
		if string(m.Body) != "sync" {
			continue
		}
		assert.Equal(t, "TagA", m.GetTags())
		assert.Equal(t, "k1 k2", m.GetKeys())
		assert.Equal(t, "blue", m.GetProperty("color"))
		assert.Equal(t, res.MessageQueue.Topic, m.Topic)
		assert.NotEmpty(t, m.MsgId)
		assert.Len(t, m.OffsetMsgId, 32)
	}
}

func TestLargeBodyIsCompressedAndRestored(t *testing.T) {
	tg := newTarget(t)
	topic := unique("T")
	tg.createTopic(t, topic, 1)
	body := make([]byte, 64<<10) // the client zlib-compresses bodies over 4 KiB
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	sendOne(t, tg, topic, body)
	var got received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&got))
	waitFor(t, "the large message", 30*time.Second, func() bool { return got.len() == 1 })
	assert.Equal(t, body, got.snapshot()[0].Body)
}

func sendOne(t *testing.T, tg *target, topic string, body []byte) {
	t.Helper()
	res, err := tg.producer(t).SendSync(context.Background(), primitive.NewMessage(topic, body))
	require.NoError(t, err)
	require.Equal(t, primitive.SendOK, res.Status)
}

func TestClusteringSharesQueuesAcrossConsumers(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 4)
	var a, b received
	tg.pushConsumer(t, group, topic, "*", collectAll(&a))
	tg.pushConsumer(t, group, topic, "*", collectAll(&b))
	// Both consumers must be registered before sending so the queues are split between them.
	if tg.srv != nil {
		waitFor(t, "two consumers in the group", 10*time.Second, func() bool { return len(tg.srv.Consumers(group)) == 2 })
	}
	time.Sleep(2 * time.Second) // let the notify-triggered rebalance settle on both clients
	want := sendN(t, tg.producer(t), topic, 40, nil)
	waitFor(t, "every message once", 60*time.Second, func() bool { return a.len()+b.len() >= len(want) })
	all := a.bodies()
	for k, v := range b.bodies() {
		all[k] += v
	}
	for _, body := range want {
		assert.Equal(t, 1, all[body], "message %s delivered once across the group", body)
	}
	assert.NotZero(t, a.len(), "first consumer got a share")
	assert.NotZero(t, b.len(), "second consumer got a share")
}

func TestBroadcastingDeliversToEveryConsumer(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	var a, b received
	tg.pushConsumer(t, group, topic, "*", collectAll(&a), consumer.WithConsumerModel(consumer.BroadCasting))
	tg.pushConsumer(t, group, topic, "*", collectAll(&b), consumer.WithConsumerModel(consumer.BroadCasting))
	time.Sleep(time.Second)
	want := sendN(t, tg.producer(t), topic, 10, nil)
	waitFor(t, "both consumers to get everything", 60*time.Second, func() bool { return a.len() >= 10 && b.len() >= 10 })
	for _, body := range want {
		assert.Equal(t, 1, a.bodies()[body])
		assert.Equal(t, 1, b.bodies()[body])
	}
}

func TestOffsetsResumeAfterConsumerRestart(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	p := tg.producer(t)
	first := sendN(t, p, topic, 10, nil)

	var got1 received
	c1 := tg.pushConsumer(t, group, topic, "*", collectAll(&got1))
	waitFor(t, "first batch", 30*time.Second, func() bool { return got1.len() >= len(first) })
	require.NoError(t, c1.Shutdown()) // persists offsets

	second := sendN(t, p, topic+"", 5, func(i int, m *primitive.Message) { m.Body = []byte("second-" + string(rune('a'+i))) })
	var got2 received
	tg.pushConsumer(t, group, topic, "*", collectAll(&got2))
	waitFor(t, "second batch", 30*time.Second, func() bool { return got2.len() >= len(second) })
	time.Sleep(500 * time.Millisecond)
	for body := range got2.bodies() {
		assert.NotContains(t, first, body, "an acked message came back after restart")
	}
	assert.Len(t, got2.bodies(), 5)
}

func TestTagFilter(t *testing.T) {
	tg := newTarget(t)
	topic := unique("T")
	tg.createTopic(t, topic, 2)
	sendN(t, tg.producer(t), topic, 30, func(i int, m *primitive.Message) {
		m.WithTag([]string{"TagA", "TagB", "TagC"}[i%3])
	})
	var ab, all received
	tg.pushConsumer(t, unique("G"), topic, "TagA || TagB", collectAll(&ab))
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&all))
	waitFor(t, "filtered and unfiltered", 30*time.Second, func() bool { return ab.len() >= 20 && all.len() >= 30 })
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 20, ab.len())
	for _, m := range ab.snapshot() {
		assert.Contains(t, []string{"TagA", "TagB"}, m.GetTags())
	}
	assert.Equal(t, 30, all.len())
}
