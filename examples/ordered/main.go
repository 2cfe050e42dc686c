// Command ordered keeps each order's status events in order. Every event of one order carries
// the order id as its sharding key, so the publisher puts them all into the same queue; an
// orderly subscriber takes one message at a time per queue (the queue is locked on the broker),
// so a consumer never sees "shipped" before "paid", while different orders, spread over the
// queues, are processed in parallel.
//
//	go run ./examples/ordered
//	go run ./examples/ordered -orders 20 -namesrv 127.0.0.1:9876
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// StatusChanged is published whenever an order moves to its next status.
type StatusChanged struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
	Status  string `json:"status"`
}

// statuses is the life of every order, in order.
var statuses = []string{"created", "paid", "shipped", "delivered", "completed"}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ordered:", err)
		os.Exit(1)
	}
}

// history is what the consumer saw per order.
type history struct {
	mu       sync.Mutex
	statuses map[string][]string
	queues   map[string]map[int]bool
	handled  int
	errors   []string
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	var n int
	fs := env.NewFlagSet("ordered", stdout, &f)
	fs.IntVar(&n, "orders", 8, "orders whose status events are published concurrently")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if n < 1 {
		return errors.New("-orders must be positive")
	}
	session, err := env.Open(ctx, f, stdout)
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker
	topic, group := f.Name("order_status"), f.Name("order_tracking")

	pub, err := broker.NewPublisher()
	if err != nil {
		return err
	}
	defer pub.Close()
	r, err := router.New(router.Config{
		Publisher: pub,
		// One message at a time per queue, the queue locked on the broker.
		NewSubscriber: broker.Subscribers(func(c *rocketmq.SubscriberConfig) { c.Orderly = true }),
	})
	if err != nil {
		return err
	}

	h := &history{statuses: map[string][]string{}, queues: map[string]map[int]bool{}}
	total := n * len(statuses)
	allHandled := make(chan struct{})
	err = router.Subscribe(r, topic, func(ctx context.Context, ev *StatusChanged) error {
		// Handlers of different queues run in parallel and take varying time; only the
		// per-queue order of an orderly subscriber keeps one order's events in sequence.
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		queue, _ := rocketmq.QueueIDFromCtx(ctx)
		h.mu.Lock()
		defer h.mu.Unlock()
		seen := h.statuses[ev.OrderID]
		if ev.Seq != len(seen) {
			h.errors = append(h.errors, fmt.Sprintf("OUT OF ORDER: order %s got %s (#%d) after %v", ev.OrderID, ev.Status, ev.Seq, seen))
		}
		h.statuses[ev.OrderID] = append(seen, ev.Status)
		if h.queues[ev.OrderID] == nil {
			h.queues[ev.OrderID] = map[int]bool{}
		}
		h.queues[ev.OrderID][queue] = true
		h.handled++
		if h.handled == total {
			close(allHandled)
		}
		return nil
	}, router.WithGroup(group))
	if err != nil {
		return err
	}
	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}
	out.Printf("orderly consumer running in group %s", group)

	// Each order's service instance publishes its events in sequence; the orders themselves
	// publish concurrently, so their events interleave in the topic.
	events, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("o-%d", i)
		g.Go(func() error {
			for seq, status := range statuses {
				err := events.Publish(gctx, topic, StatusChanged{OrderID: id, Seq: seq, Status: status},
					router.WithMetadata(rocketmq.MetadataShardingKey, id), router.WithMetadata(rocketmq.MetadataKeys, id))
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return running.Stop(fmt.Errorf("publish: %w", err))
	}
	out.Printf("published %d status events of %d orders, interleaved, sharding key = order id", total, n)

	if err := running.StopAfter(ctx, allHandled, "every event was handled"); err != nil {
		return err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("o-%d", i)
		var qs []string
		for q := range h.queues[id] {
			qs = append(qs, fmt.Sprint(q))
		}
		out.Printf("order %s: %s (queue %s)", id, strings.Join(h.statuses[id], " -> "), strings.Join(qs, ","))
	}
	for _, e := range h.errors {
		out.Printf("%s", e)
	}
	if len(h.errors) > 0 {
		return fmt.Errorf("%d events out of order", len(h.errors))
	}
	out.Printf("done: %d events, every order's statuses in sequence", total)
	return nil
}
