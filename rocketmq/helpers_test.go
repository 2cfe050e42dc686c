package rocketmq_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

var logger = watermill.NopLogger{}

// nameServers returns the broker to test against: $ROCKETMQ_NAMESRV or a fresh minirmq.
//
// Under the race detector the broker-backed tests are skipped unless
// ROCKETBUS_RACE_BROKER_TESTS=1: rocketmq-client-go v2.1.2 has data races of its own between
// Shutdown and its rebalance and pull goroutines (rmqClient.close, processQueue.msgCh,
// SubscriptionData), which the detector reports in nearly every test that stops a consumer.
// None of the reports involves this package's memory; run with the variable set to check that.
func nameServers(t testing.TB, opts ...minirmq.Option) []string {
	t.Helper()
	if raceEnabled && os.Getenv("ROCKETBUS_RACE_BROKER_TESTS") == "" {
		t.Skip("rocketmq-client-go v2.1.2 races internally on Shutdown; set ROCKETBUS_RACE_BROKER_TESTS=1 to run broker tests under -race")
	}
	return strings.Split(minirmq.NameServer(t, opts...), ";")
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
