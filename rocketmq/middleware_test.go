package rocketmq_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// TestRouterMiddlewareEndToEnd runs Watermill's Retry, PoisonQueue and CorrelationID middleware
// on RocketMQ topics: a failing message is retried in process, then parked on a poison topic
// with the reason; a good message produces an output message carrying the input's
// correlation ID.
func TestRouterMiddlewareEndToEnd(t *testing.T) {
	t.Parallel()
	ns := nameServers(t)
	in, out, poison := uniqueTopic("mw-in"), uniqueTopic("mw-out"), uniqueTopic("mw-poison")
	pub := newPublisher(t, ns)
	sub := newSubscriber(t, ns)
	for _, topic := range []string{in, out, poison} {
		require.NoError(t, sub.SubscribeInitialize(topic))
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	require.NoError(t, err)
	poisonMW, err := middleware.PoisonQueue(pub, poison)
	require.NoError(t, err)
	router.AddMiddleware(
		middleware.CorrelationID,
		poisonMW,
		middleware.Retry{MaxRetries: 2, InitialInterval: 10 * time.Millisecond, Logger: logger}.Middleware,
	)

	var mu sync.Mutex
	attempts := map[string]int{}
	router.AddHandler("process", in, sub, out, pub, func(msg *message.Message) ([]*message.Message, error) {
		mu.Lock()
		attempts[msg.UUID]++
		mu.Unlock()
		if string(msg.Payload) == "fail" {
			return nil, errors.New("cannot process")
		}
		return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte("processed"))}, nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case <-time.After(receiveTimeout):
		t.Fatal("router did not start")
	}

	good := message.NewMessage(watermill.NewUUID(), []byte("ok"))
	middleware.SetCorrelationID("corr-good", good)
	bad := message.NewMessage(watermill.NewUUID(), []byte("fail"))
	middleware.SetCorrelationID("corr-bad", bad)
	require.NoError(t, pub.Publish(in, good, bad))

	readers := newSubscriber(t, ns, func(c *rocketmq.SubscriberConfig) {
		c.GroupFunc = func(topic string) string { return "reader-" + topic }
	})
	outMsgs, err := readers.Subscribe(ctx, out)
	require.NoError(t, err)
	poisonMsgs, err := readers.Subscribe(ctx, poison)
	require.NoError(t, err)

	produced := receive(t, outMsgs)
	assert.Equal(t, "processed", string(produced.Payload))
	assert.Equal(t, "corr-good", middleware.MessageCorrelationID(produced))
	produced.Ack()

	parked := receive(t, poisonMsgs)
	assert.Equal(t, bad.UUID, parked.UUID)
	assert.Equal(t, "fail", string(parked.Payload))
	assert.Equal(t, "corr-bad", middleware.MessageCorrelationID(parked))
	assert.Contains(t, parked.Metadata.Get(middleware.ReasonForPoisonedKey), "cannot process")
	assert.Equal(t, in, parked.Metadata.Get(middleware.PoisonedTopicKey))
	parked.Ack()

	mu.Lock()
	assert.Equal(t, 3, attempts[bad.UUID], "one attempt and two retries")
	assert.Equal(t, 1, attempts[good.UUID])
	mu.Unlock()

	require.NoError(t, router.Close())
	require.NoError(t, <-runErr)
}
