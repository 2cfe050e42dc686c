// Package examples holds the README's code: every Go block of ../README.md must appear in a
// compiled file of this directory tree, and the snippets below run on minirmq.
package examples

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/go-kratos/kratos/v2"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/go-kratos/kratos/v2/middleware/tracing"
	khttp "github.com/go-kratos/kratos/v2/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
	"github.com/rocketbus/rocketbus/testkit/rmqcontainer"
)

func TestMain(m *testing.M) {
	// The snippets use the client's and Kratos' default loggers; keep them to errors.
	rlog.SetLogLevel("error")
	log.SetLogger(log.NewFilter(log.GetLogger(), log.FilterLevel(log.LevelError)))
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

// OrderPlaced is the event of the README's snippets.
type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

// TestReadmeSnippetsCompiled fails when a Go block of the README is not, line for line
// (indentation aside), part of a Go file of this tree that the compiler sees.
func TestReadmeSnippetsCompiled(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks, "the README has Go snippets")

	var sources []string
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(string(src), "//go:build wireinject") {
			return nil // only wire reads it
		}
		sources = append(sources, normalize(string(src)))
		return nil
	})
	require.NoError(t, err)

	for _, b := range blocks {
		snippet := normalize(b[1])
		found := false
		for _, src := range sources {
			if strings.Contains("\n"+src+"\n", "\n"+snippet+"\n") {
				found = true
				break
			}
		}
		assert.True(t, found, "README snippet not found in a compiled file of examples/:\n%s", b[1])
	}
}

// normalize trims every line, so that a snippet matches code nested deeper in a function.
func normalize(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// pubSubSnippet is the README's "Watermill Publisher and Subscriber".
func pubSubSnippet(ctx context.Context, nameServer string, logger watermill.LoggerAdapter) (*message.Message, error) {
	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{
		NameServers: []string{nameServer}, // e.g. "127.0.0.1:9876"
	}, logger)
	if err != nil {
		return nil, err
	}
	defer pub.Close()

	sub, err := rocketmq.NewSubscriber(rocketmq.SubscriberConfig{
		NameServers:     []string{nameServer},
		GroupFunc:       func(topic string) string { return "billing_" + topic }, // one group per topic
		ConsumeFrom:     rocketmq.ConsumeFromFirst,
		AutoCreateTopic: true,
	}, logger)
	if err != nil {
		return nil, err
	}
	defer sub.Close()

	messages, err := sub.Subscribe(ctx, "orders")
	if err != nil {
		return nil, err
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"1001"}`))
	msg.Metadata.Set(rocketmq.MetadataTags, "paid")       // RocketMQ TAGS, filterable on the broker
	msg.Metadata.Set(rocketmq.MetadataKeys, "order-1001") // RocketMQ KEYS, searchable in the console
	if err := pub.Publish("orders", msg); err != nil {
		return nil, err
	}
	received := <-messages
	received.Ack()
	return received, nil
}

func TestReadmePubSub(t *testing.T) {
	extest.SkipUnderRace(t)
	srv := minirmq.Run(t) // the snippet's topic and group names are fixed: a broker of its own
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	received, err := pubSubSnippet(ctx, srv.Addr(), watermill.NopLogger{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"1001"}`, string(received.Payload))
	assert.Equal(t, "paid", received.Metadata.Get(rocketmq.MetadataTags))
	assert.Equal(t, "order-1001", received.Metadata.Get(rocketmq.MetadataKeys))
	group, _ := rocketmq.ConsumerGroupFromCtx(received.Context())
	assert.Equal(t, "billing_orders", group, "consumed in the group GroupFunc named")
}

// billing is what the router snippet's handler calls.
type billing struct {
	mu       sync.Mutex
	attempts map[string]int
	billed   chan string
}

// bill fails the first attempt of every order, so the snippet's broker retry is exercised.
func (b *billing) bill(_ context.Context, o *OrderPlaced, msgID string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[o.ID]++
	if b.attempts[o.ID] == 1 {
		return errors.New("payment service unavailable")
	}
	b.billed <- o.ID + " " + msgID
	return nil
}

// routerSnippet is the README's "Typed handlers on the router, with broker-side retries"; keep
// receives the running router.
func routerSnippet(ctx context.Context, nameServer string, pub message.Publisher, logger watermill.LoggerAdapter,
	bill func(context.Context, *OrderPlaced, string) error, keep func(*router.Router)) error {
	retry, err := middleware.BrokerRetry{
		ReconsumeTimes:    rocketmq.ReconsumeTimesFromCtx,
		MaxReconsumeTimes: 3, // then %DLQ%<group>
	}.Middleware()
	if err != nil {
		return err
	}
	r, err := router.New(router.Config{
		Publisher: pub,
		NewSubscriber: func(group string) (message.Subscriber, error) {
			return rocketmq.NewSubscriber(rocketmq.SubscriberConfig{
				NameServers:     []string{nameServer},
				GroupFunc:       func(string) string { return group },
				NackMode:        rocketmq.NackBrokerRetry, // a failed message goes back to the broker
				AutoCreateTopic: true,
			}, logger)
		},
		Middleware: []message.HandlerMiddleware{wmmiddleware.Recoverer, wmmiddleware.CorrelationID, retry},
	})
	if err != nil {
		return err
	}
	err = router.Subscribe(r, "orders", func(ctx context.Context, o *OrderPlaced) error {
		msgID, _ := rocketmq.MsgIDFromCtx(ctx)
		return bill(ctx, o, msgID) // nil acks; an error is retried by the broker after a delay
	}, router.WithGroup("billing"))
	if err != nil {
		return err
	}
	runErr := make(chan error, 1) // Run returns when r is shut down, or at once when it cannot start
	go func() { runErr <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-runErr:
		return err // e.g. a topic could not be subscribed
	}

	orders, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}
	err = orders.Publish(ctx, "orders", OrderPlaced{ID: "1001", Total: 4200},
		router.WithMetadata(rocketmq.MetadataShardingKey, "1001"))
	keep(r)
	return err
}

func TestReadmeRouter(t *testing.T) {
	extest.SkipUnderRace(t)
	srv := minirmq.Run(t, minirmq.WithTimeScale(0.01)) // the broker's 10 s first retry takes 100 ms
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{NameServers: []string{srv.Addr()}}, nil)
	require.NoError(t, err)
	defer pub.Close()
	b := &billing{attempts: map[string]int{}, billed: make(chan string, 1)}
	var r *router.Router
	err = routerSnippet(ctx, srv.Addr(), pub, watermill.NopLogger{}, b.bill, func(kept *router.Router) { r = kept })
	if r != nil {
		defer r.Close()
	}
	require.NoError(t, err)

	select {
	case got := <-b.billed:
		assert.Regexp(t, `^1001 [0-9A-Fa-f]{32}$`, got, "billed with the RocketMQ message id")
	case <-ctx.Done():
		t.Fatal("order not billed")
	}
	b.mu.Lock()
	assert.Equal(t, 2, b.attempts["1001"], "the first failure came back through the broker once")
	b.mu.Unlock()
	retried := srv.Messages("%RETRY%billing")
	require.Len(t, retried, 1, "the failed attempt went to the group's retry topic")
	require.NoError(t, r.Close())
}

// shipping is what the Kratos snippet's handler calls.
type shipping struct{ shipped chan string }

func (s *shipping) ship(ctx context.Context, o *OrderPlaced) error {
	tr, ok := kratosbus.FromServerContext(ctx)
	if !ok {
		return errors.New("no kratosbus transport in the handler context")
	}
	s.shipped <- o.ID + " " + tr.Message().Metadata.Get(rocketmq.MetadataTags)
	return nil
}

// kratosServerSnippet is the README's Kratos server snippet; keep receives the app and server.
func kratosServerSnippet(nameServer string, httpSrv *khttp.Server, ship func(context.Context, *OrderPlaced) error,
	keep func(*kratos.App, *kratosbus.Server)) error {
	srv, err := kratosbus.NewServer(
		kratosbus.WithNameServer(nameServer),
		kratosbus.WithCodec("json"),
		kratosbus.WithMiddleware(recovery.Recovery(), tracing.Server()),
	)
	if err != nil {
		return err
	}
	err = kratosbus.RegisterSubscriber(srv, "orders", "shipping",
		func(ctx context.Context, topic string, headers kratosbus.Headers, o *OrderPlaced) error {
			return ship(ctx, o)
		})
	if err != nil {
		return err
	}
	app := kratos.New(kratos.Name("shop"), kratos.Server(httpSrv, srv))
	keep(app, srv)
	return nil
}

// kratosPublisherSnippet is the README's data-layer snippet.
func kratosPublisherSnippet(ctx context.Context, nameServer string) error {
	// In the data layer, usually injected by wire with kratosbus.ProviderSet.
	pub, err := kratosbus.NewPublisher(kratosbus.WithNameServer(nameServer))
	if err != nil {
		return err
	}
	defer pub.Close()
	err = pub.Publish(ctx, "orders", OrderPlaced{ID: "1001", Total: 4200},
		kratosbus.WithTag("paid"), kratosbus.WithKeys("1001"))
	return err
}

func TestReadmeKratos(t *testing.T) {
	extest.SkipUnderRace(t)
	srv := minirmq.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	httpSrv := khttp.NewServer(khttp.Address("127.0.0.1:0"))
	s := &shipping{shipped: make(chan string, 1)}
	var app *kratos.App
	var bus *kratosbus.Server
	require.NoError(t, kratosServerSnippet(srv.Addr(), httpSrv, s.ship, func(a *kratos.App, b *kratosbus.Server) { app, bus = a, b }))
	appErr := make(chan error, 1)
	go func() { appErr <- app.Run() }()
	select {
	case <-bus.Router().Running():
	case err := <-appErr:
		t.Fatalf("app stopped: %v", err)
	}

	require.NoError(t, kratosPublisherSnippet(ctx, srv.Addr()))
	select {
	case got := <-s.shipped:
		assert.Equal(t, "1001 paid", got)
	case <-ctx.Done():
		t.Fatal("order not shipped")
	}
	require.NoError(t, app.Stop())
	require.NoError(t, <-appErr)
}

// minirmqSnippets are the README's minirmq lines.
func minirmqSnippets(t *testing.T) (string, string) {
	nameServer := minirmq.NameServer(t) // $ROCKETMQ_NAMESRV when set, else an embedded broker closed with the test
	first := nameServer
	{
		srv := minirmq.Run(t, minirmq.WithTimeScale(0.01)) // delay levels, retries and check-backs 100x faster
		nameServer := srv.Addr()
		return first, nameServer
	}
}

func TestReadmeMinirmq(t *testing.T) {
	t.Setenv(minirmq.EnvNameServer, "")
	first, second := minirmqSnippets(t)
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, first)
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, second)
	assert.NotEqual(t, first, second, "two embedded brokers")

	t.Setenv(minirmq.EnvNameServer, "10.1.2.3:9876")
	first, _ = minirmqSnippets(t)
	assert.Equal(t, "10.1.2.3:9876", first, "NameServer honours ROCKETMQ_NAMESRV")
}

// containerSnippet is the README's testcontainers lines. Docker-backed runs are rmqcontainer's
// own tests; this one only has to compile.
func containerSnippet(t *testing.T) (string, error) {
	c := rmqcontainer.RunTest(t, "apache/rocketmq:4.9.4") // skips without Docker, terminated after the test
	nameServer, err := c.NameServer(context.Background())
	return nameServer, err
}

var _ = containerSnippet

// adminSnippet is the README's Admin lines.
func adminSnippet(ctx context.Context, nameServer string) error {
	admin, err := rocketmq.NewAdmin(rocketmq.AdminConfig{NameServers: []string{nameServer}})
	if err != nil {
		return err
	}
	defer admin.Close()
	progress, err := admin.GroupProgress(ctx, "orders-points", "orders")
	if err != nil {
		return err
	}
	fmt.Printf("backlog of orders-points: %d messages\n", progress.Lag)
	return nil
}

func TestReadmeAdmin(t *testing.T) {
	t.Setenv(minirmq.EnvNameServer, "")
	srv := minirmq.Run(t)
	require.NoError(t, srv.CreateTopic("orders", 2))
	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{NameServers: []string{srv.Addr()}}, watermill.NopLogger{})
	require.NoError(t, err)
	defer pub.Close()
	for i := 0; i < 3; i++ {
		require.NoError(t, pub.Publish("orders", message.NewMessage(watermill.NewUUID(), []byte(`{}`))))
	}
	stdout := os.Stdout
	r, w, err := os.Pipe()
	require.NoError(t, err)
	os.Stdout = w
	err = adminSnippet(context.Background(), srv.Addr())
	os.Stdout = stdout
	require.NoError(t, w.Close())
	require.NoError(t, err)
	printed, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "backlog of orders-points: 3 messages\n", string(printed))
}
