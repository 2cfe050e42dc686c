package rocketmq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func newTxPublisher(t *testing.T, ns []string, local, check func(*message.Message) rocketmq.TransactionState) *rocketmq.TransactionalPublisher {
	t.Helper()
	p, err := rocketmq.NewTransactionalPublisher(rocketmq.TransactionalPublisherConfig{
		PublisherConfig: rocketmq.PublisherConfig{
			NameServers: ns,
			GroupName:   "tx-" + watermill.NewShortUUID(),
			ShardingKeyFunc: func(string, *message.Message) string {
				return "one-queue"
			},
		},
		ExecuteLocalTransaction: local,
		CheckLocalTransaction:   check,
	}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// A rolled-back message never reaches subscribers; a committed one does. Both go to one queue
// and the subscriber is orderly, so a leaked rollback would arrive first.
func TestTransactionCommitAndRollback(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	topic := uniqueTopic("tx")
	never := func(*message.Message) rocketmq.TransactionState { return rocketmq.TransactionUnknown }
	pub := newTxPublisher(t, ns, nil, never)
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.Orderly = true })
	require.NoError(t, sub.SubscribeInitialize(topic))

	rolledBack := message.NewMessage(watermill.NewUUID(), []byte("rollback"))
	var sawLocal *message.Message
	state, err := pub.PublishInTransaction(topic, rolledBack, func(m *message.Message) rocketmq.TransactionState {
		sawLocal = m
		return rocketmq.TransactionRollback
	})
	require.ErrorIs(t, err, rocketmq.ErrTransactionRolledBack)
	assert.Equal(t, rocketmq.TransactionRollback, state)
	assert.Same(t, rolledBack, sawLocal, "the local transaction gets the published message")

	committed := message.NewMessage(watermill.NewUUID(), []byte("commit"))
	committed.Metadata.Set("order", "42")
	state, err = pub.PublishInTransaction(topic, committed, func(*message.Message) rocketmq.TransactionState {
		return rocketmq.TransactionCommit
	})
	require.NoError(t, err)
	assert.Equal(t, rocketmq.TransactionCommit, state)

	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	got := receive(t, msgs)
	assert.Equal(t, committed.UUID, got.UUID, "the rolled-back message was delivered")
	assert.Equal(t, "42", got.Metadata.Get("order"))
	got.Ack()

	require.NoError(t, pub.Close())
	_, err = pub.PublishInTransaction(topic, committed, nil)
	require.ErrorIs(t, err, rocketmq.ErrPublisherClosed)
}

// An unknown outcome is resolved by the broker's check-back. minirmq runs the checks ten times
// faster; a real broker checks after about a minute.
func TestTransactionCheckBack(t *testing.T) {
	t.Parallel()
	ns := nameServers(t, minirmq.WithTimeScale(0.1))
	topic := uniqueTopic("tx-check")
	var mu sync.Mutex
	var checked []*message.Message
	check := func(m *message.Message) rocketmq.TransactionState {
		mu.Lock()
		defer mu.Unlock()
		checked = append(checked, m)
		return rocketmq.TransactionCommit
	}
	pub := newTxPublisher(t, ns, func(*message.Message) rocketmq.TransactionState { return rocketmq.TransactionUnknown }, check)
	sub := newSubscriber(t, ns)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)

	sent := message.NewMessage(watermill.NewUUID(), []byte("pending"))
	sent.Metadata.Set("k", "v")
	require.NoError(t, pub.Publish(topic, sent), "unknown is not an error")

	select {
	case got := <-msgs:
		assert.Equal(t, sent.UUID, got.UUID)
		got.Ack()
	case <-time.After(150 * time.Second):
		t.Fatal("the checked-back message was not committed")
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, checked)
	assert.Equal(t, sent.UUID, checked[0].UUID, "check-back gets the Watermill message")
	assert.Equal(t, "v", checked[0].Metadata.Get("k"))
}

func TestTransactionalPublisherConfig(t *testing.T) {
	_, err := rocketmq.NewTransactionalPublisher(rocketmq.TransactionalPublisherConfig{
		PublisherConfig: rocketmq.PublisherConfig{NameServers: []string{"127.0.0.1:9876"}},
	}, nil)
	assert.ErrorContains(t, err, "CheckLocalTransaction is nil")
}
