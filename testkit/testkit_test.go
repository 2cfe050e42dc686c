package testkit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, rocketMQClientGoroutines()...)
}

// rocketMQClientGoroutines lists goroutines rocketmq-client-go v2.1.2 leaves running for a
// while after Shutdown, longer than goleak waits: statistics samplers that sleep up to a minute
// before they look at their stop channel, pulls that wait out their 20s long poll, sleeps
// between pulls and rebalances, and the go-cache janitor of its route cache. All of them run
// under primitive.WithRecover and none belongs to testkit. Every other backend is checked
// without exceptions: the embedded nats-server and every client connection are shut down in
// Cleanup.
func rocketMQClientGoroutines() []goleak.Option {
	const client = "github.com/apache/rocketmq-client-go/v2/"
	return []goleak.Option{
		goleak.IgnoreAnyFunction(client + "primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client + "consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client + "internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
	}
}

const (
	testMessages = 50
	// deliveryTimeout bounds every wait for messages. It is generous because a RocketMQ push
	// consumer only starts pulling after its first rebalance.
	deliveryTimeout = 90 * time.Second
)

// TestPublishSubscribe checks the delivery contract Backend documents, on every backend.
func TestPublishSubscribe(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		t.Run("fan-out", func(t *testing.T) {
			topic := b.Topic(t)
			first := subscribe(t, b.Subscriber(t), topic)
			second := subscribe(t, b.Subscriber(t), topic)

			sent := publish(t, b.Publisher(t), topic, testMessages)

			// Each subscriber has to see every message by itself.
			var wg sync.WaitGroup
			for name, msgs := range map[string]<-chan *message.Message{"first": first, "second": second} {
				wg.Go(func() {
					got := newTally(sent)
					got.collect(t, name, msgs)
					if missing := got.missing(); len(missing) > 0 {
						t.Errorf("%s subscriber is missing %d of %d messages", name, len(missing), len(sent))
					}
				})
			}
			wg.Wait()
		})

		t.Run("consumer groups", func(t *testing.T) {
			topic := b.Topic(t)
			memberA := subscribe(t, b.GroupSubscriber(t, "shared"), topic)
			memberB := subscribe(t, b.GroupSubscriber(t, "shared"), topic)
			other := subscribe(t, b.GroupSubscriber(t, "other"), topic)

			sent := publish(t, b.Publisher(t), topic, testMessages)

			var wg sync.WaitGroup
			shared := newTally(sent)
			wg.Go(func() { shared.collect(t, "group members", memberA, memberB) })
			otherGroup := newTally(sent)
			wg.Go(func() { otherGroup.collect(t, "other group", other) })
			wg.Wait()

			if missing := shared.missing(); len(missing) > 0 {
				t.Errorf("group members together are missing %d of %d messages", len(missing), len(sent))
			}
			if missing := otherGroup.missing(); len(missing) > 0 {
				t.Errorf("a second group is missing %d of %d messages: groups must not share messages", len(missing), len(sent))
			}

			// Members compete: had both been handed every message (fan-out inside the group),
			// the second copies would arrive right after the first ones. Wait a little for
			// such copies; a few duplicates are allowed (at-least-once, e.g. a RocketMQ
			// rebalance), a copy of every message is not.
			shared.drain(t, time.Second, memberA, memberB)
			if total := shared.deliveries(); total >= 2*len(sent) {
				t.Errorf("group members received %d deliveries for %d messages: every message went to both members instead of one", total, len(sent))
			}
		})
	})
}

// TestLateSubscribers checks what Features promises about messages published before a
// subscriber existed, on the backends that promise to keep them.
func TestLateSubscribers(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		if !b.Features().NewSubscriberReceivesOldMessages {
			t.Skipf("%s does not keep messages for subscribers that come later", b.Name())
		}
		topic := b.Topic(t)
		sent := publish(t, b.Publisher(t), topic, testMessages)

		var wg sync.WaitGroup
		for name, sub := range map[string]message.Subscriber{
			"late fan-out subscriber": b.Subscriber(t),
			"late group":              b.GroupSubscriber(t, "late"),
		} {
			msgs := subscribe(t, sub, topic)
			wg.Go(func() {
				got := newTally(sent)
				got.collect(t, name, msgs)
				if missing := got.missing(); len(missing) > 0 {
					t.Errorf("%s is missing %d of %d messages published before it subscribed", name, len(missing), len(sent))
				}
			})
		}
		wg.Wait()
	})
}

// TestGroupResumes checks that a consumer group outlives its members on the persistent
// backends: messages published while the group has no member wait for it, and a new member
// continues after what the group already consumed instead of starting over.
func TestGroupResumes(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		if !b.Features().Persistent {
			t.Skipf("%s keeps no messages for a group without members", b.Name())
		}
		topic := b.Topic(t)
		pub := b.Publisher(t)

		first := b.GroupSubscriber(t, "resume")
		firstMsgs := subscribe(t, first, topic) // with RabbitMQ the group's queue appears here
		before := publish(t, pub, topic, testMessages)
		got := newTally(before)
		got.collect(t, "first member", firstMsgs)
		if missing := got.missing(); len(missing) > 0 {
			t.Fatalf("first member is missing %d of %d messages", len(missing), len(before))
		}
		// Close acks what was handled and, for RocketMQ, commits the offsets.
		if err := first.Close(); err != nil {
			t.Fatalf("closing the first member: %v", err)
		}

		during := publish(t, pub, topic, testMessages)
		all := map[string]string{}
		for id, p := range before {
			all[id] = p
		}
		for id, p := range during {
			all[id] = p
		}
		later := newTally(all)
		later.want = during
		later.collect(t, "later member", subscribe(t, b.GroupSubscriber(t, "resume"), topic))
		if missing := later.missing(); len(missing) > 0 {
			t.Errorf("later member is missing %d of %d messages published while the group had no member", len(missing), len(during))
		}
		replayed := 0
		later.mu.Lock()
		for id := range before {
			replayed += later.count[id]
		}
		later.mu.Unlock()
		// At-least-once allows a few redeliveries, not a start from scratch.
		if replayed >= len(before) {
			t.Errorf("later member received %d deliveries of the %d messages the group had consumed: the group started over", replayed, len(before))
		}
	})
}

// TestGroupMemberLeavesMidStream checks that a member leaving while messages are on their way
// to it loses none of them: whatever it took but did not ack goes to the next member. Adapters
// prefetch, so a closing member usually holds messages the test never read.
func TestGroupMemberLeavesMidStream(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		if !b.Features().Persistent {
			t.Skipf("%s keeps no messages for a group without members", b.Name())
		}
		topic := b.Topic(t)
		first := b.GroupSubscriber(t, "handover")
		firstMsgs := subscribe(t, first, topic)
		sent := publish(t, b.Publisher(t), topic, testMessages)

		handled := map[string]bool{}
		timeout := time.After(deliveryTimeout)
		for len(handled) < len(sent)/2 {
			select {
			case msg := <-firstMsgs:
				msg.Ack()
				handled[msg.UUID] = true
			case <-timeout:
				t.Fatalf("first member got %d of the first %d messages within %v", len(handled), len(sent)/2, deliveryTimeout)
			}
		}
		if err := first.Close(); err != nil {
			t.Fatalf("closing the first member: %v", err)
		}

		rest := newTally(sent)
		rest.want = map[string]string{}
		for id, p := range sent {
			if !handled[id] {
				rest.want[id] = p
			}
		}
		rest.collect(t, "second member", subscribe(t, b.GroupSubscriber(t, "handover"), topic))
		if missing := rest.missing(); len(missing) > 0 {
			t.Errorf("%d of the %d messages the first member did not handle never reached the second member", len(missing), len(rest.want))
		}
	})
}

// TestNackRedelivers checks that a nacked message comes back, with the same UUID, payload and
// metadata, on every backend.
func TestNackRedelivers(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		topic := b.Topic(t)
		msgs := subscribe(t, b.GroupSubscriber(t, "nack"), topic)
		sent := publish(t, b.Publisher(t), topic, 1)

		timeout := time.After(deliveryTimeout)
		for attempt := 1; attempt <= 2; attempt++ {
			select {
			case msg := <-msgs:
				if want, ok := sent[msg.UUID]; !ok || string(msg.Payload) != want || msg.Metadata.Get("index") != "0" {
					t.Fatalf("delivery %d: got message %s with payload %q and index %q, published %v with index 0",
						attempt, msg.UUID, msg.Payload, msg.Metadata.Get("index"), sent)
				}
				if attempt == 1 {
					msg.Nack()
				} else {
					msg.Ack()
				}
			case <-timeout:
				t.Fatalf("delivery %d did not arrive within %v", attempt, deliveryTimeout)
			}
		}
	})
}

// subscribe subscribes with a context that ends with the test.
func subscribe(t testing.TB, sub message.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	msgs, err := sub.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	return msgs
}

// publish sends n messages one Publish call at a time and returns their payloads by UUID.
func publish(t testing.TB, pub message.Publisher, topic string, n int) map[string]string {
	t.Helper()
	sent := map[string]string{}
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "message %d of %s", i, topic))
		msg.Metadata.Set("index", fmt.Sprint(i))
		if err := pub.Publish(topic, msg); err != nil {
			t.Fatalf("publish message %d to %s: %v", i, topic, err)
		}
		sent[msg.UUID] = string(msg.Payload)
	}
	return sent
}

// tally counts deliveries of the messages a test sent and checks their content.
type tally struct {
	sent map[string]string // every message the subscription may deliver
	want map[string]string // the messages collect waits for

	mu    sync.Mutex
	count map[string]int
}

func newTally(sent map[string]string) *tally {
	return &tally{sent: sent, want: sent, count: map[string]int{}}
}

// record acks msg and counts it; it reports whether every sent message has now arrived.
func (g *tally) record(t testing.TB, who string, msg *message.Message) bool {
	msg.Ack()
	want, ok := g.sent[msg.UUID]
	if !ok {
		t.Errorf("%s received message %s that this test did not publish (payload %q)", who, msg.UUID, msg.Payload)
	} else if string(msg.Payload) != want {
		t.Errorf("%s received message %s with payload %q, published %q", who, msg.UUID, msg.Payload, want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count[msg.UUID]++
	return g.allSeenLocked()
}

func (g *tally) complete() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allSeenLocked()
}

func (g *tally) allSeenLocked() bool {
	for id := range g.want {
		if g.count[id] == 0 {
			return false
		}
	}
	return true
}

// collect reads the channels until every sent message arrived or deliveryTimeout passed.
func (g *tally) collect(t testing.TB, who string, chans ...<-chan *message.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	g.read(t, ctx, who, true, chans...)
	if ctx.Err() != nil {
		t.Errorf("%s: gave up waiting after %v", who, deliveryTimeout)
	}
}

// drain reads and counts whatever else arrives within d.
func (g *tally) drain(t testing.TB, d time.Duration, chans ...<-chan *message.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	g.read(t, ctx, "drain", false, chans...)
}

func (g *tally) read(t testing.TB, ctx context.Context, who string, untilComplete bool, chans ...<-chan *message.Message) {
	if untilComplete && g.complete() {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, ch := range chans {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case msg, ok := <-ch:
					if !ok {
						t.Errorf("%s: subscription closed while messages were expected", who)
						return
					}
					if g.record(t, who, msg) && untilComplete {
						cancel()
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func (g *tally) missing() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []string
	for id := range g.want {
		if g.count[id] == 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

func (g *tally) deliveries() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	total := 0
	for _, n := range g.count {
		total += n
	}
	return total
}
