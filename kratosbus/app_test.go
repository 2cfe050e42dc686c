package kratosbus_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/go-kratos/kratos/v2"
	"github.com/go-kratos/kratos/v2/middleware/logging"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/go-kratos/kratos/v2/middleware/tracing"
	khttp "github.com/go-kratos/kratos/v2/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	_ "modernc.org/sqlite"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// orderRepo is the data layer of the test service: orders persisted in SQLite.
type orderRepo struct{ db *sql.DB }

func newOrderRepo(t *testing.T) *orderRepo {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "orders.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1) // SQLite has one writer; concurrent handlers queue for the connection
	_, err = db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL, trace_id TEXT NOT NULL)`)
	require.NoError(t, err)
	return &orderRepo{db: db}
}

func (r *orderRepo) Save(ctx context.Context, o *order, traceID string) error {
	_, err := r.db.ExecContext(ctx, `INSERT INTO orders (id, total, trace_id) VALUES (?, ?, ?)`, o.ID, o.Total, traceID)
	return err
}

func (r *orderRepo) TraceID(id string) (string, bool) {
	var tid string
	if err := r.db.QueryRow(`SELECT trace_id FROM orders WHERE id = ?`, id).Scan(&tid); err != nil {
		return "", false
	}
	return tid, true
}

func (r *orderRepo) IDs(t *testing.T) map[string]bool {
	t.Helper()
	rows, err := r.db.Query(`SELECT id FROM orders`)
	require.NoError(t, err)
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids[id] = true
	}
	require.NoError(t, rows.Err())
	return ids
}

// newHTTPServer serves POST /orders: the order is published, a subscriber stores it.
func newHTTPServer(t *testing.T, pub kratosbus.Sender, tp trace.TracerProvider, prop propagation.TextMapPropagator) (*khttp.Server, string) {
	t.Helper()
	srv := khttp.NewServer(khttp.Address("127.0.0.1:0"),
		khttp.Middleware(recovery.Recovery(), tracing.Server(tracing.WithTracerProvider(tp), tracing.WithPropagator(prop))))
	srv.Route("/").POST("/orders", func(ctx khttp.Context) error {
		var in order
		if err := ctx.Bind(&in); err != nil {
			return err
		}
		h := ctx.Middleware(func(c context.Context, req any) (any, error) {
			if err := pub.Publish(c, "orders", req); err != nil {
				return nil, err
			}
			return map[string]string{"trace_id": trace.SpanContextFromContext(c).TraceID().String()}, nil
		})
		out, err := h(ctx, &in)
		if err != nil {
			return err
		}
		return ctx.Result(http.StatusAccepted, out)
	})
	u, err := srv.Endpoint() // listens now, so the test knows the port before the app runs
	require.NoError(t, err)
	return srv, "http://" + u.Host
}

// TestKratosApp runs a Kratos app with an HTTP server and the bus server: a request is
// published, a subscriber stores the order, and the stored trace id is the request's.
func TestKratosApp(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()
	backend := kratosbus.WithBackend(gc, func(string) (message.Subscriber, error) { return gc, nil })

	repo := newOrderRepo(t)
	pub, err := kratosbus.NewPublisher(backend, kratosbus.WithTracerProvider(tp), kratosbus.WithPropagator(prop))
	require.NoError(t, err)
	defer pub.Close()

	bus, err := kratosbus.NewServer(backend, kratosbus.WithLogger(quiet),
		kratosbus.WithTracerProvider(tp), kratosbus.WithPropagator(prop),
		kratosbus.WithMiddleware(recovery.Recovery(), logging.Server(quiet),
			tracing.Server(tracing.WithTracerProvider(tp), tracing.WithPropagator(prop))))
	require.NoError(t, err)
	require.NoError(t, kratosbus.RegisterSubscriber(bus, "orders", "order-store",
		func(ctx context.Context, topic string, headers kratosbus.Headers, o *order) error {
			return repo.Save(ctx, o, trace.SpanContextFromContext(ctx).TraceID().String())
		}))

	httpSrv, base := newHTTPServer(t, pub, tp, prop)
	app := kratos.New(kratos.Name("orders"), kratos.Logger(quiet), kratos.Server(httpSrv, bus))
	appErr := make(chan error, 1)
	go func() { appErr <- app.Run() }()
	<-bus.Router().Running()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // no idle connection outlives the test
	resp, err := client.Post(base+"/orders", "application/json", strings.NewReader(`{"id":"o-42","total":1999}`))
	require.NoError(t, err)
	var body struct {
		TraceID string `json:"trace_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.NotEmpty(t, body.TraceID)

	var stored string
	require.Eventually(t, func() bool {
		var ok bool
		stored, ok = repo.TraceID("o-42")
		return ok
	}, 10*time.Second, 5*time.Millisecond, "the subscriber stores the order")
	assert.Equal(t, body.TraceID, stored, "the subscriber runs in the HTTP request's trace")

	require.NoError(t, app.Stop())
	require.NoError(t, wait(t, appErr, "app.Run to return"))

	// One trace: HTTP server span -> producer span -> consumer span.
	// Kratos' own tracing middleware, in the bus server's chain, adds a span named after the
	// topic (the Transport's operation) to the same trace.
	var names []string
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() == body.TraceID {
			names = append(names, s.Name())
		}
	}
	assert.Subset(t, names, []string{"/orders", "send orders", "process orders", "orders"})
}

// ackTracker records which delivered messages were acked, as the broker would see it, and
// closes cancelled when the context of a subscription ends (the server stopping it).
type ackTracker struct {
	message.Subscriber
	mu        sync.Mutex
	acked     map[string]bool
	wg        sync.WaitGroup
	cancelled chan struct{}
	once      sync.Once
}

func (a *ackTracker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	context.AfterFunc(ctx, func() { a.once.Do(func() { close(a.cancelled) }) })
	in, err := a.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(out)
		for m := range in {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				select {
				case <-m.Acked():
					a.mu.Lock()
					a.acked[m.UUID] = true
					a.mu.Unlock()
				case <-m.Nacked():
				}
			}()
			out <- m
		}
	}()
	return out, nil
}

func (a *ackTracker) Close() error { return nil }

// TestKratosAppGracefulStop stops the app while handlers are in flight: Stop waits for them,
// and every message that was acked is in the database.
func TestKratosAppGracefulStop(t *testing.T) {
	for _, tc := range []struct {
		name        string
		stopTimeout time.Duration
	}{
		{"drained", 10 * time.Second},
		{"stop timeout cancels handlers", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// BlockPublishUntilSubscriberAck is off: gochannel delivers all messages at once.
			gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			defer gc.Close()
			tracker := &ackTracker{Subscriber: gc, acked: map[string]bool{}, cancelled: make(chan struct{})}
			repo := newOrderRepo(t)
			bus, err := kratosbus.NewServer(kratosbus.WithLogger(quiet),
				kratosbus.WithBackend(gc, func(string) (message.Subscriber, error) { return tracker, nil }))
			require.NoError(t, err)
			const n = 20
			entered := make(chan struct{}, n)
			release := make(chan struct{})
			require.NoError(t, kratosbus.RegisterSubscriber(bus, "orders", "order-store",
				func(ctx context.Context, topic string, headers kratosbus.Headers, o *order) error {
					entered <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err() // nacked: the broker keeps the message
					}
					return repo.Save(ctx, o, "")
				}))
			app := kratos.New(kratos.Name("orders"), kratos.Logger(quiet), kratos.Server(bus), kratos.StopTimeout(tc.stopTimeout))
			appErr := make(chan error, 1)
			go func() { appErr <- app.Run() }()
			<-bus.Router().Running()

			pub, err := kratosbus.NewPublisher(kratosbus.WithBackend(gc, nil))
			require.NoError(t, err)
			uuids := map[string]string{}
			for i := range n {
				id := fmt.Sprintf("o-%d", i)
				msgID := watermill.NewUUID()
				uuids[msgID] = id
				require.NoError(t, pub.Publish(context.Background(), "orders", order{ID: id, Total: i}, kratosbus.WithHeader("k", id),
					func(m *message.Message) { m.UUID = msgID }))
			}
			for range n {
				wait(t, entered, "every handler to start")
			}

			require.NoError(t, app.Stop())
			if tc.stopTimeout > time.Second {
				// The handlers finish once the app's Stop ended the subscription.
				wait(t, tracker.cancelled, "Stop to end the subscription")
				close(release)
				require.NoError(t, wait(t, appErr, "app.Run"))
			} else {
				err := wait(t, appErr, "app.Run")
				assert.ErrorIs(t, err, context.DeadlineExceeded, "Stop reports the handlers it had to cancel")
				close(release)
			}
			tracker.wg.Wait()

			stored := repo.IDs(t)
			tracker.mu.Lock()
			defer tracker.mu.Unlock()
			for uuid := range tracker.acked {
				assert.True(t, stored[uuids[uuid]], "acked message %s (order %s) must be stored", uuid, uuids[uuid])
			}
			if tc.stopTimeout > time.Second {
				assert.Len(t, tracker.acked, n, "every in-flight handler finished and was acked")
				assert.Len(t, stored, n)
			} else {
				assert.Empty(t, tracker.acked, "cancelled handlers are not acked")
			}
		})
	}
}
