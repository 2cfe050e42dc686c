package router_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/rocketbus/rocketbus/router"
)

func ExampleSubscribe() {
	// Any Watermill Publisher/Subscriber works; RocketMQ is one backend among others.
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubSub.Close()

	r, err := router.New(router.Config{Publisher: pubSub, Subscriber: pubSub})
	if err != nil {
		panic(err)
	}

	type OrderPlaced struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	done := make(chan struct{})
	err = router.Subscribe(r, "orders", func(ctx context.Context, o *OrderPlaced) error {
		fmt.Printf("order %s, total %d, tenant %s\n", o.ID, o.Total, router.Metadata(ctx).Get("tenant"))
		close(done)
		return nil
	}, router.WithGroup("billing"))
	if err != nil {
		panic(err)
	}

	go func() { _ = r.Run(context.Background()) }()
	<-r.Running()

	pub, _ := router.NewPublisher(pubSub, router.JSON())
	if err := pub.Publish(context.Background(), "orders", OrderPlaced{ID: "42", Total: 1999},
		router.WithMetadata("tenant", "acme")); err != nil {
		panic(err)
	}
	<-done
	_ = r.Close()

	// Output:
	// order 42, total 1999, tenant acme
}
