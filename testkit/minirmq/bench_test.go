package minirmq_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// BenchmarkNew measures start-to-ready: after New returns the server answers requests.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		s, err := minirmq.New()
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
}

func benchProducer(b *testing.B, addr string) rocketmq.Producer {
	p, err := rocketmq.NewProducer(producer.WithNameServer([]string{addr}), producer.WithGroupName(unique("PG")),
		producer.WithInstanceName(unique("p")), producer.WithRetry(2))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown() })
	return p
}

func benchTarget(b *testing.B) string {
	return minirmq.NameServer(b)
}

// BenchmarkSendSync is SendSync throughput of 1 KiB messages through rocketmq-client-go, on
// minirmq in memory and with a data directory side by side (or on $ROCKETMQ_NAMESRV).
func BenchmarkSendSync(b *testing.B) {
	if addr := os.Getenv(minirmq.EnvNameServer); addr != "" {
		benchSendSync(b, addr)
		return
	}
	b.Run("memory", func(b *testing.B) { benchSendSync(b, minirmq.Run(b).Addr()) })
	b.Run("data-dir", func(b *testing.B) { benchSendSync(b, minirmq.Run(b, minirmq.WithDataDir(b.TempDir())).Addr()) })
}

func benchSendSync(b *testing.B, addr string) {
	topic := unique("B")
	p := benchProducer(b, addr)
	body := make([]byte, 1024)
	if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendReceiveLatency sends one message at a time and waits for the push consumer to
// get it: p50 and p99 of send -> handler.
func BenchmarkSendReceiveLatency(b *testing.B) {
	addr := benchTarget(b)
	topic := unique("B")
	p := benchProducer(b, addr)
	if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("warm-up"))); err != nil {
		b.Fatal(err)
	}
	skipClientRaces(b)
	arrived := make(chan struct{}, 1)
	c, err := rocketmq.NewPushConsumer(consumer.WithNameServer([]string{addr}), consumer.WithGroupName(unique("G")),
		consumer.WithInstance(unique("c")), consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	if err != nil {
		b.Fatal(err)
	}
	var warm atomic.Bool
	if err := c.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		for range ms {
			if !warm.Swap(true) {
				continue // the warm-up message
			}
			arrived <- struct{}{}
		}
		return consumer.ConsumeSuccess, nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer c.Shutdown()
	for !warm.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	body := make([]byte, 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			b.Fatal("message not delivered")
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkMemoryPerMessage reports retained heap per stored 1 KiB message.
func BenchmarkMemoryPerMessage(b *testing.B) {
	srv := minirmq.Run(b)
	p := benchProducer(b, srv.Addr())
	topic := unique("B")
	body := make([]byte, 1024)
	const n = 20000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		msgs := make([]*primitive.Message, 0, 100)
		for i := 0; i < n; i += 100 {
			msgs = msgs[:0]
			for j := 0; j < 100; j++ {
				msgs = append(msgs, primitive.NewMessage(topic, body).WithKeys([]string{strconv.Itoa(i + j)}))
			}
			if _, err := p.SendSync(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/msg")
	}
}

// BenchmarkRecoverDataDir is the start of a server on a data directory holding 100k 1 KiB
// messages without a checkpoint (as a killed server leaves it): the whole commit log replays.
func BenchmarkRecoverDataDir(b *testing.B) {
	const batches, perBatch = 1000, 100
	dir := b.TempDir()
	srv := minirmq.Run(b, minirmq.WithDataDir(dir))
	p := benchProducer(b, srv.Addr())
	topic := unique("R")
	body := make([]byte, 1024)
	for i := 0; i < batches; i++ {
		msgs := make([]*primitive.Message, perBatch)
		for j := range msgs {
			msgs[j] = primitive.NewMessage(topic, body)
		}
		if _, err := p.SendSync(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := srv.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "checkpoint.json")); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := minirmq.New(minirmq.WithDataDir(dir))
		if err != nil {
			b.Fatal(err)
		}
		if n := len(s.Messages(topic)); n != batches*perBatch {
			b.Fatalf("recovered %d messages, want %d", n, batches*perBatch)
		}
		b.StopTimer()
		_ = s.Close()
		// Close saved a checkpoint; remove it so every round replays everything.
		if err := os.Remove(filepath.Join(dir, "checkpoint.json")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(batches*perBatch)/(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9), "msgs/s")
}
