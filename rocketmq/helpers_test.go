package rocketmq_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

var logger = watermill.NopLogger{}

func nameServers(t testing.TB) []string {
	return strings.Split(minirmq.NameServer(t), ";")
}

// uniqueTopic returns a topic name no earlier run used (the real broker keeps its state).
func uniqueTopic(prefix string) string {
	return prefix + "-" + watermill.NewShortUUID()
}

func newPublisher(t testing.TB, ns []string, mutate ...func(*rocketmq.PublisherConfig)) *rocketmq.Publisher {
	t.Helper()
	c := rocketmq.PublisherConfig{NameServers: ns}
	for _, m := range mutate {
		m(&c)
	}
	p, err := rocketmq.NewPublisher(c, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newSubscriber(t testing.TB, ns []string, mutate ...func(*rocketmq.SubscriberConfig)) *rocketmq.Subscriber {
	t.Helper()
	c := rocketmq.SubscriberConfig{
		NameServers:     ns,
		ConsumeFrom:     rocketmq.ConsumeFromFirst,
		AutoCreateTopic: true,
		CloseTimeout:    3 * time.Second,
	}
	for _, m := range mutate {
		m(&c)
	}
	s, err := rocketmq.NewSubscriber(c, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
