package router_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rocketbus/rocketbus/router"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

type receipt struct {
	OrderID string `json:"order_id"`
	Charged int    `json:"charged"`
}

// wait fails the test when ch does not deliver in time; the bound only guards against hangs.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	return waitLong(t, ch, 10*time.Second, what)
}

func newGoChannel(t *testing.T, cfg gochannel.Config) *gochannel.GoChannel {
	t.Helper()
	gc := gochannel.NewGoChannel(cfg, watermill.NopLogger{})
	t.Cleanup(func() { _ = gc.Close() })
	return gc
}

// start runs r and returns a function that shuts it down and returns Run's result.
func start(t *testing.T, r *router.Router) func() error {
	t.Helper()
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-runErr:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = errors.Join(r.Shutdown(ctx), <-runErr)
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestSubscribeDecodesAndExposesMetadata(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Publisher: gc, Subscriber: gc})
	require.NoError(t, err)

	type seen struct {
		order  order
		md     message.Metadata
		sub    router.Subscription
		msgOK  bool
		header string
	}
	got := make(chan seen, 1)
	require.NoError(t, router.Subscribe(r, "orders", func(ctx context.Context, o *order) error {
		msg, ok := router.MessageFromContext(ctx)
		sub, _ := router.SubscriptionFromContext(ctx)
		got <- seen{order: *o, md: router.Metadata(ctx), sub: sub, msgOK: ok && msg != nil,
			header: msg.Metadata.Get("tenant")}
		return nil
	}, router.WithGroup("billing")))
	start(t, r)

	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "orders", order{ID: "o-1", Total: 42},
		router.WithMetadata("tenant", "acme")))

	s := wait(t, got, "the handler")
	assert.Equal(t, order{ID: "o-1", Total: 42}, s.order)
	assert.True(t, s.msgOK)
	assert.Equal(t, "acme", s.md.Get("tenant"))
	assert.Equal(t, "acme", s.header)
	assert.Equal(t, router.Subscription{Handler: "orders@billing", Topic: "orders", Group: "billing"}, s.sub)
}

func TestHandlePublishesOutputsWithCorrelation(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{
		Publisher:  gc,
		Subscriber: gc,
		Middleware: []message.HandlerMiddleware{wmmiddleware.CorrelationID},
	})
	require.NoError(t, err)
	require.NoError(t, router.Handle(r, "orders", "receipts", func(ctx context.Context, o *order) ([]*receipt, error) {
		return []*receipt{{OrderID: o.ID, Charged: o.Total}, {OrderID: o.ID, Charged: 0}}, nil
	}))

	receipts, err := gc.Subscribe(context.Background(), "receipts")
	require.NoError(t, err)
	start(t, r)

	in, err := router.NewMessage(context.Background(), router.JSON(), order{ID: "o-7", Total: 99})
	require.NoError(t, err)
	wmmiddleware.SetCorrelationID("corr-1", in)
	require.NoError(t, gc.Publish("orders", in))

	var got []receipt
	for range 2 {
		m := wait(t, receipts, "a receipt")
		m.Ack()
		var rc receipt
		require.NoError(t, router.JSON().Unmarshal(m.Payload, &rc))
		got = append(got, rc)
		assert.Equal(t, "corr-1", wmmiddleware.MessageCorrelationID(m))
	}
	assert.ElementsMatch(t, []receipt{{OrderID: "o-7", Charged: 99}, {OrderID: "o-7", Charged: 0}}, got)
}

func TestHandleRejectsNilOutputs(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Publisher: gc, Subscriber: gc})
	require.NoError(t, err)
	errs := make(chan error, 1)
	require.NoError(t, r.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return nil, nil // ack, so gochannel does not redeliver
			}
			return out, nil
		}
	}))
	require.NoError(t, router.Handle(r, "orders", "receipts", func(ctx context.Context, o *order) ([]*receipt, error) {
		return []*receipt{nil}, nil
	}))
	start(t, r)
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "orders", order{ID: "x"}))
	err = wait(t, errs, "the handler error")
	assert.ErrorContains(t, err, "nil output at index 0")
}

func TestProtobufCodec(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Publisher: gc, Subscriber: gc, Codec: router.Protobuf()})
	require.NoError(t, err)
	got := make(chan string, 1)
	require.NoError(t, router.Subscribe(r, "names", func(ctx context.Context, s *wrapperspb.StringValue) error {
		got <- s.GetValue()
		return nil
	}))
	start(t, r)

	pub, err := router.NewPublisher(gc, router.Protobuf())
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "names", wrapperspb.String("gopher")))
	assert.Equal(t, "gopher", wait(t, got, "the protobuf message"))

	err = pub.Publish(context.Background(), "names", order{ID: "not proto"})
	assert.ErrorContains(t, err, "does not implement proto.Message")
}

// countingCodec counts decode attempts, to prove a bad payload is not retried.
type countingCodec struct {
	router.Codec
	decodes atomic.Int32
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.decodes.Add(1)
	return c.Codec.Unmarshal(data, v)
}

func TestDecodeFailureGoesToPoisonQueueWithoutRetry(t *testing.T) {
	// Retry must not see decode errors, whether it is router-wide or the handler's own.
	for _, perHandler := range []bool{false, true} {
		name := "router-wide retry"
		if perHandler {
			name = "per-handler retry"
		}
		t.Run(name, func(t *testing.T) {
			gc := newGoChannel(t, gochannel.Config{})
			codec := &countingCodec{Codec: router.JSON()}
			retries := atomic.Int32{}
			retry := wmmiddleware.Retry{
				MaxRetries:      3,
				InitialInterval: time.Millisecond,
				OnRetryHook:     func(int, time.Duration) { retries.Add(1) },
			}.Middleware
			cfg := router.Config{Publisher: gc, Subscriber: gc, Codec: codec}
			var opts []router.HandlerOption
			if perHandler {
				opts = append(opts, router.WithMiddleware(retry))
			} else {
				cfg.Middleware = []message.HandlerMiddleware{retry}
			}
			r, err := router.New(cfg)
			require.NoError(t, err)
			var called atomic.Bool
			require.NoError(t, router.Subscribe(r, "orders", func(ctx context.Context, o *order) error {
				called.Store(true)
				return nil
			}, opts...))
			poison, err := gc.Subscribe(context.Background(), router.DefaultPoisonTopic)
			require.NoError(t, err)
			start(t, r)

			bad := message.NewMessage("bad-1", []byte("{not json"))
			require.NoError(t, gc.Publish("orders", bad))

			p := wait(t, poison, "the poisoned message")
			p.Ack()
			assert.Equal(t, "bad-1", p.UUID)
			assert.Equal(t, "{not json", string(p.Payload))
			reason := p.Metadata.Get(wmmiddleware.ReasonForPoisonedKey)
			assert.Contains(t, reason, "cannot decode message bad-1")
			assert.Contains(t, reason, "router_test.order")
			assert.Equal(t, "orders", p.Metadata.Get(wmmiddleware.PoisonedTopicKey))
			assert.Equal(t, int32(1), codec.decodes.Load(), "a decode failure must not be retried")
			assert.Zero(t, retries.Load())
			assert.False(t, called.Load())
		})
	}
}

func TestDecodeFailureWithoutPublisherIsAcked(t *testing.T) {
	// Publish blocks until the subscriber acks: a nack would redeliver and never return.
	gc := newGoChannel(t, gochannel.Config{BlockPublishUntilSubscriberAck: true})
	codec := &countingCodec{Codec: router.JSON()}
	r, err := router.New(router.Config{Subscriber: gc, Codec: codec, DropUndecodable: true})
	require.NoError(t, err)
	require.NoError(t, router.Subscribe(r, "orders", func(ctx context.Context, o *order) error { return nil }))
	start(t, r)

	done := make(chan error, 1)
	go func() { done <- gc.Publish("orders", message.NewMessage("bad-2", []byte("]"))) }()
	require.NoError(t, wait(t, done, "the ack of the undecodable message"))
	assert.Equal(t, int32(1), codec.decodes.Load())
}

func TestHandlerErrorsAreNackedAndRedelivered(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
	require.NoError(t, err)
	attempts := atomic.Int32{}
	done := make(chan struct{})
	require.NoError(t, router.Subscribe(r, "orders", func(ctx context.Context, o *order) error {
		if attempts.Add(1) < 3 {
			return errors.New("transient")
		}
		close(done)
		return nil
	}))
	start(t, r)
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "orders", order{ID: "r"}))
	wait(t, done, "the third attempt")
	assert.Equal(t, int32(3), attempts.Load())
}

func TestSubscriberPerGroup(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	var mu sync.Mutex
	created := map[string]int{}
	closed := map[string]int{}
	r, err := router.New(router.Config{
		DropUndecodable: true,
		NewSubscriber: func(group string) (message.Subscriber, error) {
			mu.Lock()
			defer mu.Unlock()
			created[group]++
			return &trackedSubscriber{Subscriber: gc, onClose: func() {
				mu.Lock()
				closed[group]++
				mu.Unlock()
			}}, nil
		},
	})
	require.NoError(t, err)
	nop := func(context.Context, *order) error { return nil }
	require.NoError(t, router.Subscribe(r, "a", nop, router.WithGroup("g1")))
	require.NoError(t, router.Subscribe(r, "b", nop, router.WithGroup("g1")))
	require.NoError(t, router.Subscribe(r, "a", nop, router.WithGroup("g2")))
	stop := start(t, r)
	require.NoError(t, stop())

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"g1": 1, "g2": 1}, created)
	assert.Equal(t, map[string]int{"g1": 1, "g2": 1}, closed, "the router closes each group's subscriber once")
}

func TestSubscriberPerGroupClosedWithoutRun(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	var closed atomic.Int32
	r, err := router.New(router.Config{
		DropUndecodable: true,
		NewSubscriber: func(group string) (message.Subscriber, error) {
			return &trackedSubscriber{Subscriber: gc, onClose: func() { closed.Add(1) }}, nil
		},
	})
	require.NoError(t, err)
	require.NoError(t, router.Subscribe(r, "a", func(context.Context, *order) error { return nil }, router.WithGroup("g")))
	require.NoError(t, r.Close())
	assert.Equal(t, int32(1), closed.Load(), "a router that never ran still owns and closes its subscribers")
	require.NoError(t, r.Close())
	assert.Equal(t, int32(1), closed.Load(), "Close is idempotent")
}

func TestSubscriberFactoryErrorIsReturned(t *testing.T) {
	r, err := router.New(router.Config{DropUndecodable: true, NewSubscriber: func(group string) (message.Subscriber, error) {
		return nil, errors.New("no name server")
	}})
	require.NoError(t, err)
	err = router.Subscribe(r, "a", func(context.Context, *order) error { return nil }, router.WithGroup("g"))
	assert.ErrorContains(t, err, `group "g"`)
	assert.ErrorContains(t, err, "no name server")
	require.NoError(t, r.Close())
}

type trackedSubscriber struct {
	message.Subscriber
	onClose func()
}

func (s *trackedSubscriber) Close() error {
	s.onClose()
	return nil // the shared gochannel is closed by the test
}

func TestShutdownDrainsInFlightHandlers(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	sub := &cancelSignal{Subscriber: gc, cancelled: make(chan struct{})}
	r, err := router.New(router.Config{Subscriber: sub, DropUndecodable: true})
	require.NoError(t, err)
	entered := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan error, 1)
	require.NoError(t, router.Subscribe(r, "slow", func(ctx context.Context, o *order) error {
		close(entered)
		<-release
		finished <- ctx.Err()
		return nil
	}))
	stop := start(t, r)
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "slow", order{ID: "s"}))
	wait(t, entered, "the handler")

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// The handler goes on only once Shutdown ended the subscription, and Shutdown must still
	// wait for it.
	wait(t, sub.cancelled, "Shutdown to end the subscription")
	close(release)
	assert.NoError(t, wait(t, stopped, "Shutdown"))
	select {
	case ctxErr := <-finished:
		assert.NoError(t, ctxErr, "the handler's context must survive the closed subscription")
	default:
		t.Fatal("Shutdown returned before the in-flight handler finished")
	}
}

// cancelSignal closes cancelled when the context of its (single) subscription ends.
type cancelSignal struct {
	message.Subscriber
	cancelled chan struct{}
}

func (s *cancelSignal) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	context.AfterFunc(ctx, func() { close(s.cancelled) })
	return s.Subscriber.Subscribe(ctx, topic)
}

func TestShutdownDeadlineCancelsHandlers(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
	require.NoError(t, err)
	entered := make(chan struct{})
	require.NoError(t, router.Subscribe(r, "stuck", func(ctx context.Context, o *order) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}))
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	<-r.Running()
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "stuck", order{ID: "s"}))
	wait(t, entered, "the handler")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = r.Shutdown(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NoError(t, wait(t, runErr, "Run to return"))
	// A second Shutdown reports the first one's result.
	assert.ErrorIs(t, r.Shutdown(context.Background()), context.DeadlineExceeded)
}

func TestLifecycleEdges(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})

	t.Run("close before run", func(t *testing.T) {
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		require.NoError(t, err)
		require.NoError(t, router.Subscribe(r, "t", func(context.Context, *order) error { return nil }))
		require.NoError(t, r.Close())
		require.NoError(t, r.Close())
		assert.ErrorIs(t, r.Run(context.Background()), router.ErrClosed)
		assert.ErrorIs(t, router.Subscribe(r, "u", func(context.Context, *order) error { return nil }), router.ErrClosed)
	})

	t.Run("duplicate names", func(t *testing.T) {
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		require.NoError(t, err)
		nop := func(context.Context, *order) error { return nil }
		require.NoError(t, router.Subscribe(r, "t", nop))
		err = router.Subscribe(r, "t", nop)
		assert.ErrorContains(t, err, `handler named "t" is already registered`)
		require.NoError(t, router.Subscribe(r, "t", nop, router.WithName("t-2")))
		require.NoError(t, r.Close())
	})

	t.Run("bad input", func(t *testing.T) {
		_, err := router.New(router.Config{})
		assert.ErrorContains(t, err, "needs a Subscriber")
		_, err = router.New(router.Config{Publisher: gc, Subscriber: gc,
			NewSubscriber: func(string) (message.Subscriber, error) { return gc, nil }})
		assert.ErrorContains(t, err, "both Subscriber and NewSubscriber")
		// Without a Publisher undecodable messages have nowhere to go: dropping them must be
		// asked for.
		_, err = router.New(router.Config{Subscriber: gc})
		assert.ErrorContains(t, err, "needs a Publisher")
		assert.ErrorContains(t, err, "DropUndecodable")
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		require.NoError(t, err)
		assert.ErrorContains(t, router.Subscribe[order](r, "t", nil), "nil handler")
		assert.ErrorContains(t, router.Subscribe(r, "", func(context.Context, *order) error { return nil }), "empty topic")
		assert.ErrorContains(t, router.Handle(r, "t", "out", func(context.Context, *order) ([]*receipt, error) { return nil, nil }),
			"has no Publisher")
		require.NoError(t, r.Close())

		_, err = router.NewPublisher(nil, nil)
		assert.Error(t, err)
		pub, err := router.NewPublisher(gc, nil)
		require.NoError(t, err)
		assert.ErrorContains(t, pub.Publish(context.Background(), "", order{}), "empty topic")
		assert.ErrorContains(t, pub.Publish(context.Background(), "t", nil), "nil value")
		assert.ErrorContains(t, pub.Publish(context.Background(), "t", (*order)(nil)), "nil *router_test.order")
	})

	t.Run("middleware added after run", func(t *testing.T) {
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		require.NoError(t, err)
		require.NoError(t, router.Subscribe(r, "t", func(context.Context, *order) error { return nil }))
		passThrough := func(h message.HandlerFunc) message.HandlerFunc { return h }
		stop := start(t, r)
		assert.ErrorContains(t, r.AddMiddleware(passThrough), "after Run")
		require.NoError(t, stop())
		assert.ErrorIs(t, r.AddMiddleware(passThrough), router.ErrClosed)
	})

	t.Run("handler added while running", func(t *testing.T) {
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		require.NoError(t, err)
		start(t, r)
		got := make(chan string, 1)
		require.NoError(t, router.Subscribe(r, "late", func(ctx context.Context, o *order) error {
			got <- o.ID
			return nil
		}))
		pub, err := router.NewPublisher(gc, nil)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(context.Background(), "late", order{ID: "late-1"}))
		assert.Equal(t, "late-1", wait(t, got, "the late handler"))
	})
}

func TestCodecByName(t *testing.T) {
	for name, want := range map[string]string{"": "json", "JSON": "json", "protobuf": "protobuf", "proto": "protobuf"} {
		c, err := router.CodecByName(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, c.Name())
	}
	_, err := router.CodecByName("xml")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), `"xml"`))

	var v order
	assert.ErrorContains(t, router.Protobuf().Unmarshal([]byte{}, &v), "does not implement proto.Message")
	// JSON reads protojson for generated types.
	b, err := router.JSON().Marshal(wrapperspb.Int64(7))
	require.NoError(t, err)
	var i wrapperspb.Int64Value
	require.NoError(t, router.JSON().Unmarshal(b, &i))
	assert.Equal(t, int64(7), i.GetValue())
}

type failingSubscriber struct{ message.Subscriber }

func (failingSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return nil, errors.New("topic not found")
}

func TestRunReportsSubscriptionFailures(t *testing.T) {
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
	require.NoError(t, err)
	nop := func(context.Context, *order) error { return nil }
	require.NoError(t, router.Subscribe(r, "good", nop))
	require.NoError(t, router.Subscribe(r, "bad", nop, router.WithSubscriber(failingSubscriber{gc})))
	err = r.Run(context.Background())
	assert.ErrorContains(t, err, `subscribing to topic "bad": topic not found`)
	require.NoError(t, r.Close())
	// goleak (TestMain) checks that the handler that did subscribe stopped.
}

func TestWatermillTimeoutAppliesToHandlers(t *testing.T) {
	// The router detaches handler contexts from the subscription (for draining); middleware
	// that derives a context from the message, like Watermill's Timeout, still bounds them.
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{
		Subscriber:      gc,
		DropUndecodable: true,
		Middleware: []message.HandlerMiddleware{
			func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					_, _ = h(msg)
					return nil, nil // ack, the test only looks at the handler's context
				}
			},
			wmmiddleware.Timeout(time.Millisecond),
		},
	})
	require.NoError(t, err)
	got := make(chan error, 1)
	require.NoError(t, router.Subscribe(r, "slow", func(ctx context.Context, o *order) error {
		<-ctx.Done()
		got <- ctx.Err()
		return ctx.Err()
	}))
	start(t, r)
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "slow", order{ID: "t"}))
	assert.ErrorIs(t, wait(t, got, "the timeout"), context.DeadlineExceeded)
}

// lastWordSubscriber delivers one message when its subscription is cancelled, then ends it:
// the moment Watermill's Close stops waiting for running handlers (there were none) while its
// handler loop still takes that last message and starts a handler.
type lastWordSubscriber struct {
	msg *message.Message
}

func (s *lastWordSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	go func() {
		defer close(ch)
		<-ctx.Done()
		// Long enough for Watermill's Close to have found no running handler: the message
		// then arrives when only the router's own count can still see it.
		time.Sleep(100 * time.Millisecond)
		ch <- s.msg
	}()
	return ch, nil
}

func (s *lastWordSubscriber) Close() error { return nil }

func TestShutdownWaitsForAHandlerStartedWhileClosing(t *testing.T) {
	payload, err := router.JSON().Marshal(order{ID: "last"})
	require.NoError(t, err)
	sub := &lastWordSubscriber{msg: message.NewMessage(watermill.NewUUID(), payload)}
	r, err := router.New(router.Config{Subscriber: sub, DropUndecodable: true})
	require.NoError(t, err)
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	require.NoError(t, router.Subscribe(r, "closing", func(ctx context.Context, o *order) error {
		close(entered)
		<-release
		finished.Store(true)
		return nil
	}))
	stop := start(t, r)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	wait(t, entered, "the handler of the message delivered while closing")
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a handler was running", err)
	case <-time.After(100 * time.Millisecond): // Watermill's own Close has long returned by now
	}
	close(release)
	assert.NoError(t, wait(t, stopped, "Shutdown"))
	assert.True(t, finished.Load(), "the handler finished before Shutdown returned")
	select {
	case <-sub.msg.Acked():
	default:
		t.Error("the message is acked once its handler returned nil")
	}
}

// stuckRouter runs a router on gochannel whose handler is busy with one message: it records
// when its context is cancelled and returns only once released, ignoring its cancellation.
type stuckRouter struct {
	r           *router.Router
	runErr      chan error
	cancelledAt chan time.Time
	handled     chan struct{}
	release     func()
}

func newStuckRouter(t *testing.T, closeTimeout time.Duration) *stuckRouter {
	t.Helper()
	gc := newGoChannel(t, gochannel.Config{})
	r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true, CloseTimeout: closeTimeout})
	require.NoError(t, err)
	s := &stuckRouter{r: r, runErr: make(chan error, 1), cancelledAt: make(chan time.Time, 1), handled: make(chan struct{})}
	entered := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	s.release = func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(s.release) // lets a Shutdown that hangs end, when the test failed
	require.NoError(t, router.Subscribe(r, "stuck", func(ctx context.Context, o *order) error {
		defer close(s.handled)
		close(entered)
		select {
		case <-ctx.Done():
			s.cancelledAt <- time.Now()
			<-release // ignores its cancellation
		case <-release:
		}
		return nil
	}))
	go func() { s.runErr <- r.Run(context.Background()) }()
	wait(t, r.Running(), "the router to run")
	pub, err := router.NewPublisher(gc, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "stuck", order{ID: "x"}))
	wait(t, entered, "the handler")
	return s
}

// finish releases the handler and checks that it and Run end.
func (s *stuckRouter) finish(t *testing.T) {
	t.Helper()
	s.release()
	wait(t, s.handled, "the released handler")
	assert.NoError(t, wait(t, s.runErr, "Run"))
}

func TestShutdownWithoutDeadlineIsBoundedByCloseTimeout(t *testing.T) {
	s := newStuckRouter(t, 100*time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- s.r.Shutdown(context.Background()) }()
	err := wait(t, stopped, "Shutdown with a context that never ends")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "still running", "the handler that ignores cancellation is reported")
	s.finish(t)
}

// waitLong is wait with its own bound, for shutdowns that take a few CloseTimeouts by design.
func waitLong[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// A handler Watermill starts while closing (so Watermill's Close returns nil before it runs)
// and that ignores its context must not hold Shutdown beyond its documented bound: CloseTimeout
// to finish, then another CloseTimeout once cancelled. Before the fix Shutdown waited for it
// as long as ctx lasted: forever with context.Background, an hour here with a long deadline.
func TestShutdownIsBoundedWhenWatermillClosesBeforeALateHandler(t *testing.T) {
	const closeTimeout = time.Second
	for name, newCtx := range map[string]func() (context.Context, context.CancelFunc){
		"background": func() (context.Context, context.CancelFunc) { return context.Background(), func() {} },
		"deadline past CloseTimeout": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Hour)
		},
	} {
		t.Run(name, func(t *testing.T) {
			payload, err := router.JSON().Marshal(order{ID: "last"})
			require.NoError(t, err)
			sub := &lastWordSubscriber{msg: message.NewMessage(watermill.NewUUID(), payload)}
			r, err := router.New(router.Config{Subscriber: sub, DropUndecodable: true, CloseTimeout: closeTimeout})
			require.NoError(t, err)
			entered := make(chan struct{})
			cancelled := make(chan struct{})
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseHandler := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(releaseHandler) // lets a Shutdown that hangs end, when the test failed
			require.NoError(t, router.Subscribe(r, "closing", func(ctx context.Context, o *order) error {
				close(entered)
				<-ctx.Done()
				close(cancelled)
				<-release // ignores its cancellation
				return nil
			}))
			runErr := make(chan error, 1)
			go func() { runErr <- r.Run(context.Background()) }()
			wait(t, r.Running(), "the router to run")

			ctx, cancel := newCtx()
			defer cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- r.Shutdown(ctx) }()
			wait(t, entered, "the handler of the message delivered while closing")
			// 10 times the bound: 2 × CloseTimeout.
			err = waitLong(t, stopped, 20*closeTimeout, "Shutdown, with a handler that ignores its context")
			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded, "the CloseTimeout that passed is the cause")
			assert.Contains(t, err.Error(), "still running", "the handler that ignores cancellation is reported")
			select {
			case <-cancelled:
			default:
				t.Error("Shutdown returned without cancelling the handler's context")
			}
			releaseHandler()
			wait(t, sub.msg.Acked(), "the ack of the released handler's message")
			assert.NoError(t, wait(t, runErr, "Run"))
		})
	}
}

// stubbornSubscriber keeps its subscription open after its context ends. Told to (once
// Shutdown returned), it delivers a last message, unless nobody takes it within a second.
type stubbornSubscriber struct {
	msg     *message.Message
	deliver chan struct{}
	taken   chan bool
}

func (s *stubbornSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	go func() {
		defer close(ch)
		<-ctx.Done()
		<-s.deliver
		select {
		case ch <- s.msg:
			s.taken <- true
		case <-time.After(time.Second):
			s.taken <- false
		}
	}()
	return ch, nil
}

func (s *stubbornSubscriber) Close() error { return nil }

// Once Shutdown returned, nothing of the router may still read a subscription and start a
// handler. Before the fix, Watermill's CloseTimeout passed while the subscription was open,
// Shutdown returned at once (no message in flight), and the goroutine forwarding the
// subscription to Watermill lived on: it took the message the subscriber delivered after
// Shutdown returned, and Watermill ran its handler.
func TestNoHandlerStartsAfterShutdownReturned(t *testing.T) {
	const closeTimeout = 100 * time.Millisecond
	payload, err := router.JSON().Marshal(order{ID: "too-late"})
	require.NoError(t, err)
	sub := &stubbornSubscriber{
		msg:     message.NewMessage(watermill.NewUUID(), payload),
		deliver: make(chan struct{}),
		taken:   make(chan bool, 1),
	}
	var deliverOnce sync.Once
	deliver := func() { deliverOnce.Do(func() { close(sub.deliver) }) }
	t.Cleanup(deliver)
	r, err := router.New(router.Config{Subscriber: sub, DropUndecodable: true, CloseTimeout: closeTimeout})
	require.NoError(t, err)
	var shutdownReturned atomic.Bool
	started := make(chan bool, 1)
	require.NoError(t, router.Subscribe(r, "late", func(ctx context.Context, o *order) error {
		started <- shutdownReturned.Load()
		return nil
	}))
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	wait(t, r.Running(), "the router to run")

	stopped := make(chan error, 1)
	go func() { stopped <- r.Shutdown(context.Background()) }()
	err = waitLong(t, stopped, 20*closeTimeout, "Shutdown")
	shutdownReturned.Store(true)
	assert.Error(t, err, "the subscription that did not end is reported")
	wait(t, runErr, "Run")

	deliver()
	if wait(t, sub.taken, "the subscriber's last delivery") {
		t.Error("the router still read the subscription after Shutdown returned")
		after := wait(t, started, "the handler of the message taken after Shutdown")
		assert.False(t, after, "a handler started after Shutdown returned")
	}
	select {
	case <-started:
		t.Error("the handler ran although no message was delivered before Shutdown")
	default:
	}
}

// Shutdown's bound is CloseTimeout after the earlier of ctx's end and CloseTimeout: with a
// context that already ended, one CloseTimeout. Before the fix, a handler that ignores its
// context held Shutdown for Watermill's CloseTimeout and then for another one.
func TestShutdownWithAnEndedContextTakesOneCloseTimeout(t *testing.T) {
	// The bound is checked with a CloseTimeout of slack: a fixed Shutdown takes one
	// CloseTimeout, the unfixed one at least two (two timers one after the other).
	const closeTimeout = 2 * time.Second
	s := newStuckRouter(t, closeTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	begin := time.Now()
	err := s.r.Shutdown(ctx)
	elapsed := time.Since(begin)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "still running")
	assert.Less(t, elapsed, 2*closeTimeout, "Shutdown with an ended context waits one CloseTimeout for cancelled handlers")
	s.finish(t)
}

// Close gives in-flight handlers CloseTimeout to finish before it cancels their contexts, then
// waits up to another CloseTimeout for them: it returns within twice CloseTimeout.
func TestCloseBound(t *testing.T) {
	const closeTimeout = 300 * time.Millisecond
	s := newStuckRouter(t, closeTimeout)
	begin := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- s.r.Close() }()
	err := waitLong(t, closed, 20*closeTimeout, "Close") // 10 times its bound
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "still running")
	select {
	case at := <-s.cancelledAt:
		// Timers do not fire early: this lower bound holds however loaded the machine is.
		assert.GreaterOrEqual(t, at.Sub(begin), closeTimeout, "handlers get CloseTimeout before they are cancelled")
	default:
		t.Error("Close returned without cancelling the handler's context")
	}
	assert.Equal(t, err, s.r.Close(), "a second Close returns the first one's result")
	s.finish(t)
}
