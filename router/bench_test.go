package router_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/rocketbus/rocketbus/router"
)

// BenchmarkRouter compares a typed router.Subscribe handler with a raw Watermill handler that
// decodes by hand on a plain Watermill router (none of this package's middleware), both on
// GoChannel, to measure what the typed layer costs per message.
func BenchmarkRouter(b *testing.B) {
	payload, _ := json.Marshal(order{ID: "o-1", Total: 42})

	// measure publishes b.N messages and waits until the handler counted them all.
	measure := func(b *testing.B, gc *gochannel.GoChannel, all <-chan struct{}) {
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := gc.Publish("orders", message.NewMessage(watermill.NewUUID(), payload)); err != nil {
				b.Fatal(err)
			}
		}
		<-all
		b.StopTimer()
	}
	counter := func(b *testing.B) (func(), <-chan struct{}) {
		var n atomic.Int64
		all := make(chan struct{})
		target := int64(b.N)
		return func() {
			if n.Add(1) == target {
				close(all)
			}
		}, all
	}

	b.Run("typed", func(b *testing.B) {
		gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, watermill.NopLogger{})
		defer gc.Close()
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		if err != nil {
			b.Fatal(err)
		}
		done, all := counter(b)
		if err := router.Subscribe(r, "orders", func(ctx context.Context, o *order) error {
			done()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		go func() { _ = r.Run(context.Background()) }()
		<-r.Running()
		measure(b, gc, all)
		_ = r.Close()
	})
	b.Run("watermill", func(b *testing.B) {
		gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, watermill.NopLogger{})
		defer gc.Close()
		wm, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		done, all := counter(b)
		wm.AddConsumerHandler("raw", "orders", gc, func(msg *message.Message) error {
			var o order
			if err := json.Unmarshal(msg.Payload, &o); err != nil {
				return err
			}
			done()
			return nil
		})
		go func() { _ = wm.Run(context.Background()) }()
		<-wm.Running()
		measure(b, gc, all)
		_ = wm.Close()
	})
}
