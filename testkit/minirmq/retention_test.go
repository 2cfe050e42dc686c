package minirmq_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func TestRetentionBySize(t *testing.T) {
	const budget = 64 << 10
	srv := minirmq.Run(t, minirmq.WithRetention(budget, 0))
	tg := &target{addr: srv.Addr(), srv: srv}
	topic := unique("T")
	require.NoError(t, srv.CreateTopic(topic, 1))
	p := tg.producer(t)
	body := make([]byte, 1024)
	for i := 0; i < 200; i++ {
		_, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body))
		require.NoError(t, err)
	}
	kept := srv.Messages(topic)
	require.NotEmpty(t, kept)
	assert.Less(t, len(kept), 200, "old messages were dropped")
	assert.LessOrEqual(t, len(kept)*1024, budget, "what is kept fits the budget")
	assert.EqualValues(t, 199, kept[len(kept)-1].QueueOffset, "the newest are kept")

	q := func(code int16, ext map[string]string) *rawCmd {
		ext["topic"], ext["queueId"] = topic, "0"
		return rawRequest(t, srv.Addr(), &rawCmd{Code: code, ExtFields: ext})
	}
	minOffset := q(31, map[string]string{}).ExtFields["offset"]
	assert.Equal(t, strconv.FormatInt(kept[0].QueueOffset, 10), minOffset, "the queue starts at the oldest kept message")
	moved := rawRequest(t, srv.Addr(), pullRequest(topic, unique("G"), 0, 0, 0))
	assert.EqualValues(t, 21, moved.Code, "a pull of a dropped offset is told where the queue starts")
	assert.Equal(t, minOffset, moved.ExtFields["nextBeginOffset"])
	fresh := q(14, map[string]string{"consumerGroup": unique("G")})
	assert.EqualValues(t, 22, fresh.Code, "a new group has no offset once the queue no longer starts at 0")
}

func TestRetentionByAge(t *testing.T) {
	srv := minirmq.Run(t, minirmq.WithRetention(0, 100*time.Millisecond))
	tg := &target{addr: srv.Addr(), srv: srv}
	topic := unique("T")
	sendN(t, tg.producer(t), topic, 5, nil)
	waitFor(t, "messages to age out", 10*time.Second, func() bool { return len(srv.Messages(topic)) == 0 })
	sendN(t, tg.producer(t), topic, 1, nil)
	assert.Len(t, srv.Messages(topic), 1, "new messages are kept until they age")
}

// BenchmarkRetentionSoak pushes 1 KiB messages through a broker with a 64 MiB budget and reports
// peak heap and bytes per retained message (go test -bench RetentionSoak -benchtime 1000000x).
func BenchmarkRetentionSoak(b *testing.B) {
	const budget = 64 << 20
	srv := minirmq.Run(b, minirmq.WithRetention(budget, 0))
	p := benchProducer(b, srv.Addr())
	topic := unique("SOAK")
	body := make([]byte, 1024)
	var peak uint64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	batch := make([]*primitive.Message, 0, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i += cap(batch) {
		batch = batch[:0]
		for j := 0; j < cap(batch) && i+j < b.N; j++ {
			batch = append(batch, primitive.NewMessage(topic, body))
		}
		if _, err := p.SendSync(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
		if (i/cap(batch))%256 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	retained := len(srv.Messages(topic))
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(retained), "retained-msgs")
	if retained > 0 {
		b.ReportMetric(float64(ms.HeapAlloc-base)/float64(retained), "bytes/retained-msg")
	}
}

// Consume-from-last and from-timestamp only matter once a queue no longer starts at offset 0
// (before that the broker gives a new group offset 0): retention moves the start.
func TestConsumeFromLastAndTimestampAfterRetention(t *testing.T) {
	srv := minirmq.Run(t, minirmq.WithRetention(8<<10, 0))
	tg := &target{addr: srv.Addr(), srv: srv}
	topic := unique("T")
	require.NoError(t, srv.CreateTopic(topic, 1))
	p := tg.producer(t)
	sendN(t, p, topic, 20, func(i int, m *primitive.Message) { m.Body = append(make([]byte, 1024), byte(i)) })
	kept := srv.Messages(topic)
	require.Greater(t, kept[0].QueueOffset, int64(0), "retention moved the queue's start")

	var fromLast, fromTime received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&fromLast), consumer.WithConsumeFromWhere(consumer.ConsumeFromLastOffset))
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&fromTime), consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp),
		consumer.WithConsumeTimestamp("20200101000000"))
	waitFor(t, "from-timestamp to read what is kept", 30*time.Second, func() bool { return fromTime.len() >= len(kept) })
	time.Sleep(500 * time.Millisecond) // from-last is polling at the end of the queue by now
	sendN(t, p, topic, 3, func(i int, m *primitive.Message) { m.Body = []byte("fresh-" + strconv.Itoa(i)) })
	waitFor(t, "from-last to read the new messages", 30*time.Second, func() bool { return fromLast.len() >= 3 })
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, fromLast.bodies(), 3, "consume-from-last starts at the end: no old message")
	for i := 0; i < 3; i++ {
		assert.Equal(t, 1, fromLast.bodies()["fresh-"+strconv.Itoa(i)])
	}
	assert.GreaterOrEqual(t, fromTime.len(), len(kept), "a time before every message starts at the oldest kept one")
}
