package kratosbus_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/go-kratos/kratos/v2"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware/recovery"

	"github.com/rocketbus/rocketbus/kratosbus"
)

func ExampleNewServer() {
	// In production: kratosbus.WithNameServer("127.0.0.1:9876") and nothing else. The example
	// runs on Watermill's in-process GoChannel instead.
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubSub.Close()
	backend := kratosbus.WithBackend(pubSub, func(group string) (message.Subscriber, error) { return pubSub, nil })
	logger := log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelError))

	srv, err := kratosbus.NewServer(backend, kratosbus.WithCodec("json"), kratosbus.WithLogger(logger),
		kratosbus.WithMiddleware(recovery.Recovery()))
	if err != nil {
		panic(err)
	}

	type OrderPlaced struct {
		ID string `json:"id"`
	}
	app := kratos.New(kratos.Name("shop"), kratos.Logger(logger), kratos.Server(srv))
	err = kratosbus.RegisterSubscriber(srv, "orders", "shipping",
		func(ctx context.Context, topic string, headers kratosbus.Headers, o *OrderPlaced) error {
			fmt.Printf("%s: ship order %s (tag %s)\n", topic, o.ID, headers["rocketmq_tags"])
			return app.Stop()
		})
	if err != nil {
		panic(err)
	}

	// The data layer's side, usually injected by wire (kratosbus.ProviderSet).
	pub, err := kratosbus.NewPublisher(kratosbus.WithBackend(pubSub, nil), kratosbus.WithLogger(logger))
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	go func() {
		<-srv.Router().Running()
		_ = pub.Publish(context.Background(), "orders", OrderPlaced{ID: "1001"}, kratosbus.WithTag("paid"))
	}()
	if err := app.Run(); err != nil {
		panic(err)
	}

	// Output:
	// orders: ship order 1001 (tag paid)
}
