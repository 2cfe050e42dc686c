package kratosbus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/go-kratos/kratos/v2"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/metadata"
	kmiddleware "github.com/go-kratos/kratos/v2/middleware"
	kmetadata "github.com/go-kratos/kratos/v2/middleware/metadata"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/go-kratos/kratos/v2/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

func TestMain(m *testing.M) {
	rlog.SetLogLevel("error")
	// Kratos' recovery middleware logs the stack of the panics tests provoke on the global logger.
	log.SetLogger(log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelFatal)))
	const client = "github.com/apache/rocketmq-client-go/v2/"
	goleak.VerifyTestMain(m,
		// rocketmq-client-go v2.1.2 leaves these behind after Shutdown; none is ours.
		goleak.IgnoreAnyFunction(client+"primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client+"consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client+"internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
		// kratos.App.Run subscribes to signals; os/signal's loop lives for the process.
		goleak.IgnoreTopFunction("os/signal.signal_recv"),
		goleak.IgnoreAnyFunction("os/signal.loop"),
	)
}

type order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

var quiet = log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelError))

// goChannelBackend is an in-process backend; every group shares one GoChannel.
func goChannelBackend(t *testing.T) (*gochannel.GoChannel, kratosbus.Option) {
	t.Helper()
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = gc.Close() })
	return gc, kratosbus.WithBackend(gc, func(string) (message.Subscriber, error) { return gc, nil })
}

// closeCounter counts Close calls and leaves the shared GoChannel open.
type closeCounter struct {
	message.Subscriber
	closed atomic.Int32
}

func (c *closeCounter) Close() error {
	c.closed.Add(1)
	return nil
}

// startServer runs srv.Start like Kratos does and returns a stop function that returns Start's
// result.
func startServer(t *testing.T, srv *kratosbus.Server) func() error {
	t.Helper()
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	select {
	case <-srv.Router().Running():
	case err := <-started:
		t.Fatalf("Start returned early: %v", err)
	}
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = errors.Join(srv.Stop(ctx), wait(t, started, "Start to return"))
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestRegisterSubscriberRunsTheKratosChain(t *testing.T) {
	gc, backend := goChannelBackend(t)
	var kinds []transport.Kind
	var tenants []string
	var mu sync.Mutex
	// First in the chain: it sees what the server sets up before any Kratos middleware runs.
	spy := func(h kmiddleware.Handler) kmiddleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			tr, _ := transport.FromServerContext(ctx)
			md, _ := metadata.FromServerContext(ctx)
			mu.Lock()
			kinds = append(kinds, tr.Kind())
			tenants = append(tenants, md.Get("x-md-global-tenant"))
			mu.Unlock()
			return h(ctx, req)
		}
	}
	srv, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet),
		kratosbus.WithMiddleware(spy, recovery.Recovery(), kmetadata.Server()))
	require.NoError(t, err)

	type seen struct {
		topic, group, operation string
		headers                 kratosbus.Headers
		tenant                  string
		order                   order
	}
	got := make(chan seen, 1)
	var panicked atomic.Bool
	require.NoError(t, kratosbus.RegisterSubscriber(srv, "orders", "billing",
		func(ctx context.Context, topic string, headers kratosbus.Headers, o *order) error {
			if !panicked.Swap(true) {
				panic("first delivery fails") // recovery turns it into an error: redelivered
			}
			tr, ok := kratosbus.FromServerContext(ctx)
			require.True(t, ok)
			md, _ := metadata.FromServerContext(ctx)
			got <- seen{topic: topic, group: tr.Group(), operation: tr.Operation(), headers: headers,
				tenant: md.Get("x-md-global-tenant"), order: *o}
			return nil
		}))
	startServer(t, srv)

	pub, err := kratosbus.NewPublisher(kratosbus.WithBackend(gc, nil), kratosbus.WithLogger(quiet))
	require.NoError(t, err)
	ctx := metadata.AppendToClientContext(context.Background(), "x-md-global-tenant", "acme")
	require.NoError(t, pub.Publish(ctx, "orders", order{ID: "o-1", Total: 3}, kratosbus.WithTag("paid")))

	s := wait(t, got, "the handler")
	assert.Equal(t, "orders", s.topic)
	assert.Equal(t, "billing", s.group)
	assert.Equal(t, "orders", s.operation)
	assert.Equal(t, order{ID: "o-1", Total: 3}, s.order)
	assert.Equal(t, "acme", s.tenant, "Kratos metadata travels from the publisher's context")
	assert.Equal(t, "paid", s.headers["rocketmq_tags"])
	mu.Lock()
	assert.Equal(t, []transport.Kind{kratosbus.KindRocketMQ, kratosbus.KindRocketMQ}, kinds)
	assert.Equal(t, []string{"acme", "acme"}, tenants, "the server puts x-md- keys in the Kratos context by itself")
	mu.Unlock()
	require.NoError(t, pub.Close())
}

func TestServerLifecycle(t *testing.T) {
	t.Run("stop before start", func(t *testing.T) {
		_, backend := goChannelBackend(t)
		srv, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet))
		require.NoError(t, err)
		require.NoError(t, kratosbus.RegisterSubscriber(srv, "t", "g", func(context.Context, string, kratosbus.Headers, *order) error { return nil }))
		require.NoError(t, srv.Stop(context.Background()))
		require.NoError(t, srv.Start(context.Background()), "Start after Stop returns at once")
		require.NoError(t, srv.Stop(context.Background()), "Stop is idempotent")
	})

	t.Run("start fails when a subscription fails", func(t *testing.T) {
		gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		require.NoError(t, gc.Close()) // a closed GoChannel refuses subscriptions
		srv, err := kratosbus.NewServer(kratosbus.WithLogger(quiet),
			kratosbus.WithBackend(gc, func(string) (message.Subscriber, error) { return gc, nil }))
		require.NoError(t, err)
		require.NoError(t, kratosbus.RegisterSubscriber(srv, "t", "g", func(context.Context, string, kratosbus.Headers, *order) error { return nil }))
		err = srv.Start(context.Background())
		assert.ErrorContains(t, err, `subscribing to topic "t"`)
		require.NoError(t, srv.Stop(context.Background()))
	})

	t.Run("a failed start stops the Kratos app", func(t *testing.T) {
		gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		require.NoError(t, gc.Close())
		srv, err := kratosbus.NewServer(kratosbus.WithLogger(quiet),
			kratosbus.WithBackend(gc, func(string) (message.Subscriber, error) { return gc, nil }))
		require.NoError(t, err)
		require.NoError(t, kratosbus.RegisterSubscriber(srv, "t", "g", func(context.Context, string, kratosbus.Headers, *order) error { return nil }))
		_, backend := goChannelBackend(t)
		healthy, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet))
		require.NoError(t, err)
		app := kratos.New(kratos.Name("failing"), kratos.Logger(quiet), kratos.Server(healthy, srv))
		appErr := make(chan error, 1)
		go func() { appErr <- app.Run() }()
		assert.ErrorContains(t, wait(t, appErr, "app.Run to fail"), `subscribing to topic "t"`)
	})

	t.Run("stop leaves the backend's pub/sub open and closes other subscribers", func(t *testing.T) {
		gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		t.Cleanup(func() { _ = gc.Close() })
		other := &closeCounter{Subscriber: gc}
		srv, err := kratosbus.NewServer(kratosbus.WithLogger(quiet),
			kratosbus.WithBackend(gc, func(group string) (message.Subscriber, error) {
				if group == "own" {
					return other, nil
				}
				return gc, nil // the caller's pub/sub, also the server's publisher
			}))
		require.NoError(t, err)
		nop := func(context.Context, string, kratosbus.Headers, *order) error { return nil }
		require.NoError(t, kratosbus.RegisterSubscriber(srv, "t", "shared", nop))
		require.NoError(t, kratosbus.RegisterSubscriber(srv, "u", "own", nop))
		stop := startServer(t, srv)
		require.NoError(t, stop())
		// A closed GoChannel refuses to publish.
		assert.NoError(t, gc.Publish("t", message.NewMessage(watermill.NewUUID(), []byte(`{}`))),
			"Stop closed the caller's GoChannel")
		assert.Equal(t, int32(1), other.closed.Load(), "the factory's own subscriber is the server's to close")
	})

	t.Run("endpoint", func(t *testing.T) {
		_, backend := goChannelBackend(t)
		srv, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet))
		require.NoError(t, err)
		u, err := srv.Endpoint()
		require.NoError(t, err)
		assert.Equal(t, "watermill://local", u.String())
		require.NoError(t, srv.Stop(context.Background()))
	})
}

func TestServerRejectsBadInput(t *testing.T) {
	_, err := kratosbus.NewServer()
	assert.ErrorContains(t, err, "no backend")
	_, backend := goChannelBackend(t)
	_, err = kratosbus.NewServer(backend, kratosbus.WithCodec("toml"))
	assert.ErrorContains(t, err, `unknown codec "toml"`)
	_, err = kratosbus.NewServer(kratosbus.WithBackend(gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), nil))
	assert.ErrorContains(t, err, "needs a subscriber factory")
	_, err = kratosbus.NewServer(kratosbus.WithNameServer("no-port"), kratosbus.WithLogger(quiet))
	assert.ErrorContains(t, err, "not host:port")
	// RocketMQ options with another backend would do nothing: they are rejected.
	for want, opt := range map[string]kratosbus.Option{
		"WithNameServer and WithBackend":     kratosbus.WithNameServer("127.0.0.1:9876"),
		"WithBrokerRetry/WithoutBrokerRetry": kratosbus.WithBrokerRetry(3, nil),
		"WithSubscriberConfig":               kratosbus.WithSubscriberConfig(func(*rocketmq.SubscriberConfig) {}),
		"WithPublisherConfig":                kratosbus.WithPublisherConfig(func(*rocketmq.PublisherConfig) {}),
	} {
		_, err = kratosbus.NewServer(backend, opt)
		assert.ErrorContains(t, err, want)
		_, err = kratosbus.NewPublisher(backend, opt)
		assert.ErrorContains(t, err, want)
	}
	_, err = kratosbus.NewServer(backend, kratosbus.WithoutBrokerRetry())
	assert.ErrorContains(t, err, "WithBrokerRetry/WithoutBrokerRetry")

	srv, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet), kratosbus.WithCodec("yaml"))
	require.NoError(t, err, "codecs registered with Kratos are accepted")
	nop := func(context.Context, string, kratosbus.Headers, *order) error { return nil }
	require.NoError(t, kratosbus.RegisterSubscriber(srv, "a", "g", nop))
	err = kratosbus.RegisterSubscriber(srv, "b", "g", nop)
	assert.ErrorContains(t, err, `consumer group "g" already consumes topic "a"`)
	err = kratosbus.RegisterSubscriber(srv, "a", "g", nop)
	assert.ErrorContains(t, err, "already registered")
	require.NoError(t, kratosbus.RegisterSubscriber(srv, "a", "g", nop, router.WithName("a-second")),
		"a failed registration does not release the group of the first one")
	assert.ErrorContains(t, kratosbus.RegisterSubscriber[order](srv, "c", "g2", nil), "nil handler")
	assert.ErrorContains(t, kratosbus.RegisterSubscriber[order](nil, "c", "g2", nop), "nil server")
	// A registration that fails releases the group it claimed, for either kind of handler.
	err = kratosbus.RegisterHandler(srv, "d", "g3", "", func(context.Context, string, kratosbus.Headers, *order) ([]*order, error) { return nil, nil })
	assert.ErrorContains(t, err, "empty publish topic")
	require.NoError(t, kratosbus.RegisterSubscriber(srv, "e", "g3", nop), "the failed RegisterHandler released g3")
	require.NoError(t, srv.Stop(context.Background()))
}

type receipt struct {
	OrderID string `json:"order_id"`
}

func TestRegisterHandlerPublishesResults(t *testing.T) {
	gc, backend := goChannelBackend(t)
	srv, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet), kratosbus.WithMiddleware(recovery.Recovery()))
	require.NoError(t, err)
	require.NoError(t, kratosbus.RegisterHandler(srv, "orders", "billing", "receipts",
		func(ctx context.Context, topic string, headers kratosbus.Headers, o *order) ([]*receipt, error) {
			return []*receipt{{OrderID: o.ID}}, nil
		}))
	receipts, err := gc.Subscribe(context.Background(), "receipts")
	require.NoError(t, err)
	startServer(t, srv)

	pub, err := kratosbus.NewPublisher(kratosbus.WithBackend(gc, nil), kratosbus.WithLogger(quiet))
	require.NoError(t, err)
	ctx := metadata.AppendToClientContext(context.Background(), "x-md-global-tenant", "acme", "x-md-local-hop", "1")
	require.NoError(t, pub.Publish(ctx, "orders", order{ID: "o-5"}))

	m := wait(t, receipts, "the receipt")
	m.Ack()
	assert.JSONEq(t, `{"order_id":"o-5"}`, string(m.Payload))
	assert.Equal(t, "acme", m.Metadata.Get("x-md-global-tenant"), "global Kratos metadata travels on")
	assert.Empty(t, m.Metadata.Get("x-md-local-hop"), "local Kratos metadata stops after one hop")

	assert.ErrorContains(t, kratosbus.RegisterHandler(srv, "other", "billing", "receipts",
		func(context.Context, string, kratosbus.Headers, *order) ([]*receipt, error) { return nil, nil }),
		`group "billing" already consumes topic "orders"`)
}
