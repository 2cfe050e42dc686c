package testkit

import (
	"errors"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultAMQPURI is the RabbitMQ used when AMQP_URI is unset.
const DefaultAMQPURI = "amqp://guest:guest@127.0.0.1:5672/"

// RabbitMQ returns the RabbitMQ backend (watermill-amqp/v3) at $AMQP_URI, default
// DefaultAMQPURI, in the adapter's durable pub/sub layout: a topic is a durable fanout exchange;
// a group is a durable queue "<topic>_<group>" bound to it, whose members compete for its
// messages; a fan-out subscriber gets an exclusive, auto-deleted queue of its own. The exchange
// routes only to queues bound at publish time, so a message published before a group's first
// Subscribe (or to a topic nobody subscribes to) is dropped. Publish waits for RabbitMQ's
// publisher confirm. Exchanges and group queues are deleted when the test ends.
func RabbitMQ(tb testing.TB) Backend {
	tb.Helper()
	uri := os.Getenv("AMQP_URI")
	if uri == "" {
		uri = DefaultAMQPURI
	}
	shown := uri
	if u, err := url.Parse(uri); err == nil {
		shown = u.Redacted()
	}
	conn, err := amqp.DialConfig(uri, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		unavailable(tb, "RabbitMQ", shown, err)
	}
	b := &amqpBackend{uri: uri, exchanges: map[string]bool{}, queues: map[string]bool{}}
	tb.Cleanup(func() {
		// Runs after every publisher and subscriber of the test is closed (cleanups are LIFO).
		defer conn.Close()
		if err := b.deleteTopology(conn); err != nil {
			tb.Errorf("testkit: deleting RabbitMQ exchanges and queues: %v", err)
		}
	})
	return b
}

type amqpBackend struct {
	uri string

	mu        sync.Mutex
	exchanges map[string]bool
	queues    map[string]bool
}

func (b *amqpBackend) Name() string { return "rabbitmq" }

func (b *amqpBackend) Topic(tb testing.TB) string {
	return newTopicName(tb, 127) // the exchange is declared by the first publish or subscribe
}

// config is the adapter's durable pub/sub config, with every exchange and queue name recorded
// for deletion at the end of the test.
func (b *amqpBackend) config(queueName wamqp.QueueNameGenerator) wamqp.Config {
	cfg := wamqp.NewDurablePubSubConfig(b.uri, queueName)
	cfg.Exchange.GenerateName = func(topic string) string {
		b.mu.Lock()
		b.exchanges[topic] = true
		b.mu.Unlock()
		return topic
	}
	return cfg
}

func (b *amqpBackend) Publisher(tb testing.TB) message.Publisher {
	tb.Helper()
	cfg := b.config(nil)
	cfg.Publish.ConfirmDelivery = true
	// Without a pool the adapter opens and closes a channel for every Publish call.
	cfg.Publish.ChannelPoolSize = 4
	pub, err := wamqp.NewPublisher(cfg, logger())
	if err != nil {
		tb.Fatalf("testkit: RabbitMQ publisher: %v", err)
	}
	closeOnCleanup(tb, "RabbitMQ publisher", pub)
	return pub
}

func (b *amqpBackend) Subscriber(tb testing.TB) message.Subscriber {
	tb.Helper()
	id := randomID(12)
	cfg := b.config(func(topic string) string { return topic + "_fanout_" + id })
	// The queue belongs to this subscriber alone and disappears with its connection.
	cfg.Queue.Durable = false
	cfg.Queue.Exclusive = true
	cfg.Queue.AutoDelete = true
	return b.newSubscriber(tb, cfg)
}

func (b *amqpBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	group = sanitizeName(group)
	cfg := b.config(func(topic string) string {
		name := topic + "_" + group
		b.mu.Lock()
		b.queues[name] = true
		b.mu.Unlock()
		return name
	})
	return b.newSubscriber(tb, cfg)
}

func (b *amqpBackend) newSubscriber(tb testing.TB, cfg wamqp.Config) message.Subscriber {
	tb.Helper()
	sub, err := wamqp.NewSubscriber(cfg, logger())
	if err != nil {
		tb.Fatalf("testkit: RabbitMQ subscriber: %v", err)
	}
	closeOnCleanup(tb, "RabbitMQ subscriber", sub)
	return sub
}

func (b *amqpBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
	}
}

// deleteTopology removes what the test declared, so a long-lived RabbitMQ does not collect
// an exchange and queues per test run. Deleting a missing exchange or queue succeeds.
func (b *amqpBackend) deleteTopology(conn *amqp.Connection) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queues) == 0 && len(b.exchanges) == 0 {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	var errs []error
	for q := range b.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	for ex := range b.exchanges {
		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
