package testkit

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// GoChannel returns the in-process backend, one Watermill GoChannel shared by everything the
// backend hands out. It is the baseline: no network, no persistence (a message published while
// nobody subscribes is dropped). GoChannel has no consumer groups, so the backend emulates them:
// the members of a group share one GoChannel subscription and take turns reading it, which
// gives each message to exactly one member; GoChannel delivers a subscription's messages one at
// a time, so a group processes one message at a time however many members it has.
func GoChannel(tb testing.TB) Backend {
	tb.Helper()
	b := &goChannelBackend{
		ps:     gochannel.NewGoChannel(gochannel.Config{}, logger()),
		groups: map[groupKey]*sharedSubscription{},
	}
	closeOnCleanup(tb, "gochannel", b.ps)
	return b
}

type goChannelBackend struct {
	ps *gochannel.GoChannel

	mu     sync.Mutex
	groups map[groupKey]*sharedSubscription
}

type groupKey struct{ topic, group string }

// sharedSubscription is the GoChannel subscription all members of one group read from.
type sharedSubscription struct {
	msgs    <-chan *message.Message
	cancel  context.CancelFunc
	members int
}

func (b *goChannelBackend) Name() string { return "gochannel" }

func (b *goChannelBackend) Topic(tb testing.TB) string { return newTopicName(tb, 127) }

func (b *goChannelBackend) Publisher(tb testing.TB) message.Publisher {
	p := &goChannelPublisher{ps: b.ps}
	closeOnCleanup(tb, "gochannel publisher", p)
	return p
}

func (b *goChannelBackend) Subscriber(tb testing.TB) message.Subscriber {
	return b.newSubscriber(tb, "")
}

func (b *goChannelBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	return b.newSubscriber(tb, group)
}

func (b *goChannelBackend) newSubscriber(tb testing.TB, group string) message.Subscriber {
	ctx, cancel := context.WithCancel(context.Background())
	s := &goChannelSubscriber{b: b, group: group, ctx: ctx, cancel: cancel}
	closeOnCleanup(tb, "gochannel subscriber", s)
	return s
}

func (b *goChannelBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:        true, // emulated, see GoChannel
		RequireSingleInstance: true,
	}
}

// joinGroup returns the group's shared subscription, subscribing on the first member.
func (b *goChannelBackend) joinGroup(key groupKey) (*sharedSubscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.groups[key]; ok {
		s.members++
		return s, nil
	}
	// The shared subscription outlives any one member, so it must not use a member's context.
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := b.ps.Subscribe(ctx, key.topic)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &sharedSubscription{msgs: msgs, cancel: cancel, members: 1}
	b.groups[key] = s
	return s, nil
}

// leaveGroup drops the shared subscription with its last member, as a broker forgets an
// idle non-durable group.
func (b *goChannelBackend) leaveGroup(key groupKey, s *sharedSubscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s.members--
	if s.members == 0 {
		s.cancel()
		delete(b.groups, key)
	}
}

// goChannelPublisher keeps a publisher's Close from closing the GoChannel everybody shares.
type goChannelPublisher struct {
	ps     *gochannel.GoChannel
	mu     sync.RWMutex
	closed bool
}

func (p *goChannelPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errors.New("testkit: gochannel publisher is closed")
	}
	return p.ps.Publish(topic, msgs...)
}

func (p *goChannelPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

// goChannelSubscriber gives each subscriber its own lifecycle on the shared GoChannel: Close
// ends this subscriber's subscriptions only, and waits until their output channels are closed.
type goChannelSubscriber struct {
	b      *goChannelBackend
	group  string
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (s *goChannelSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("testkit: gochannel subscriber is closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)

	var in <-chan *message.Message
	leave := func() {}
	if s.group == "" {
		msgs, err := s.b.ps.Subscribe(ctx, topic)
		if err != nil {
			stop()
			cancel()
			return nil, err
		}
		in = msgs
	} else {
		key := groupKey{topic, s.group}
		shared, err := s.b.joinGroup(key)
		if err != nil {
			stop()
			cancel()
			return nil, err
		}
		in = shared.msgs
		leave = func() { s.b.leaveGroup(key, shared) }
	}

	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer leave()
		defer stop()
		defer cancel()
		forward(ctx, in, out)
	}()
	return out, nil
}

// forward passes messages from in to out until ctx ends. A message taken from in but not
// handed on is nacked, so GoChannel redelivers it (to another member, for a group).
func forward(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			select {
			case out <- m:
			case <-ctx.Done():
				m.Nack()
				return
			}
		}
	}
}

func (s *goChannelSubscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
