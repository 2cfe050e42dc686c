package testkit

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
	"github.com/rocketbus/rocketbus/testkit/rmqcontainer"
)

// EnvRocketMQMode picks where RocketMQ comes from: "minirmq" (in process), "container"
// (testkit/rmqcontainer, image from EnvRocketMQImage) or "external" ($ROCKETMQ_NAMESRV). Unset
// means external when ROCKETMQ_NAMESRV is set, minirmq otherwise.
const EnvRocketMQMode = "ROCKETMQ_TESTKIT"

// EnvRocketMQImage is the image the container mode runs, for example apache/rocketmq:4.9.4;
// unset means cmd/minirmq built into a local image (nothing is pulled). Where testcontainers'
// reaper image cannot be pulled, also set TESTCONTAINERS_RYUK_DISABLED=true.
const EnvRocketMQImage = "ROCKETMQ_IMAGE"

var quietClientLog sync.Once

// RocketMQ returns the RocketMQ backend: this repository's rocketmq package on minirmq, on
// the broker at $ROCKETMQ_NAMESRV, or in a container (see EnvRocketMQMode). A topic has four
// queues and is created before Topic returns. Every group name is derived from the group and
// the topic, since RocketMQ wants all consumers of a group on the same topics; a fan-out
// subscriber is a group of its own. New groups start at the first message of each queue, so a
// group also receives messages published before it existed. Delivery is at least once: a
// rebalance while members join may hand a message to two members.
//
// Under the race detector the backend skips unless ROCKETBUS_RACE_BROKER_TESTS=1:
// rocketmq-client-go v2.1.2 races with itself (its first rebalance writes
// SubscriptionData.SubVersion while the route refresh started with the client clones it; Shutdown
// races its pull and rebalance goroutines), and the detector reports that in nearly every run.
// None of those reports involves testkit or rocketbus memory; run without -race to cover
// RocketMQ.
func RocketMQ(tb testing.TB) Backend {
	tb.Helper()
	if raceEnabled && os.Getenv("ROCKETBUS_RACE_BROKER_TESTS") != "1" {
		tb.Skip("testkit: rocketmq skipped under -race: rocketmq-client-go v2.1.2 has data races of its own " +
			"(SubscriptionData.SubVersion, Shutdown vs pulls); run without -race, or set ROCKETBUS_RACE_BROKER_TESTS=1")
	}
	quietClientLog.Do(func() {
		// The client logs every rebalance and pull at info level to stdout.
		if os.Getenv("TESTKIT_LOG") != "debug" {
			rlog.SetLogLevel("error")
		}
	})
	b := &rocketMQBackend{nameServers: rocketMQNameServers(tb)}
	admin, err := rocketmq.NewSubscriber(b.subscriberConfig(func(string) string { return "tk_admin" }), logger())
	if err != nil {
		tb.Fatalf("testkit: RocketMQ subscriber for creating topics: %v", err)
	}
	closeOnCleanup(tb, "RocketMQ topic creator", admin)
	b.admin = admin
	return b
}

// rocketMQNameServers returns the name server addresses for the test, starting a broker when
// the mode asks for one.
func rocketMQNameServers(tb testing.TB) []string {
	tb.Helper()
	mode := os.Getenv(EnvRocketMQMode)
	if mode == "" {
		mode = "minirmq"
		if os.Getenv(minirmq.EnvNameServer) != "" {
			mode = "external"
		}
	}
	switch mode {
	case "minirmq":
		return []string{minirmq.Run(tb).Addr()}
	case "container":
		// RunTest skips without a Docker engine (fails with CI=true) and terminates the
		// container in Cleanup.
		c := rmqcontainer.RunTest(tb, os.Getenv(EnvRocketMQImage))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		addr, err := c.NameServer(ctx)
		if err != nil {
			tb.Fatalf("testkit: name server address of the RocketMQ container: %v", err)
		}
		return []string{addr}
	case "external":
		env := os.Getenv(minirmq.EnvNameServer)
		if env == "" {
			tb.Fatalf("testkit: %s=external needs %s (host:port, ';' between several)", EnvRocketMQMode, minirmq.EnvNameServer)
		}
		addrs := strings.Split(env, ";")
		for _, addr := range addrs {
			conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
			if err != nil {
				unavailable(tb, "RocketMQ name server", addr, err)
			}
			_ = conn.Close()
		}
		return addrs
	default:
		tb.Fatalf("testkit: %s=%q is not a mode (want minirmq, container or external)", EnvRocketMQMode, mode)
		return nil
	}
}

type rocketMQBackend struct {
	nameServers []string
	admin       *rocketmq.Subscriber
}

func (b *rocketMQBackend) Name() string { return "rocketmq" }

// Topic fits RocketMQ's rule ^[%|a-zA-Z0-9_-]+$, at most 127 characters, and leaves room for
// the group names derived from it (at most 255).
func (b *rocketMQBackend) Topic(tb testing.TB) string {
	tb.Helper()
	topic := newTopicName(tb, 100)
	if err := b.admin.SubscribeInitialize(topic); err != nil {
		tb.Fatalf("testkit: creating RocketMQ topic %s: %v", topic, err)
	}
	return topic
}

func (b *rocketMQBackend) subscriberConfig(group func(topic string) string) rocketmq.SubscriberConfig {
	return rocketmq.SubscriberConfig{
		NameServers:     b.nameServers,
		GroupFunc:       group,
		ConsumeFrom:     rocketmq.ConsumeFromFirst,
		AutoCreateTopic: true,
		CloseTimeout:    10 * time.Second,
	}
}

func (b *rocketMQBackend) Publisher(tb testing.TB) message.Publisher {
	tb.Helper()
	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{NameServers: b.nameServers}, logger())
	if err != nil {
		tb.Fatalf("testkit: RocketMQ publisher: %v", err)
	}
	closeOnCleanup(tb, "RocketMQ publisher", pub)
	return pub
}

func (b *rocketMQBackend) Subscriber(tb testing.TB) message.Subscriber {
	id := randomID(12)
	return b.newSubscriber(tb, func(topic string) string { return "tk_fanout_" + id + "_" + topic })
}

func (b *rocketMQBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	group = rocketMQName(group)
	return b.newSubscriber(tb, func(topic string) string { return group + "_" + topic })
}

func (b *rocketMQBackend) newSubscriber(tb testing.TB, group func(topic string) string) message.Subscriber {
	tb.Helper()
	sub, err := rocketmq.NewSubscriber(b.subscriberConfig(group), logger())
	if err != nil {
		tb.Fatalf("testkit: RocketMQ subscriber: %v", err)
	}
	closeOnCleanup(tb, "RocketMQ subscriber", sub)
	return sub
}

func (b *rocketMQBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:                   true,
		Persistent:                       true,
		NewSubscriberReceivesOldMessages: true,
	}
}

// rocketMQName makes a caller's group name valid for RocketMQ, [a-zA-Z0-9_-] ('%' and '|' are
// allowed but mean namespaces and retry topics), and short enough that group + "_" + topic
// stays within RocketMQ's 255 characters. Equal names map to equal names, so members still meet.
func rocketMQName(s string) string {
	s = sanitizeName(s)
	if len(s) > 120 {
		h := fnv.New64a()
		h.Write([]byte(s))
		s = fmt.Sprintf("%s_%016x", s[:100], h.Sum64())
	}
	return s
}
