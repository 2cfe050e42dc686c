// Command seckill shows peak shaving: a flash sale receives a burst of purchase requests far
// faster than the order service may take them. RocketMQ queues the burst; the order service
// consumes it at a bounded rate (Watermill's Throttle middleware), so the backlog grows during
// the burst and drains at the rate the service can bear, and no request is lost.
//
//	go run ./examples/seckill
//	go run ./examples/seckill -requests 1000 -rate 200 -stock 100 -namesrv 127.0.0.1:9876
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// PurchaseRequest is one user's attempt to buy the sale item.
type PurchaseRequest struct {
	RequestID int    `json:"request_id"`
	UserID    string `json:"user_id"`
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "seckill:", err)
		os.Exit(1)
	}
}

// config is the scenario.
type config struct {
	requests int           // size of the burst
	users    int           // concurrent senders of the burst
	rate     int           // requests the order service handles per second
	stock    int           // items on sale
	window   time.Duration // width of the windows the handling rate is reported over
}

// inventory is the order service's state: the stock and when each request was handled.
type inventory struct {
	mu        sync.Mutex
	stock     int
	won, lost int
	handledAt []time.Time
	seen      map[int]bool
}

func (inv *inventory) buy(req *PurchaseRequest) (won, duplicate bool, left int) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.seen[req.RequestID] {
		return false, true, inv.stock // a redelivery: the request was already decided
	}
	inv.seen[req.RequestID] = true
	inv.handledAt = append(inv.handledAt, time.Now())
	if inv.stock > 0 {
		inv.stock--
		inv.won++
		return true, false, inv.stock
	}
	inv.lost++
	return false, false, 0
}

func (inv *inventory) handled() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return len(inv.handledAt)
}

// busiestWindow returns the most requests handled within any window of width w.
func (inv *inventory) busiestWindow(w time.Duration) int {
	inv.mu.Lock()
	ts := append([]time.Time(nil), inv.handledAt...)
	inv.mu.Unlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, start := 0, 0
	for end := range ts {
		for ts[end].Sub(ts[start]) >= w {
			start++
		}
		best = max(best, end-start+1)
	}
	return best
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	var c config
	fs := env.NewFlagSet("seckill", stdout, &f)
	fs.IntVar(&c.requests, "requests", 300, "purchase requests in the burst")
	fs.IntVar(&c.users, "users", 20, "users sending the burst concurrently")
	fs.IntVar(&c.rate, "rate", 200, "requests the order service handles per second (the throttle)")
	fs.IntVar(&c.stock, "stock", 50, "items on sale")
	fs.DurationVar(&c.window, "window", 500*time.Millisecond, "window the handling rate is reported over")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.requests < 1 || c.users < 1 || c.rate < 1 || c.stock < 0 || c.window <= 0 {
		return errors.New("-requests, -users and -rate must be positive, -stock not negative and -window positive")
	}
	session, err := env.Open(ctx, f, stdout)
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker
	topic, group := f.Name("seckill_requests"), f.Name("seckill_orders")

	admin, err := rocketmq.NewAdmin(rocketmq.AdminConfig{NameServers: broker.NameServers})
	if err != nil {
		return err
	}
	defer admin.Close()
	pub, err := broker.NewPublisher()
	if err != nil {
		return err
	}
	defer pub.Close()
	r, err := router.New(router.Config{
		Publisher:     pub,
		NewSubscriber: broker.Subscribers(),
	})
	if err != nil {
		return err
	}

	inv := &inventory{stock: c.stock, seen: map[int]bool{}}
	allHandled := make(chan struct{})
	var closeOnce sync.Once
	throttle := wmmiddleware.NewThrottle(int64(c.rate), time.Second)
	err = router.Subscribe(r, topic, func(ctx context.Context, req *PurchaseRequest) error {
		won, dup, left := inv.buy(req)
		switch {
		case dup:
			out.Printf("request %d redelivered, already decided", req.RequestID)
		case won:
			if left == 0 {
				out.Printf("request %d (%s) bought the last item: sold out", req.RequestID, req.UserID)
			}
		}
		if inv.handled() == c.requests {
			closeOnce.Do(func() { close(allHandled) })
		}
		return nil
	}, router.WithGroup(group), router.WithMiddleware(throttle.Middleware))
	if err != nil {
		return err
	}

	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}
	out.Printf("order service consuming %s at most %d requests/s; %d items in stock", topic, c.rate, c.stock)

	// The burst: every user sends its requests as fast as the broker takes them.
	var published atomic.Int64
	reqs, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for u := range c.users {
		g.Go(func() error {
			for id := u; id < c.requests; id += c.users {
				req := PurchaseRequest{RequestID: id, UserID: fmt.Sprintf("user-%d", id)}
				if err := reqs.Publish(gctx, topic, req, router.WithMetadata(rocketmq.MetadataKeys, req.UserID)); err != nil {
					return err
				}
				published.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return running.Stop(fmt.Errorf("publish the burst: %w", err))
	}
	out.Printf("burst of %d requests queued in %s; backlog right after the burst: %d",
		c.requests, time.Since(start).Round(time.Millisecond), c.requests-inv.handled())

	// The backlog drains at the throttled rate.
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	var waitErr error
wait:
	for {
		select {
		case <-allHandled:
			break wait
		case <-ticker.C:
			committed := "unknown"
			if lag, err := brokerBacklog(ctx, admin, group, topic); err == nil {
				committed = strconv.FormatInt(lag, 10)
			}
			out.Printf("backlog: %d requests waiting, %d handled (broker: %s not committed yet)",
				int(published.Load())-inv.handled(), inv.handled(), committed)
		case <-running.Done():
			return running.Stop(fmt.Errorf("router stopped early: %w", running.Err()))
		case <-ctx.Done():
			waitErr = fmt.Errorf("backlog not drained: %w", ctx.Err())
			break wait
		}
	}
	elapsed := time.Since(start)
	if err := running.Stop(waitErr); err != nil {
		return err
	}

	inv.mu.Lock()
	won, lost := inv.won, inv.lost
	inv.mu.Unlock()
	out.Printf("backlog: 0 requests waiting, %d handled in %s", inv.handled(), elapsed.Round(time.Millisecond))
	out.Printf("result: %d requests handled, %d bought an item, %d found it sold out", won+lost, won, lost)
	allowed := int(int64(c.rate) * int64(c.window) / int64(time.Second))
	out.Printf("busiest %s window: %d requests handled (the throttle allows %d)", c.window, inv.busiestWindow(c.window), allowed)
	// What an operator's dashboard shows, from any RocketMQ: the group's backlog at the broker.
	// The consumer commits its offsets every few seconds and when it stops, with one-way
	// requests, so the broker's count settles shortly after shutdown.
	lag, err := brokerBacklog(ctx, admin, group, topic)
	for deadline := time.Now().Add(10 * time.Second); err == nil && lag > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		lag, err = brokerBacklog(ctx, admin, group, topic)
	}
	if err != nil {
		return fmt.Errorf("read the backlog from the broker: %w", err)
	}
	out.Printf("broker: group %s has %d unconsumed messages in %s", group, lag, topic)
	return nil
}

// brokerBacklog is the group's lag on the topic as the brokers count it (rocketmq.Admin).
func brokerBacklog(ctx context.Context, admin *rocketmq.Admin, group, topic string) (int64, error) {
	p, err := admin.GroupProgress(ctx, group, topic)
	return p.Lag, err
}
