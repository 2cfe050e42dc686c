package minirmq_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// TestConcurrentTraffic drives the broker from many goroutines at once — producers, long-polling
// pullers, send-backs, delayed messages, connection drops — so the race detector sees the
// server's own concurrency without rocketmq-client-go's racy push consumer. Every sent message is
// pulled exactly once per queue offset.
func TestConcurrentTraffic(t *testing.T) {
	srv := minirmq.Run(t, minirmq.WithTimeScale(0.001))
	tg := &target{addr: srv.Addr(), srv: srv}
	topic, group := unique("T"), unique("G")
	require.NoError(t, srv.CreateTopic(topic, 4))
	const producers, perProducer = 4, 50

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		prod := tg.producer(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perProducer; i++ {
				m := primitive.NewMessage(topic, []byte(fmt.Sprintf("p%d-%d", p, i)))
				if i%10 == 0 {
					m.WithDelayTimeLevel(1)
				}
				if _, err := prod.SendSync(ctx, m); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}

	var mu sync.Mutex
	got := map[string]int{}
	for q := 0; q < 4; q++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			r := bufio.NewReader(nc)
			offset := int64(0)
			for opaque := int32(1); ctx.Err() == nil; opaque++ {
				mu.Lock()
				done := len(got) == producers*perProducer
				mu.Unlock()
				if done {
					return
				}
				req := pullRequest(topic, group, q, offset, 200*time.Millisecond)
				req.Opaque = opaque
				if _, err := nc.Write(encodeRaw(req)); err != nil {
					t.Error(err)
					return
				}
				_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				var resp *rawCmd
				for resp == nil || resp.Opaque != opaque { // skip the send-backs' replies
					if resp, err = readRaw(r); err != nil {
						t.Error(err)
						return
					}
				}
				if next, err := strconv.ParseInt(resp.ExtFields["nextBeginOffset"], 10, 64); err == nil && resp.Code != 21 {
					offset = next
				}
				for _, m := range primitive.DecodeMessage(resp.Body) {
					mu.Lock()
					got[string(m.Body)]++
					mu.Unlock()
					// Give some messages back for a retry, as a failing consumer would.
					if m.QueueOffset%7 == 0 {
						back := &rawCmd{Code: 36, Opaque: -opaque, ExtFields: map[string]string{"group": group,
							"offset": strconv.FormatInt(m.CommitLogOffset, 10), "delayLevel": "1",
							"originMsgId": m.MsgId, "originTopic": topic, "maxReconsumeTimes": "16"}}
						if _, err := nc.Write(encodeRaw(back)); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5 && ctx.Err() == nil; i++ {
			time.Sleep(50 * time.Millisecond)
			_ = srv.Lag(group, topic)
			_ = srv.Messages("%RETRY%" + group)
		}
	}()
	wg.Wait()
	require.NoError(t, ctx.Err(), "traffic did not complete")
	assert.Len(t, got, producers*perProducer)
	for body, n := range got {
		assert.Equal(t, 1, n, "message %s pulled from the topic once", body)
	}
	waitFor(t, "retries to be scheduled and delivered", 10*time.Second, func() bool {
		return len(srv.Messages("%RETRY%"+group)) > 0
	})
}
