package rocketmq_test

import (
	"os"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The client logs every rebalance and pull at info level.
	rlog.SetLogLevel("error")
	if os.Getenv("ROCKETMQ_TEST_LOG") != "" {
		rlog.SetLogLevel("info")
	}
	goleak.VerifyTestMain(m, clientGoroutines()...)
}

// clientGoroutines lists goroutines rocketmq-client-go v2.1.2 leaves behind after Shutdown
// (statistics tickers, long-polling pulls waiting out their 20 s timeout, sleeps of up to
// ConsumeTimeout, the rebalance kicked off by Start, its cache janitor). None of them belongs to
// this package; ours (subscription runners, delivery callbacks) all end before Close returns.
func clientGoroutines() []goleak.Option {
	const client = "github.com/apache/rocketmq-client-go/v2/"
	return []goleak.Option{
		goleak.IgnoreAnyFunction(client + "primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client + "consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client + "internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
		// Watermill's test suite merges subscribers with a multiplier whose forwarding
		// goroutines block forever when a test stops reading (TestPublishSubscribeInOrder
		// closes its subscriber through a defer evaluated at once).
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
		// TestReconnect ranges over a channel it never closes.
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/pubsub/tests.TestReconnect.func2"),
	}
}
