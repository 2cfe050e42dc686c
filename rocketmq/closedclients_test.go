package rocketmq_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// A consumer that shut down can stay a member of its group at the broker (RocketMQ 4.9.x
// handles a heartbeat sent just before the close after the close itself; minirmq reproduces that
// with KeepClosedConsumers). The next Subscriber of the group must still read every queue
// instead of leaving the ones it assigns to the stale member unread for two minutes.
func TestSubscriberIgnoresConsumersThisProcessClosed(t *testing.T) {
	if raceEnabled && os.Getenv("ROCKETBUS_RACE_BROKER_TESTS") == "" {
		t.Skip("rocketmq-client-go v2.1.2 races internally on Shutdown; runs in make test's race-free pass")
	}
	if os.Getenv(minirmq.EnvNameServer) != "" {
		t.Skip("needs minirmq's KeepClosedConsumers: the real broker's race cannot be forced")
	}
	srv := minirmq.Run(t)
	srv.KeepClosedConsumers(10 * time.Minute)
	ns := []string{srv.Addr()}
	topic, group := uniqueTopic("closed-members"), "g-"+watermill.NewShortUUID()
	require.NoError(t, srv.CreateTopic(topic, 4))
	groupOf := func(c *rocketmq.SubscriberConfig) { c.GroupFunc = func(string) string { return group } }
	pub := newPublisher(t, ns)

	first := newSubscriber(t, ns, groupOf)
	msgs, err := first.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("first"))))
	select {
	case m := <-msgs:
		m.Ack()
	case <-time.After(30 * time.Second):
		t.Fatal("the first subscriber got nothing")
	}
	require.NoError(t, first.Close())
	require.Len(t, srv.Consumers(group), 1, "the closed consumer is still listed, as after the broker's race")

	second := newSubscriber(t, ns, groupOf)
	msgs, err = second.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	const n = 40 // spread over the 4 queues by the publisher's round robin
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		m := message.NewMessage(watermill.NewUUID(), []byte("second"))
		want[m.UUID] = true
		require.NoError(t, pub.Publish(topic, m))
	}
	got := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case m := <-msgs:
			got[m.UUID] = true
			m.Ack()
		case <-deadline:
			t.Fatalf("got %d of %d messages: the queues assigned to the closed consumer were not read", len(got), n)
		}
	}
	assert.Equal(t, want, got)
	assert.Len(t, srv.Consumers(group), 2, "the stale member is still listed: the Subscriber read its queues anyway")
}
