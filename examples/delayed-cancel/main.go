// Command delayed-cancel cancels orders that are not paid in time. Placing an order publishes
// a delayed "payment deadline" message; RocketMQ holds it until the deadline, then the handler
// cancels the order if it is still unpaid and leaves paid orders alone. No polling of the
// database, no timer per order in the service.
//
// The delay is set with Watermill's delay component (components/delay); the RocketMQ publisher
// turns it into a 4.x delay level (rounded up: 1s 5s 10s 30s 1m 2m ... 2h). The embedded broker
// runs its delays 100 times faster, so the default 30 s deadline takes 300 ms; on a real broker
// (-namesrv) it takes the full 30 s.
//
//	go run ./examples/delayed-cancel
//	go run ./examples/delayed-cancel -namesrv 127.0.0.1:9876 -pay-within 5s
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// timeScale speeds up the embedded broker's delay levels.
const timeScale = 0.01

// PaymentDeadline is delivered when an order's time to pay is over.
type PaymentDeadline struct {
	OrderID string `json:"order_id"`
}

// Status of an order.
type Status string

// Order statuses.
const (
	Unpaid    Status = "unpaid"
	Paid      Status = "paid"
	Cancelled Status = "cancelled"
)

// orderDB stands for the order service's database.
type orderDB struct {
	mu     sync.Mutex
	status map[string]Status
	placed map[string]time.Time
}

// cancelIfUnpaid is the conditional update a real service runs in SQL
// (UPDATE orders SET status='cancelled' WHERE id=? AND status='unpaid'), so a payment racing
// the deadline is never lost.
func (db *orderDB) cancelIfUnpaid(id string) (Status, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	s, ok := db.status[id]
	if !ok {
		return "", false
	}
	if s == Unpaid {
		db.status[id] = Cancelled
		return Cancelled, true
	}
	return s, true
}

func (db *orderDB) set(id string, s Status) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.status[id] = s
	if s == Unpaid {
		db.placed[id] = time.Now()
	}
}

func (db *orderDB) placedAt(id string) time.Time {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.placed[id]
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "delayed-cancel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	var payWithin time.Duration
	var n int
	fs := env.NewFlagSet("delayed-cancel", stdout, &f)
	fs.DurationVar(&payWithin, "pay-within", 30*time.Second, "time a customer has to pay (rounded up to a RocketMQ delay level)")
	fs.IntVar(&n, "orders", 6, "orders to place; every third one is paid in time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if payWithin <= 0 || n < 1 {
		return errors.New("-pay-within and -orders must be positive")
	}
	session, err := env.Open(ctx, f, stdout, minirmq.WithTimeScale(timeScale))
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker
	level := rocketmq.DelayLevelFor(payWithin)
	wait := rocketmq.DelayLevels[level-1]
	if broker.Embedded != nil {
		out.Printf("the embedded broker runs delays x%g: delay level %d (%s) takes %s", timeScale, level, wait,
			time.Duration(float64(wait)*timeScale))
	}
	topic, group := f.Name("payment_deadline"), f.Name("order_canceller")

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

	db := &orderDB{status: map[string]Status{}, placed: map[string]time.Time{}}
	var mu sync.Mutex
	checked := map[string]int{}
	allChecked := make(chan struct{})
	err = router.Subscribe(r, topic, func(ctx context.Context, d *PaymentDeadline) error {
		status, ok := db.cancelIfUnpaid(d.OrderID)
		if !ok {
			out.Printf("deadline of unknown order %s (from an earlier run?), ignored", d.OrderID)
			return nil
		}
		after := time.Since(db.placedAt(d.OrderID)).Round(time.Millisecond)
		if status == Cancelled {
			out.Printf("order %s: deadline reached %s after placing, still unpaid -> cancelled", d.OrderID, after)
		} else {
			out.Printf("order %s: deadline reached %s after placing, %s -> kept", d.OrderID, after, status)
		}
		mu.Lock()
		checked[d.OrderID]++
		if len(checked) == n {
			select {
			case <-allChecked:
			default:
				close(allChecked)
			}
		}
		mu.Unlock()
		return nil
	}, router.WithGroup(group))
	if err != nil {
		return err
	}
	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}

	deadlines, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}
	withDelay := func(m *message.Message) { delay.Message(m, delay.For(payWithin)) }
	// Every order is placed, and every third one paid, before any deadline is published: with
	// the broker's delays sped up, a deadline could otherwise arrive before the payment that
	// beats it in real time (30 s against a payment that takes a moment).
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("o-%d", i)
		db.set(id, Unpaid)
		out.Printf("order %s placed", id)
	}
	for i := 3; i <= n; i += 3 {
		id := fmt.Sprintf("o-%d", i)
		db.set(id, Paid)
		out.Printf("order %s paid", id)
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("o-%d", i)
		if err := deadlines.Publish(ctx, topic, PaymentDeadline{OrderID: id}, withDelay,
			router.WithMetadata(rocketmq.MetadataKeys, id)); err != nil {
			return err
		}
		out.Printf("order %s: payment deadline in %s", id, payWithin)
	}
	if b := broker.Embedded; b != nil {
		held := 0
		for _, m := range b.Messages("SCHEDULE_TOPIC_XXXX") {
			if m.Properties["REAL_TOPIC"] == topic {
				held++
			}
		}
		out.Printf("the broker holds %d deadline messages in SCHEDULE_TOPIC_XXXX until they are due", held)
	}

	if err := running.StopAfter(ctx, allChecked, "every deadline arrived"); err != nil {
		return err
	}
	counts := map[Status]int{}
	db.mu.Lock()
	for _, s := range db.status {
		counts[s]++
	}
	db.mu.Unlock()
	out.Printf("done: %d cancelled, %d paid, %d unpaid", counts[Cancelled], counts[Paid], counts[Unpaid])
	return nil
}
