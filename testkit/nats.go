package testkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS returns the NATS JetStream backend (watermill-nats/v2) on an embedded nats-server with
// JetStream enabled, started for this test on 127.0.0.1 at a random port with its store in a
// temporary directory; it needs nothing installed. A topic is a stream of the same name with
// one subject. Fan-out subscribers are ephemeral consumers, a group is a durable queue consumer
// named after the group, kept when its members leave; both start at the stream's first
// message, so a new subscriber also receives messages published before it subscribed.
func NATS(tb testing.TB) Backend {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "testkit",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		tb.Fatalf("testkit: configuring embedded nats-server: %v", err)
	}
	ns.Start()
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(30 * time.Second) {
		tb.Fatal("testkit: embedded nats-server did not accept connections within 30s")
	}
	b := &natsBackend{url: ns.ClientURL()}
	admin := b.connect(tb, "testkit-admin")
	tb.Cleanup(func() {
		admin.Close()
		if err := admin.waitClosed(); err != nil {
			tb.Error(err)
		}
	})
	if b.js, err = admin.JetStream(); err != nil {
		tb.Fatalf("testkit: JetStream context on embedded nats-server: %v", err)
	}
	return b
}

type natsBackend struct {
	url     string
	js      nats.JetStreamContext
	streams sync.Map // topic -> struct{}: streams known to exist
	groups  sync.Map // topic + "\x00" + group -> struct{}: durable consumers known to exist
}

func (b *natsBackend) Name() string { return "nats" }

// Topic keeps to [A-Za-z0-9_-], which is valid both as a subject and as a stream name (stream
// names forbid '.', '*', '>' and whitespace).
func (b *natsBackend) Topic(tb testing.TB) string {
	topic := newTopicName(tb, 127)
	if err := b.ensureStream(topic); err != nil {
		tb.Fatal(err)
	}
	return topic
}

// ensureStream creates the topic's stream once: JetStream rejects a publish to a subject no
// stream captures, and creating it on every publish would cost a round trip each time.
func (b *natsBackend) ensureStream(topic string) error {
	if _, ok := b.streams.Load(topic); ok {
		return nil
	}
	_, err := b.js.StreamInfo(topic)
	if errors.Is(err, nats.ErrStreamNotFound) {
		_, err = b.js.AddStream(&nats.StreamConfig{Name: topic, Subjects: []string{topic}})
		if errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
			err = nil // created concurrently
		}
	}
	if err != nil {
		return fmt.Errorf("testkit: creating JetStream stream %q: %w", topic, err)
	}
	b.streams.Store(topic, struct{}{})
	return nil
}

// natsConn is a client connection whose shutdown can be waited for: nats.Conn closes
// asynchronously (the subscriber's Drain returns at once).
type natsConn struct {
	*nats.Conn
	name   string
	closed chan struct{}
}

// waitClosed waits until the connection has finished closing. After a drain that means the
// server has processed the unsubscribes, so nothing published afterwards is pushed to (and
// dropped by) a closing subscriber, which would hold it until JetStream's 30s ack wait ends.
func (c *natsConn) waitClosed() error {
	select {
	case <-c.closed:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("testkit: NATS connection %s still open 30s after its client was closed", c.name)
	}
}

func (b *natsBackend) connect(tb testing.TB, name string) *natsConn {
	tb.Helper()
	c := &natsConn{name: name, closed: make(chan struct{})}
	conn, err := nats.Connect(b.url, nats.Name(name), nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }))
	if err != nil {
		tb.Fatalf("testkit: connecting to embedded nats-server at %s: %v", b.url, err)
	}
	c.Conn = conn
	return c
}

func (b *natsBackend) jetStreamConfig(durable string) wnats.JetStreamConfig {
	return wnats.JetStreamConfig{
		// ManualAck: nats.go otherwise acks every message its callback returns from, and the
		// adapter's callback returns without acking when it drops a message (the subscriber
		// is closing, or the handler took longer than the ack wait): auto-ack would turn
		// those drops into losses.
		SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.ManualAck()},
		// Acks go out without waiting for the server's confirmation, as RocketMQ's offset
		// commits do; a lost ack means a redelivery, never a lost message.
		AckAsync:      true,
		DurablePrefix: durable,
	}
}

func (b *natsBackend) Publisher(tb testing.TB) message.Publisher {
	tb.Helper()
	conn := b.connect(tb, "testkit-pub")
	pub, err := wnats.NewPublisherWithNatsConn(conn.Conn, wnats.PublisherPublishConfig{
		Marshaler:         &wnats.NATSMarshaler{},
		SubjectCalculator: wnats.DefaultSubjectCalculator,
		JetStream:         b.jetStreamConfig(""),
	}, logger())
	if err != nil {
		conn.Close()
		tb.Fatalf("testkit: NATS publisher: %v", err)
	}
	p := &natsPublisher{Publisher: pub, b: b, conn: conn}
	closeOnCleanup(tb, "NATS publisher", p)
	return p
}

func (b *natsBackend) Subscriber(tb testing.TB) message.Subscriber {
	return b.newSubscriber(tb, "")
}

func (b *natsBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	return b.newSubscriber(tb, sanitizeName(group))
}

func (b *natsBackend) newSubscriber(tb testing.TB, group string) message.Subscriber {
	tb.Helper()
	conn := b.connect(tb, "testkit-sub")
	cfg := wnats.SubscriberSubscriptionConfig{
		Unmarshaler:       &wnats.NATSMarshaler{},
		SubjectCalculator: wnats.DefaultSubjectCalculator,
		QueueGroupPrefix:  group,
		JetStream:         b.jetStreamConfig(group),
	}
	if group != "" {
		cfg.AckWaitTimeout = natsGroupAckWait // stop waiting when the server redelivers
	}
	sub, err := wnats.NewSubscriberWithNatsConn(conn.Conn, cfg, logger())
	if err != nil {
		conn.Close()
		tb.Fatalf("testkit: NATS subscriber: %v", err)
	}
	s := &natsSubscriber{Subscriber: sub, b: b, group: group, conn: conn}
	closeOnCleanup(tb, "NATS subscriber", s)
	return s
}

func (b *natsBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
	}
}

// natsPublisher and natsSubscriber create a topic's stream before first use, so any topic
// works, not only those from Topic, and their Close returns once the connection is closed.
type natsPublisher struct {
	*wnats.Publisher
	b    *natsBackend
	conn *natsConn
}

func (p *natsPublisher) Close() error {
	err := p.Publisher.Close()
	return errors.Join(err, p.conn.waitClosed())
}

func (p *natsPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.b.ensureStream(topic); err != nil {
		return err
	}
	return p.Publisher.Publish(topic, msgs...)
}

type natsSubscriber struct {
	*wnats.Subscriber
	b     *natsBackend
	group string
	conn  *natsConn
}

func (s *natsSubscriber) Close() error {
	err := s.Subscriber.Close()
	if err != nil {
		s.conn.Close() // a failed drain leaves the connection open
	}
	return errors.Join(err, s.conn.waitClosed())
}

func (s *natsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := s.b.ensureStream(topic); err != nil {
		return nil, err
	}
	if s.group != "" {
		if err := s.b.ensureGroup(topic, s.group); err != nil {
			return nil, err
		}
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

// A group's consumer pushes at most natsGroupMaxAckPending unacknowledged messages to its
// members, and redelivers one after natsGroupAckWait. The adapter drops, without a nak, what
// was pushed to a member that is closing, so these bound how many messages wait and for how
// long when a member leaves (JetStream's defaults, 1000 and 30s, stall a test for 30s). A
// handler that runs longer than 5s may see its message twice.
const (
	natsGroupAckWait       = 5 * time.Second
	natsGroupMaxAckPending = 64
)

// ensureGroup creates the group's durable queue consumer before anyone subscribes. nats.go
// deletes a consumer it created itself when that subscription ends, which would make the
// group forget its position whenever its last member leaves; a consumer that already existed
// is only unbound.
func (b *natsBackend) ensureGroup(topic, group string) error {
	key := topic + "\x00" + group
	if _, ok := b.groups.Load(key); ok {
		return nil
	}
	_, err := b.js.ConsumerInfo(topic, group)
	if errors.Is(err, nats.ErrConsumerNotFound) {
		_, err = b.js.AddConsumer(topic, &nats.ConsumerConfig{
			Durable:        group,
			DeliverSubject: nats.NewInbox(),
			DeliverGroup:   group,
			DeliverPolicy:  nats.DeliverAllPolicy,
			AckPolicy:      nats.AckExplicitPolicy,
			AckWait:        natsGroupAckWait,
			MaxAckPending:  natsGroupMaxAckPending,
		})
		if errors.Is(err, nats.ErrConsumerNameAlreadyInUse) {
			err = nil // created concurrently
		}
	}
	if err != nil {
		return fmt.Errorf("testkit: creating JetStream consumer %q on stream %q: %w", group, topic, err)
	}
	b.groups.Store(key, struct{}{})
	return nil
}
