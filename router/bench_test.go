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
// decodes by hand, both on GoChannel, to measure what the typed layer costs per message.
func BenchmarkRouter(b *testing.B) {
	payload, _ := json.Marshal(order{ID: "o-1", Total: 42})

	run := func(b *testing.B, register func(r *router.Router, gc *gochannel.GoChannel, done func()) error) {
		gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, watermill.NopLogger{})
		defer gc.Close()
		r, err := router.New(router.Config{Subscriber: gc, DropUndecodable: true})
		if err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		all := make(chan struct{})
		target := int64(b.N)
		if err := register(r, gc, func() {
			if n.Add(1) == target {
				close(all)
			}
		}); err != nil {
			b.Fatal(err)
		}
		go func() { _ = r.Run(context.Background()) }()
		<-r.Running()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := gc.Publish("orders", message.NewMessage(watermill.NewUUID(), payload)); err != nil {
				b.Fatal(err)
			}
		}
		<-all
		b.StopTimer()
		_ = r.Close()
	}

	b.Run("typed", func(b *testing.B) {
		run(b, func(r *router.Router, _ *gochannel.GoChannel, done func()) error {
			return router.Subscribe(r, "orders", func(ctx context.Context, o *order) error {
				done()
				return nil
			})
		})
	})
	b.Run("watermill", func(b *testing.B) {
		run(b, func(r *router.Router, gc *gochannel.GoChannel, done func()) error {
			r.Watermill().AddConsumerHandler("raw", "orders", gc, func(msg *message.Message) error {
				var o order
				if err := json.Unmarshal(msg.Payload, &o); err != nil {
					return err
				}
				done()
				return nil
			})
			return nil
		})
	})
}
