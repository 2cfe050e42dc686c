package testkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/rocketbus/rocketbus/testkit"
)

const (
	// benchBatch messages make one benchmark operation on every backend.
	benchBatch = 100
	// benchPayloadSize is below the 4 KiB at which the RocketMQ client starts compressing.
	benchPayloadSize = 1024
)

// BenchmarkPublishHandle measures the same workload on every backend: one publisher sends
// benchBatch messages of benchPayloadSize bytes, one Publish call per message (each waits for
// the server to accept it), while a consumer-group subscriber handles (acks) them; an operation
// ends when the last one is handled. msgs/s is messages handled per second of wall time.
//
//	go test -run '^$' -bench PublishHandle ./testkit/
func BenchmarkPublishHandle(b *testing.B) {
	testkit.Each(b, func(b *testing.B, be testkit.Backend) {
		topic := be.Topic(b)
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		msgs, err := be.GroupSubscriber(b, "bench").Subscribe(ctx, topic)
		if err != nil {
			b.Fatalf("subscribe: %v", err)
		}
		pub := be.Publisher(b)

		handled := make(chan struct{}, benchBatch)
		go func() {
			for msg := range msgs {
				msg.Ack()
				select {
				case handled <- struct{}{}:
				case <-ctx.Done():
				}
			}
		}()

		payload := make([]byte, benchPayloadSize)
		for i := range payload {
			payload[i] = 'a' + byte(i%26)
		}
		send := func(n int) {
			for range n {
				if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), payload)); err != nil {
					b.Fatalf("publish: %v", err)
				}
			}
		}
		wait := func(n int) {
			timeout := time.NewTimer(deliveryTimeout)
			defer timeout.Stop()
			for range n {
				select {
				case <-handled:
				case <-timeout.C:
					b.Fatalf("messages not handled within %v", deliveryTimeout)
				}
			}
		}

		// One round trip before timing, so that connections, topic routes and (for RocketMQ)
		// the consumer's first rebalance are not billed to the first operation.
		send(1)
		wait(1)

		b.SetBytes(benchBatch * benchPayloadSize)
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			send(benchBatch)
			wait(benchBatch)
		}
		b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "msgs/s")
	})
}
