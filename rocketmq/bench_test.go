package rocketmq_test

import (
	"context"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// The benchmarks run against $ROCKETMQ_NAMESRV or an in-process minirmq (which then shares the
// CPU with the clients). Every pair (ours vs the raw client) uses the same broker, topic setup,
// payload and concurrency, so the ratio is what matters.

const benchParallelism = 4 // goroutines per GOMAXPROCS in the publish benchmarks

var benchPayload = make([]byte, 256)

func benchTopic(b *testing.B, ns []string, prefix string) string {
	b.Helper()
	topic := uniqueTopic(prefix)
	require.NoError(b, newSubscriber(b, ns).SubscribeInitialize(topic))
	return topic
}

func reportRate(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkPublish(b *testing.B) {
	ns := nameServers(b)
	b.Run("Publisher", func(b *testing.B) {
		topic := benchTopic(b, ns, "bench-pub")
		pub := newPublisher(b, ns)
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				msg := message.NewMessage(watermill.NewUUID(), benchPayload)
				msg.Metadata.Set("k", "v")
				if err := pub.Publish(topic, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, b.N)
	})
	b.Run("RawSendSync", func(b *testing.B) {
		topic := benchTopic(b, ns, "bench-raw")
		p, err := producer.NewDefaultProducer(
			producer.WithNameServer(ns),
			producer.WithGroupName("bench_raw"),
			producer.WithInstanceName("bench-raw-"+watermill.NewShortUUID()),
		)
		require.NoError(b, err)
		require.NoError(b, p.Start())
		b.Cleanup(func() { _ = p.Shutdown() })
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				// The same information a Watermill message carries: a UUID and one property.
				msg := primitive.NewMessage(topic, benchPayload)
				msg.WithProperty(rocketmq.UUIDProperty, watermill.NewUUID())
				msg.WithProperty("k", "v")
				if _, err := p.SendSync(context.Background(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, b.N)
	})
}

// BenchmarkPublishBatch compares one Publish call with 100 messages (sent as RocketMQ batches)
// to 100 Publish calls with one message each, from one goroutine.
func BenchmarkPublishBatch(b *testing.B) {
	ns := nameServers(b)
	const perCall = 100
	msgs := func() []*message.Message {
		out := make([]*message.Message, perCall)
		for i := range out {
			out[i] = message.NewMessage(watermill.NewUUID(), benchPayload)
		}
		return out
	}
	b.Run("Batch100", func(b *testing.B) {
		topic := benchTopic(b, ns, "bench-batch")
		pub := newPublisher(b, ns)
		b.ResetTimer()
		for sent := 0; sent < b.N; sent += perCall {
			require.NoError(b, pub.Publish(topic, msgs()...))
		}
		reportRate(b, b.N)
	})
	b.Run("Single", func(b *testing.B) {
		topic := benchTopic(b, ns, "bench-single")
		pub := newPublisher(b, ns)
		b.ResetTimer()
		for sent := 0; sent < b.N; sent += perCall {
			for _, m := range msgs() {
				require.NoError(b, pub.Publish(topic, m))
			}
		}
		reportRate(b, b.N)
	})
}

// prefill publishes n messages (in batches, untimed) and returns the topic.
func prefill(b *testing.B, ns []string, n int) string {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	topic := benchTopic(b, ns, "bench-sub")
	pub := newPublisher(b, ns)
	batch := make([]*message.Message, 0, 100)
	for i := 0; i < n; i++ {
		batch = append(batch, message.NewMessage(watermill.NewUUID(), benchPayload))
		if len(batch) == cap(batch) || i == n-1 {
			require.NoError(b, pub.Publish(topic, batch...))
			batch = batch[:0]
		}
	}
	return topic
}

// BenchmarkSubscribe measures draining b.N stored messages: Subscriber with a reader that acks
// at once vs a raw push consumer whose callback returns success.
func BenchmarkSubscribe(b *testing.B) {
	ns := nameServers(b)
	b.Run("SubscriberAck", func(b *testing.B) {
		topic := prefill(b, ns, b.N)
		sub := newSubscriber(b, ns)
		msgs, err := sub.Subscribe(context.Background(), topic)
		require.NoError(b, err)
		seen := map[string]struct{}{}
		for len(seen) < b.N {
			msg := <-msgs
			seen[msg.UUID] = struct{}{}
			msg.Ack()
		}
		b.StopTimer()
		reportRate(b, b.N)
	})
	b.Run("RawPushConsumer", func(b *testing.B) {
		topic := prefill(b, ns, b.N)
		var count atomic.Int64
		done := make(chan struct{})
		pc, err := consumer.NewPushConsumer(
			consumer.WithNameServer(ns),
			consumer.WithGroupName("bench_raw_"+watermill.NewShortUUID()),
			consumer.WithInstance("bench-raw-"+watermill.NewShortUUID()),
			consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		)
		require.NoError(b, err)
		require.NoError(b, pc.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			if count.Add(int64(len(ms))) == int64(b.N) {
				close(done)
			}
			return consumer.ConsumeSuccess, nil
		}))
		require.NoError(b, pc.Start())
		<-done
		b.StopTimer()
		_ = pc.Shutdown()
		reportRate(b, b.N)
	})
}

// BenchmarkEndToEndLatency publishes one message at a time and waits for the handler to get it.
func BenchmarkEndToEndLatency(b *testing.B) {
	ns := nameServers(b)
	topic := benchTopic(b, ns, "bench-lat")
	pub := newPublisher(b, ns)
	sub := newSubscriber(b, ns)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(b, err)
	// Warm up: the consumer owns its queues once the first message arrives.
	require.NoError(b, pub.Publish(topic, message.NewMessage(watermill.NewUUID(), benchPayload)))
	(<-msgs).Ack()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sent := message.NewMessage(watermill.NewUUID(), benchPayload)
		start := time.Now()
		require.NoError(b, pub.Publish(topic, sent))
		for {
			got := <-msgs
			got.Ack()
			if got.UUID == sent.UUID {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// The machine the benchmarks run on may be shared, so the comparisons below alternate rounds of
// both sides and compare their summed times: a load spike then hits both.

const abRounds = 10

func runParallel(workers, n int, send func() error) error {
	var next atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			for next.Add(1) <= int64(n) {
				if err := send(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func reportAB(b *testing.B, n int, ours, raw time.Duration) {
	b.ReportMetric(float64(n)/ours.Seconds(), "ours-msgs/s")
	b.ReportMetric(float64(n)/raw.Seconds(), "raw-msgs/s")
	b.ReportMetric(100*(ours.Seconds()-raw.Seconds())/raw.Seconds(), "overhead-%")
}

// BenchmarkPublishOverheadAB: Publisher.Publish vs producer.SendSync, 16 concurrent senders each.
func BenchmarkPublishOverheadAB(b *testing.B) {
	ns := nameServers(b)
	const workers = 16
	topic := benchTopic(b, ns, "bench-ab-pub")
	pub := newPublisher(b, ns)
	raw, err := producer.NewDefaultProducer(
		producer.WithNameServer(ns),
		producer.WithGroupName("bench_raw"),
		producer.WithInstanceName("bench-raw-"+watermill.NewShortUUID()),
	)
	require.NoError(b, err)
	require.NoError(b, raw.Start())
	b.Cleanup(func() { _ = raw.Shutdown() })

	perRound := max(b.N/abRounds, 1)
	var ours, rawTime time.Duration
	b.ResetTimer()
	for r := 0; r < abRounds; r++ {
		start := time.Now()
		require.NoError(b, runParallel(workers, perRound, func() error {
			msg := message.NewMessage(watermill.NewUUID(), benchPayload)
			msg.Metadata.Set("k", "v")
			return pub.Publish(topic, msg)
		}))
		ours += time.Since(start)
		start = time.Now()
		require.NoError(b, runParallel(workers, perRound, func() error {
			msg := primitive.NewMessage(topic, benchPayload)
			msg.WithProperty(rocketmq.UUIDProperty, watermill.NewUUID())
			msg.WithProperty("k", "v")
			_, err := raw.SendSync(context.Background(), msg)
			return err
		}))
		rawTime += time.Since(start)
	}
	reportAB(b, perRound*abRounds, ours, rawTime)
}

// BenchmarkSubscribeOverheadAB: draining stored messages with Subscriber + immediate Ack vs a raw
// push consumer returning success, each round on a fresh topic with the same messages count.
func BenchmarkSubscribeOverheadAB(b *testing.B) {
	ns := nameServers(b)
	perRound := max(b.N/abRounds, 1)
	var ours, rawTime time.Duration
	for r := 0; r < abRounds; r++ {
		topic := prefill(b, ns, perRound)
		b.StopTimer()
		start := time.Now()
		sub := newSubscriber(b, ns)
		msgs, err := sub.Subscribe(context.Background(), topic)
		require.NoError(b, err)
		for seen := map[string]struct{}{}; len(seen) < perRound; {
			msg := <-msgs
			seen[msg.UUID] = struct{}{}
			msg.Ack()
		}
		ours += time.Since(start)
		require.NoError(b, sub.Close())

		topic = prefill(b, ns, perRound)
		b.StopTimer()
		start = time.Now()
		var count atomic.Int64
		done := make(chan struct{})
		pc, err := consumer.NewPushConsumer(
			consumer.WithNameServer(ns),
			consumer.WithGroupName("bench_raw_"+watermill.NewShortUUID()),
			consumer.WithInstance("bench-raw-"+watermill.NewShortUUID()),
			consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		)
		require.NoError(b, err)
		require.NoError(b, pc.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			if count.Add(int64(len(ms))) == int64(perRound) {
				close(done)
			}
			return consumer.ConsumeSuccess, nil
		}))
		require.NoError(b, pc.Start())
		<-done
		rawTime += time.Since(start)
		_ = pc.Shutdown()
	}
	reportAB(b, perRound*abRounds, ours, rawTime)
}
