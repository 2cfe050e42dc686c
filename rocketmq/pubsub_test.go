package rocketmq_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// suiteConstructors builds the constructors tests.TestPubSub needs. Without an explicit group,
// the group comes from the default GroupFunc (one group per topic), so every Pub/Sub of a test
// shares it, as consumer groups do in production.
func suiteConstructors(ns []string, orderly bool) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	build := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{
			NameServers: ns,
			ShardingKeyFunc: func(string, *message.Message) string {
				if orderly {
					return "one-key"
				}
				return ""
			},
		}, logger)
		require.NoError(t, err)
		cfg := rocketmq.SubscriberConfig{
			NameServers:     ns,
			ConsumeFrom:     rocketmq.ConsumeFromFirst,
			AutoCreateTopic: true,
			Orderly:         orderly,
			CloseTimeout:    3 * time.Second,
		}
		if group != "" {
			cfg.GroupFunc = func(string) string { return group }
		}
		sub, err := rocketmq.NewSubscriber(cfg, logger)
		require.NoError(t, err)
		// Some tests of the suite close in a goroutine they do not wait for; Close waits for
		// a Close in progress, so the test ends only after the Subscriber really closed.
		t.Cleanup(func() {
			_ = pub.Close()
			_ = sub.Close()
		})
		return pub, sub
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) { return build(t, "") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return build(t, group) }
}

func TestPubSubConcurrent(t *testing.T) {
	ns := nameServers(t)
	pubSub, groupPubSub := suiteConstructors(ns, false)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups: true,
		Persistent:     true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "wm-" + string(tctx.TestID)
		},
	}, pubSub, groupPubSub)
}

func TestPubSubOrderly(t *testing.T) {
	ns := nameServers(t)
	pubSub, groupPubSub := suiteConstructors(ns, true)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:  true,
		Persistent:      true,
		GuaranteedOrder: true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return "wmo-" + string(tctx.TestID)
		},
	}, pubSub, groupPubSub)
}

// TestNewSubscriberReceivesOldMessages runs Watermill's test with Pub/Subs that give every
// Subscriber its own group starting from the first offset, RocketMQ's equivalent of a reader
// without a consumer group.
func TestNewSubscriberReceivesOldMessages(t *testing.T) {
	ns := nameServers(t)
	_, groupPubSub := suiteConstructors(ns, false)
	tests.TestNewSubscriberReceivesOldMessages(t, tests.TestContext{
		TestID:   tests.NewTestID(),
		Features: tests.Features{Persistent: true, NewSubscriberReceivesOldMessages: true},
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return groupPubSub(t, "own_"+watermill.NewShortUUID())
	})
}
