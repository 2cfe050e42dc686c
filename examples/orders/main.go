// Command orders shows asynchronous processing and decoupling: one "order placed" event is
// handled independently by the points, coupons and notification services, each in its own
// consumer group, so each gets every order and a slow or failing one does not hold the others.
// A correlation id set where the order entered the system follows it through every handler and
// into the events they produce; a notification that keeps failing ends in a poison queue
// instead of blocking its queue.
//
//	go run ./examples/orders
//	go run ./examples/orders -namesrv 127.0.0.1:9876
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// OrderPlaced is published by the order service when a customer checks out.
type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"` // in cents
	Email string `json:"email"`
}

// PointsAwarded is published by the points service for every order.
type PointsAwarded struct {
	OrderID string `json:"order_id"`
	Points  int    `json:"points"`
}

// orders are what the example places; o-4's address makes every notification attempt fail.
var orders = []OrderPlaced{
	{ID: "o-1", Total: 2500, Email: "ann@example.com"},
	{ID: "o-2", Total: 12000, Email: "bob@example.com"},
	{ID: "o-3", Total: 800, Email: "cyd@example.com"},
	{ID: "o-4", Total: 15000, Email: "not-an-address"},
	{ID: "o-5", Total: 30000, Email: "eve@example.com"},
}

// maxRetries is how often Watermill's Retry middleware retries a failing handler before the
// PoisonQueue middleware takes the message.
const maxRetries = 2

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// progress counts what each service finished, to know when the scenario is complete.
type progress struct {
	mu   sync.Mutex
	done map[string]int
	want map[string]int
	all  chan struct{}
}

func (p *progress) add(service string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[service]++
	for s, n := range p.want {
		if p.done[s] < n {
			return
		}
	}
	select {
	case <-p.all:
	default:
		close(p.all)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	if err := env.NewFlagSet("orders", stdout, &f).Parse(args); err != nil {
		return err
	}
	session, err := env.Open(ctx, f, stdout)
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker

	var (
		placedTopic = f.Name("order_placed")
		pointsTopic = f.Name("points_awarded")
		poisonTopic = f.Name("orders_poison")
	)
	pub, err := broker.NewPublisher()
	if err != nil {
		return err
	}
	defer pub.Close()

	poisonQueue, err := wmmiddleware.PoisonQueue(pub, poisonTopic)
	if err != nil {
		return err
	}
	r, err := router.New(router.Config{
		Publisher: pub,
		// One subscriber, hence one RocketMQ consumer group, per service.
		NewSubscriber: broker.Subscribers(),
		PoisonTopic:   poisonTopic, // undecodable payloads go there too
		// Outermost first: the correlation id is copied to every message a handler produces;
		// a handler error is retried in-process, and once retries are exhausted the message
		// goes to the poison topic and is acked, so the queue moves on.
		Middleware: []message.HandlerMiddleware{
			wmmiddleware.CorrelationID,
			poisonQueue,
			wmmiddleware.Retry{MaxRetries: maxRetries, InitialInterval: 10 * time.Millisecond}.Middleware,
		},
	})
	if err != nil {
		return err
	}

	prog := &progress{done: map[string]int{}, all: make(chan struct{}), want: map[string]int{
		"points": len(orders), "coupons": len(orders), "notification": len(orders) - 1, "ledger": len(orders), "poison": 1,
	}}
	corr := func(ctx context.Context) string {
		return router.Metadata(ctx).Get(wmmiddleware.CorrelationIDMetadataKey)
	}

	// The points service awards 1 point per euro and announces it: its output carries the
	// order's correlation id without the handler doing anything.
	err = router.Handle(r, placedTopic, pointsTopic, func(ctx context.Context, o *OrderPlaced) ([]*PointsAwarded, error) {
		out.Printf("points:       order %s -> %d points [correlation %s]", o.ID, o.Total/100, corr(ctx))
		prog.add("points")
		return []*PointsAwarded{{OrderID: o.ID, Points: o.Total / 100}}, nil
	}, router.WithGroup(f.Name("points")))
	if err != nil {
		return err
	}
	err = router.Subscribe(r, placedTopic, func(ctx context.Context, o *OrderPlaced) error {
		if o.Total >= 10000 {
			out.Printf("coupons:      order %s -> coupon issued [correlation %s]", o.ID, corr(ctx))
		} else {
			out.Printf("coupons:      order %s -> below 100.00, no coupon [correlation %s]", o.ID, corr(ctx))
		}
		prog.add("coupons")
		return nil
	}, router.WithGroup(f.Name("coupons")))
	if err != nil {
		return err
	}
	var attemptsMu sync.Mutex
	attempts := map[string]int{}
	err = router.Subscribe(r, placedTopic, func(ctx context.Context, o *OrderPlaced) error {
		attemptsMu.Lock()
		attempts[o.ID]++
		n := attempts[o.ID]
		attemptsMu.Unlock()
		if !strings.Contains(o.Email, "@") {
			out.Printf("notification: order %s -> cannot mail %q (attempt %d of %d) [correlation %s]", o.ID, o.Email, n, maxRetries+1, corr(ctx))
			return errors.New("invalid email address " + o.Email)
		}
		out.Printf("notification: order %s -> mail sent to %s [correlation %s]", o.ID, o.Email, corr(ctx))
		prog.add("notification")
		return nil
	}, router.WithGroup(f.Name("notification")))
	if err != nil {
		return err
	}
	// Downstream of the points service, the correlation id is still the order's.
	err = router.Subscribe(r, pointsTopic, func(ctx context.Context, p *PointsAwarded) error {
		out.Printf("ledger:       %d points booked for order %s [correlation %s]", p.Points, p.OrderID, corr(ctx))
		prog.add("ledger")
		return nil
	}, router.WithGroup(f.Name("ledger")))
	if err != nil {
		return err
	}
	// Someone has to look at the poison queue: here it is printed; in production it would
	// alert, and be replayed once the cause is fixed.
	err = router.Subscribe(r, poisonTopic, func(ctx context.Context, o *OrderPlaced) error {
		md := router.Metadata(ctx)
		out.Printf("poison queue: order %s from handler %s: %s [correlation %s]",
			o.ID, md.Get(wmmiddleware.PoisonedHandlerKey), md.Get(wmmiddleware.ReasonForPoisonedKey), corr(ctx))
		prog.add("poison")
		return nil
	}, router.WithGroup(f.Name("poison_inspector")))
	if err != nil {
		return err
	}

	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}
	out.Printf("router running: points, coupons, notification, ledger and poison_inspector consume in their own groups")

	// The order service: the correlation id is the id of the request that placed the order.
	placed, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}
	for i, o := range orders {
		reqID := fmt.Sprintf("req-%d", 101+i)
		if err := placed.Publish(ctx, placedTopic, o, router.WithMetadata(wmmiddleware.CorrelationIDMetadataKey, reqID),
			router.WithMetadata(rocketmq.MetadataKeys, o.ID)); err != nil {
			return err
		}
		out.Printf("order service: placed order %s [correlation %s]", o.ID, reqID)
	}

	if err := running.StopAfter(ctx, prog.all, "the scenario finished"); err != nil {
		return err
	}
	prog.mu.Lock()
	out.Printf("done: points %d, coupons %d, notifications %d, ledger %d, poisoned %d",
		prog.done["points"], prog.done["coupons"], prog.done["notification"], prog.done["ledger"], prog.done["poison"])
	prog.mu.Unlock()
	return nil
}
