package kratosbus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// BenchmarkRocketMQRoundTrip publishes b.N orders through the data-layer Publisher (one
// synchronous send each) and waits until the server's handler saw all of them, on minirmq or
// the broker in $ROCKETMQ_NAMESRV.
func BenchmarkRocketMQRoundTrip(b *testing.B) {
	ns := minirmq.NameServer(b)
	suffix := watermill.NewShortUUID()
	topic, group := "kb-bench-"+suffix, "kb-bench-g-"+suffix
	pub, err := kratosbus.NewPublisher(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	bus, err := kratosbus.NewServer(kratosbus.WithNameServer(ns), kratosbus.WithLogger(quiet),
		kratosbus.WithSubscriberConfig(func(c *rocketmq.SubscriberConfig) { c.ConsumeFrom = rocketmq.ConsumeFromFirst }))
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	if err := kratosbus.RegisterSubscriber(bus, topic, group, func(ctx context.Context, _ string, _ kratosbus.Headers, o *order) error {
		if n.Add(1) == target {
			close(all)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- bus.Start(context.Background()) }()
	<-bus.Router().Running()

	b.ResetTimer()
	for i := range b.N {
		if err := pub.Publish(context.Background(), topic, order{ID: "b", Total: i}); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d messages arrived", n.Load(), b.N)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = bus.Stop(ctx)
	<-started
}
