// Command quickstart publishes one message to RocketMQ and handles it with a typed router
// handler. Without flags it runs on an embedded broker:
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -namesrv 127.0.0.1:9876   # a real RocketMQ
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
)

// OrderPlaced is the event of the example.
type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	if err := env.NewFlagSet("quickstart", stdout, &f).Parse(args); err != nil {
		return err
	}
	session, err := env.Open(ctx, f, stdout)
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker
	topic, group := f.Name("quickstart_orders"), f.Name("quickstart_billing")

	// The publisher side: a Watermill publisher for RocketMQ, and a typed publisher over it.
	pub, err := broker.NewPublisher()
	if err != nil {
		return err
	}
	defer pub.Close()
	orders, err := router.NewPublisher(pub, router.JSON())
	if err != nil {
		return err
	}

	// The consumer side: one RocketMQ subscriber per consumer group, created by the router.
	r, err := router.New(router.Config{
		Publisher:     pub,
		NewSubscriber: broker.Subscribers(),
	})
	if err != nil {
		return err
	}
	handled := make(chan *OrderPlaced, 1)
	err = router.Subscribe(r, topic, func(ctx context.Context, o *OrderPlaced) error {
		tags, _ := rocketmq.TagsFromCtx(ctx)
		msgID, _ := rocketmq.MsgIDFromCtx(ctx)
		out.Printf("handled order %s (total %d, tag %q, RocketMQ message id %s)", o.ID, o.Total, tags, msgID)
		handled <- o
		return nil
	}, router.WithGroup(group))
	if err != nil {
		return err
	}

	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}
	out.Printf("router running: group %s subscribed to topic %s", group, topic)

	order := OrderPlaced{ID: "1001", Total: 4200}
	if err := orders.Publish(ctx, topic, order, router.WithMetadata(rocketmq.MetadataTags, "paid")); err != nil {
		return running.Stop(err)
	}
	out.Printf("published order %s to %s", order.ID, topic)

	var waitErr error
	select {
	case <-handled:
	case <-running.Done():
		waitErr = fmt.Errorf("router stopped before the message was handled: %w", running.Err())
	case <-ctx.Done():
		waitErr = fmt.Errorf("no message handled: %w", ctx.Err())
	}
	if err := running.Stop(waitErr); err != nil {
		return err
	}
	out.Printf("done")
	return nil
}
