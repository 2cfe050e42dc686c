package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisAddr is where Redis is expected when REDIS_ADDR is unset.
const DefaultRedisAddr = "127.0.0.1:6379"

// Redis returns the Redis streams backend (watermill-redisstream) at $REDIS_ADDR, default
// DefaultRedisAddr. A topic is a stream key, deleted when the test ends. A group is a Redis
// consumer group created at the start of the stream, so it also receives messages published
// before it existed; a fan-out subscriber reads from the end of the stream as it was when
// Subscribe was called (the adapter's "$", pinned to a concrete id so that nothing published
// right after Subscribe returns can slip past). A message a group member took but never acked
// (it crashed or closed) goes to another member after 5s.
func Redis(tb testing.TB) Backend {
	tb.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	b := &redisBackend{addr: addr}
	admin := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := admin.Ping(ctx).Err(); err != nil {
		_ = admin.Close()
		unavailable(tb, "Redis", addr, err)
	}
	b.admin = admin
	tb.Cleanup(func() {
		// Runs after every publisher and subscriber of the test is closed (cleanups are LIFO).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.mu.Lock()
		keys := b.topics
		b.mu.Unlock()
		if len(keys) > 0 {
			if err := admin.Del(ctx, keys...).Err(); err != nil {
				tb.Errorf("testkit: deleting Redis streams %v: %v", keys, err)
			}
		}
		_ = admin.Close()
	})
	return b
}

type redisBackend struct {
	addr  string
	admin *redis.Client

	mu     sync.Mutex
	topics []string
}

func (b *redisBackend) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: b.addr})
}

func (b *redisBackend) Name() string { return "redis" }

func (b *redisBackend) Topic(tb testing.TB) string {
	topic := newTopicName(tb, 127)
	b.mu.Lock()
	b.topics = append(b.topics, topic)
	b.mu.Unlock()
	return topic // a stream comes into existence with its first entry or group
}

func (b *redisBackend) Publisher(tb testing.TB) message.Publisher {
	tb.Helper()
	// Each publisher and subscriber gets its own client, because the adapters close the
	// client they are given.
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: b.client()}, logger())
	if err != nil {
		tb.Fatalf("testkit: Redis publisher: %v", err)
	}
	closeOnCleanup(tb, "Redis publisher", pub)
	return pub
}

func (b *redisBackend) Subscriber(tb testing.TB) message.Subscriber {
	s := &redisSubscriber{b: b}
	closeOnCleanup(tb, "Redis subscriber", s)
	return s
}

func (b *redisBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	tb.Helper()
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	sub, err := redisstream.NewSubscriber(b.subscriberConfig(group, ""), logger())
	if err != nil {
		tb.Fatalf("testkit: Redis group subscriber: %v", err)
	}
	closeOnCleanup(tb, "Redis group subscriber", sub)
	return sub
}

func (b *redisBackend) subscriberConfig(group, fanOutFrom string) redisstream.SubscriberConfig {
	return redisstream.SubscriberConfig{
		Client:         b.client(),
		ConsumerGroup:  group,
		OldestId:       "0",
		FanOutOldestId: fanOutFrom,
		// Without it the first XREAD blocks forever on an empty stream and, since go-redis
		// cannot cancel a blocked command, outlives Close.
		DisableIndefiniteInitialBlock: true,
		// A member's reader is not stopped by Close right away and may still take a message
		// after it (and a crashed member keeps what it took): such pending messages go to
		// another member once idle for MaxIdleTime, checked every ClaimInterval. The
		// adapter's defaults (60s, 5s) would stall a test for a minute; a handler that runs
		// longer than 5s may see its message twice.
		MaxIdleTime:   5 * time.Second,
		ClaimInterval: time.Second,
		// Close cancels the reader's context; without this the reader treats the
		// cancellation like any read error and sleeps 500ms before it notices the close,
		// outliving Close (the adapter does not wait for its reader).
		ShouldStopOnReadErrors: func(err error) bool { return errors.Is(err, context.Canceled) },
	}
}

func (b *redisBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
	}
}

// redisSubscriber is a fan-out subscriber: one adapter subscriber per Subscribe call, each
// starting after the stream's last entry at the time of the call.
type redisSubscriber struct {
	b *redisBackend

	mu     sync.Mutex
	closed bool
	subs   []*redisstream.Subscriber
}

func (s *redisSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("testkit: Redis subscriber is closed")
	}
	last, err := s.lastID(ctx, topic)
	if err != nil {
		return nil, err
	}
	sub, err := redisstream.NewSubscriber(s.b.subscriberConfig("", last), logger())
	if err != nil {
		return nil, fmt.Errorf("testkit: Redis subscriber: %w", err)
	}
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		_ = sub.Close()
		return nil, err
	}
	s.subs = append(s.subs, sub)
	return msgs, nil
}

// lastID is the id of the stream's newest entry, or "0-0" when the stream is empty or absent.
func (s *redisSubscriber) lastID(ctx context.Context, topic string) (string, error) {
	entries, err := s.b.admin.XRevRangeN(ctx, topic, "+", "-", 1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		if strings.Contains(err.Error(), "WRONGTYPE") {
			return "", fmt.Errorf("testkit: Redis key %q is not a stream: %w", topic, err)
		}
		return "", fmt.Errorf("testkit: reading the end of Redis stream %q: %w", topic, err)
	}
	if len(entries) == 0 {
		return "0-0", nil
	}
	return entries[0].ID, nil
}

func (s *redisSubscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, sub := range s.subs {
		errs = append(errs, sub.Close())
	}
	s.subs = nil
	return errors.Join(errs...)
}
