package testkit_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/metadata"
	kmetadata "github.com/go-kratos/kratos/v2/middleware/metadata"

	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit"
)

type flowOrder struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

type flowReceipt struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

type flowSeen struct {
	receipt flowReceipt
	tenant  string
}

// TestKratosbusRouterFlow runs the application flow rocketbus is for on every backend: the
// data layer publishes orders with Kratos metadata, a typed router handler turns each order
// into a receipt on another topic, and a Kratos subscriber (running the Kratos middleware
// chain) receives the receipts.
func TestKratosbusRouterFlow(t *testing.T) {
	testkit.Each(t, func(t *testing.T, b testkit.Backend) {
		orders, receipts := b.Topic(t), b.Topic(t)
		pub := b.Publisher(t)
		// Subscribers are made here, on the test goroutine, and handed out by group.
		subs := map[string]message.Subscriber{
			"billing": b.GroupSubscriber(t, "billing"),
			"audit":   b.GroupSubscriber(t, "audit"),
		}
		quiet := log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelError))
		srv, err := kratosbus.NewServer(
			kratosbus.WithBackend(pub, func(group string) (message.Subscriber, error) {
				if sub, ok := subs[group]; ok {
					return sub, nil
				}
				return nil, fmt.Errorf("no subscriber prepared for group %q", group)
			}),
			kratosbus.WithLogger(quiet),
			kratosbus.WithMiddleware(kmetadata.Server()),
		)
		if err != nil {
			t.Fatalf("kratosbus.NewServer: %v", err)
		}

		err = router.Handle(srv.Router(), orders, receipts,
			func(ctx context.Context, o *flowOrder) ([]*flowReceipt, error) {
				return []*flowReceipt{{OrderID: o.ID, Amount: o.Total * 100}}, nil
			}, router.WithGroup("billing"))
		if err != nil {
			t.Fatalf("router.Handle: %v", err)
		}
		seen := make(chan flowSeen, testMessages)
		err = kratosbus.RegisterSubscriber(srv, receipts, "audit",
			func(ctx context.Context, topic string, headers kratosbus.Headers, r *flowReceipt) error {
				md, _ := metadata.FromServerContext(ctx)
				seen <- flowSeen{receipt: *r, tenant: md.Get("x-md-global-tenant")}
				return nil
			})
		if err != nil {
			t.Fatalf("kratosbus.RegisterSubscriber: %v", err)
		}
		startFlowServer(t, srv)

		data, err := kratosbus.NewPublisher(kratosbus.WithBackend(pub, nil), kratosbus.WithLogger(quiet))
		if err != nil {
			t.Fatalf("kratosbus.NewPublisher: %v", err)
		}
		t.Cleanup(func() { _ = data.Close() })
		ctx := metadata.AppendToClientContext(context.Background(), "x-md-global-tenant", "acme")
		want := map[string]int{}
		for i := range testMessages {
			o := flowOrder{ID: fmt.Sprintf("order-%d", i), Total: i + 1}
			if err := data.Publish(ctx, orders, o); err != nil {
				t.Fatalf("publish %s: %v", o.ID, err)
			}
			want[o.ID] = o.Total * 100
		}

		timeout := time.After(deliveryTimeout)
		for len(want) > 0 {
			select {
			case s := <-seen:
				amount, ok := want[s.receipt.OrderID]
				if !ok {
					continue // a redelivery of a receipt already checked
				}
				if s.receipt.Amount != amount {
					t.Errorf("receipt for %s has amount %d, want %d", s.receipt.OrderID, s.receipt.Amount, amount)
				}
				if s.tenant != "acme" {
					t.Errorf("receipt for %s arrived with tenant %q: Kratos metadata lost between publisher and subscriber", s.receipt.OrderID, s.tenant)
				}
				delete(want, s.receipt.OrderID)
			case <-timeout:
				t.Fatalf("%d of %d receipts did not arrive within %v", len(want), testMessages, deliveryTimeout)
			}
		}
	})
}

// startFlowServer runs srv.Start as Kratos does and stops it when the test ends.
func startFlowServer(t *testing.T, srv *kratosbus.Server) {
	t.Helper()
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	select {
	case <-srv.Router().Running():
	case err := <-started:
		t.Fatalf("kratosbus Server.Start returned early: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := errors.Join(srv.Stop(ctx), <-started); err != nil {
			t.Errorf("stopping the kratosbus server: %v", err)
		}
	})
}
