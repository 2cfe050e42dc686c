package rocketmq_test

import (
	"context"
	"os"
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

// aclBroker is minirmq with ACL on, or the ACL-enabled broker named by ROCKETMQ_ACL_NAMESRV with
// the account in ROCKETMQ_ACL_ACCESS_KEY / ROCKETMQ_ACL_SECRET_KEY.
func aclBroker(t *testing.T) ([]string, primitive.Credentials) {
	t.Helper()
	nameServers(t) // skips under -race like every test that drives the push consumer
	if addr := os.Getenv("ROCKETMQ_ACL_NAMESRV"); addr != "" {
		return []string{addr}, primitive.Credentials{AccessKey: os.Getenv("ROCKETMQ_ACL_ACCESS_KEY"),
			SecretKey: os.Getenv("ROCKETMQ_ACL_SECRET_KEY")}
	}
	creds := primitive.Credentials{AccessKey: "rocketbus", SecretKey: "s3cret-key"}
	srv := minirmq.Run(t, minirmq.WithACL(minirmq.Account{AccessKey: creds.AccessKey, SecretKey: creds.SecretKey}))
	return []string{srv.Addr()}, creds
}

func TestCredentialsFlowEndToEnd(t *testing.T) {
	ns, creds := aclBroker(t)
	topic := uniqueTopic("acl")

	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.Credentials = creds })
	msgs, err := sub.Subscribe(context.Background(), topic) // creates the topic: signed admin requests
	require.NoError(t, err)

	anonymous := newPublisher(t, ns)
	err = anonymous.Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("denied")))
	require.Error(t, err, "a publisher without credentials is refused")

	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) { c.Credentials = creds })
	sent := message.NewMessage(watermill.NewUUID(), []byte("signed"))
	require.NoError(t, pub.Publish(topic, sent))

	select {
	case got := <-msgs:
		assert.Equal(t, sent.UUID, got.UUID)
		assert.Equal(t, "signed", string(got.Payload))
		got.Ack()
	case <-time.After(30 * time.Second):
		t.Fatal("the signed message was not delivered")
	}
	select {
	case extra := <-msgs:
		t.Fatalf("unexpected message %q: the refused publish was stored", extra.Payload)
	case <-time.After(500 * time.Millisecond):
	}
}

// Orderly consumers release queue locks with their own requests: signed too.
func TestCredentialsOrderly(t *testing.T) {
	ns, creds := aclBroker(t)
	topic := uniqueTopic("acl-orderly")
	sub := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) { c.Credentials = creds; c.Orderly = true })
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	pub := newPublisher(t, ns, func(c *rocketmq.PublisherConfig) { c.Credentials = creds })
	for i := 0; i < 5; i++ {
		m := message.NewMessage(watermill.NewUUID(), []byte{byte('0' + i)})
		m.Metadata.Set(rocketmq.MetadataShardingKey, "order-1")
		require.NoError(t, pub.Publish(topic, m))
	}
	for i := 0; i < 5; i++ {
		select {
		case got := <-msgs:
			assert.Equal(t, string(rune('0'+i)), string(got.Payload), "in order")
			got.Ack()
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
}
