package minirmq_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func pullRequest(topic, group string, queue int, offset int64, suspend time.Duration) *rawCmd {
	sysFlag := 4 // the pull carries its subscription, so no heartbeat is needed
	if suspend > 0 {
		sysFlag |= 2
	}
	return &rawCmd{Code: 11, ExtFields: map[string]string{
		"consumerGroup": group, "topic": topic, "queueId": strconv.Itoa(queue),
		"queueOffset": strconv.FormatInt(offset, 10), "maxMsgNums": "32", "sysFlag": strconv.Itoa(sysFlag),
		"commitOffset": "0", "suspendTimeoutMillis": strconv.FormatInt(suspend.Milliseconds(), 10),
		"subscription": "*", "subVersion": "0", "expressionType": "TAG",
	}}
}

func TestLongPollingPullAnswersWhenAMessageArrives(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 1)
	p := tg.producer(t)

	nc, err := net.Dial("tcp", tg.brokerAddr(t))
	require.NoError(t, err)
	defer nc.Close()
	// The suspend time is far beyond the read deadline: only the arriving message can answer in time.
	require.NoError(t, nc.SetDeadline(time.Now().Add(15*time.Second)))
	req := pullRequest(topic, group, 0, 0, 60*time.Second)
	req.Opaque = 42
	_, err = nc.Write(encodeRaw(req))
	require.NoError(t, err)

	time.Sleep(300 * time.Millisecond) // let the pull park on the broker
	sendN(t, p, topic, 1, nil)

	resp, err := readRaw(bufio.NewReader(nc))
	require.NoError(t, err, "the suspended pull must answer as soon as a message arrives")
	assert.Equal(t, int32(42), resp.Opaque)
	assert.EqualValues(t, 0, resp.Code, resp.Remark)
	assert.Equal(t, "1", resp.ExtFields["nextBeginOffset"])
	assert.Equal(t, "1", resp.ExtFields["maxOffset"])
	msgs := primitive.DecodeMessage(resp.Body)
	require.Len(t, msgs, 1)
	assert.Equal(t, topic+"-0", string(msgs[0].Body))
}

func TestPullAnswersAtTheEdgesOfAQueue(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 1)
	sendN(t, tg.producer(t), topic, 3, nil)
	broker := tg.brokerAddr(t)

	resp := rawRequest(t, broker, pullRequest(topic, group, 0, 3, 0))
	assert.EqualValues(t, 19, resp.Code, "PULL_NOT_FOUND at the max offset")
	resp = rawRequest(t, broker, pullRequest(topic, group, 0, 10, 0))
	assert.EqualValues(t, 21, resp.Code, "PULL_OFFSET_MOVED past the max offset")
	assert.Equal(t, "3", resp.ExtFields["nextBeginOffset"], "corrected to the max offset")
	resp = rawRequest(t, broker, pullRequest(topic, group, 0, 1, 0))
	require.EqualValues(t, 0, resp.Code)
	assert.Len(t, primitive.DecodeMessage(resp.Body), 2)
	resp = rawRequest(t, broker, pullRequest(topic, group, 7, 0, 0))
	assert.EqualValues(t, 1, resp.Code, "an illegal queue id is a system error")

	noSub := pullRequest(topic, group, 0, 0, 0)
	noSub.ExtFields["sysFlag"] = "0"
	resp = rawRequest(t, broker, noSub)
	assert.EqualValues(t, 24, resp.Code, "a group that never sent a heartbeat has no subscription")
	assert.Contains(t, resp.Remark, "the consumer's group info not exist")
}

func TestOffsetQueries(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 1)
	p := tg.producer(t)
	sendN(t, p, topic, 3, nil)
	time.Sleep(50 * time.Millisecond)
	sendN(t, p, topic, 2, nil)
	broker := tg.brokerAddr(t)
	pulled := primitive.DecodeMessage(rawRequest(t, broker, pullRequest(topic, group, 0, 0, 0)).Body)
	require.Len(t, pulled, 5)
	fourth := pulled[3].StoreTimestamp
	q := func(code int16, ext map[string]string) *rawCmd {
		ext["topic"], ext["queueId"] = topic, "0"
		return rawRequest(t, broker, &rawCmd{Code: code, ExtFields: ext})
	}

	assert.Equal(t, "5", q(30, map[string]string{}).ExtFields["offset"], "GET_MAX_OFFSET")
	assert.Equal(t, "0", q(31, map[string]string{}).ExtFields["offset"], "GET_MIN_OFFSET")
	search := func(ts int64) string {
		return q(29, map[string]string{"timestamp": strconv.FormatInt(ts, 10)}).ExtFields["offset"]
	}
	assert.Equal(t, "3", search(fourth), "SEARCH_OFFSET_BY_TIMESTAMP: the message stored at that time")
	assert.Equal(t, "3", search(fourth-3), "else the message stored nearest to it")
	assert.Equal(t, "0", search(0))
	assert.Equal(t, "4", search(fourth+time.Hour.Milliseconds()), "past the end: the last message, not the max offset")

	// A group that never committed: the real broker answers SUCCESS with offset 0 while the queue
	// still starts at 0, so even consume-from-last starts at the beginning of a fresh topic.
	resp := q(14, map[string]string{"consumerGroup": group})
	assert.EqualValues(t, 0, resp.Code)
	assert.Equal(t, "0", resp.ExtFields["offset"])

	assert.EqualValues(t, 0, q(15, map[string]string{"consumerGroup": group, "commitOffset": "4"}).Code)
	resp = q(14, map[string]string{"consumerGroup": group})
	assert.EqualValues(t, 0, resp.Code)
	assert.Equal(t, "4", resp.ExtFields["offset"])
}

func TestOrderlyConsumptionKeepsPerKeyOrder(t *testing.T) {
	tg := newTarget(t)
	topic := unique("T")
	tg.createTopic(t, topic, 4)
	p := tg.producer(t, producer.WithQueueSelector(producer.NewHashQueueSelector()))
	const keys, perKey = 4, 15
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			m := primitive.NewMessage(topic, []byte(fmt.Sprintf("%d:%d", k, i)))
			m.WithShardingKey(fmt.Sprintf("order-%d", k))
			_, err := p.SendSync(context.Background(), m)
			require.NoError(t, err)
		}
	}
	var mu sync.Mutex
	seen := map[string][]int{}
	var total atomic.Int32
	tg.pushConsumer(t, unique("G"), topic, "*", func(_ context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			var k, i int
			_, _ = fmt.Sscanf(string(m.Body), "%d:%d", &k, &i)
			key := strconv.Itoa(k)
			seen[key] = append(seen[key], i)
			total.Add(1)
		}
		return consumer.ConsumeSuccess, nil
	}, consumer.WithConsumerOrder(true))
	waitFor(t, "all ordered messages", 60*time.Second, func() bool { return total.Load() >= keys*perKey })
	mu.Lock()
	defer mu.Unlock()
	for k, seq := range seen {
		for i := range seq {
			assert.Equal(t, i, seq[i], "key %s delivered out of order: %v", k, seq)
		}
	}
}

func TestQueueLocksAreExclusive(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	broker := tg.brokerAddr(t)
	brokerName := "broker-a"
	body := func(client string) []byte {
		return []byte(fmt.Sprintf(`{"consumerGroup":%q,"clientId":%q,"mqSet":[{"topic":%q,"brokerName":%q,"queueId":0},{"topic":%q,"brokerName":%q,"queueId":1}]}`,
			group, client, topic, brokerName, topic, brokerName))
	}
	a := rawRequest(t, broker, &rawCmd{Code: 41, Body: body("client-a")})
	require.EqualValues(t, 0, a.Code, a.Remark)
	assert.Contains(t, string(a.Body), `"queueId":0`)
	assert.Contains(t, string(a.Body), `"queueId":1`)
	b := rawRequest(t, broker, &rawCmd{Code: 41, Body: body("client-b")})
	require.EqualValues(t, 0, b.Code)
	assert.NotContains(t, string(b.Body), `"queueId"`, "queues locked by client-a must not be granted to client-b")
	require.EqualValues(t, 0, rawRequest(t, broker, &rawCmd{Code: 42, Body: body("client-a")}).Code)
	b = rawRequest(t, broker, &rawCmd{Code: 41, Body: body("client-b")})
	assert.Contains(t, string(b.Body), `"queueId":1`, "unlocked queues can be taken")
}

// delayScale is the minirmq time scale of these tests: delay level 2 (5 s) becomes 50 ms.
const delayScale = 0.01

func TestDelayLevels(t *testing.T) {
	tg := newTarget(t, minirmq.WithTimeScale(delayScale))
	topic := unique("T")
	tg.createTopic(t, topic, 2)
	level, want := 2, time.Duration(float64(5*time.Second)*delayScale)
	if tg.srv == nil {
		level, want = 1, time.Second // real time on a real broker
	}
	m := primitive.NewMessage(topic, []byte("later"))
	m.WithDelayTimeLevel(level)
	_, err := tg.producer(t).SendSync(context.Background(), m)
	require.NoError(t, err)
	if tg.srv != nil {
		parked := tg.srv.Messages("SCHEDULE_TOPIC_XXXX")
		require.NotEmpty(t, parked, "a delayed message waits in the schedule topic")
		assert.Equal(t, topic, parked[len(parked)-1].Properties["REAL_TOPIC"])
	}
	var got received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&got))
	waitFor(t, "the delayed message", 30*time.Second, func() bool { return got.len() == 1 })
	d := got.snapshot()[0]
	stored := time.UnixMilli(d.StoreTimestamp).Sub(time.UnixMilli(d.BornTimestamp))
	assert.GreaterOrEqual(t, stored, want-5*time.Millisecond, "stored in the real topic only after the delay")
	assert.Equal(t, "later", string(d.Body))
}

func TestRetryThenDeadLetter(t *testing.T) {
	tg := newTarget(t, minirmq.WithTimeScale(delayScale))
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 1)
	sendN(t, tg.producer(t), topic, 1, nil)
	var mu sync.Mutex
	var reconsumes []int32
	tg.pushConsumer(t, group, topic, "*", func(ctx context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			reconsumes = append(reconsumes, m.ReconsumeTimes)
			assert.Equal(t, topic, m.Topic, "the client restores the original topic of a retry")
		}
		if cc, ok := primitive.GetConcurrentlyCtx(ctx); ok {
			cc.DelayLevelWhenNextConsume = 1 // 1 s on a real broker
		}
		return consumer.ConsumeRetryLater, nil
	}, consumer.WithMaxReconsumeTimes(2))
	dlq := "%DLQ%" + group
	waitFor(t, "the message in the dead-letter queue", 60*time.Second, func() bool {
		r := rawRequest(t, tg.brokerAddr(t), &rawCmd{Code: 30, ExtFields: map[string]string{"topic": dlq, "queueId": "0"}})
		return r.ExtFields["offset"] == "1"
	})
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	assert.Equal(t, []int32{0, 1, 2}, reconsumes, "one delivery plus MaxReconsumeTimes retries")
	mu.Unlock()
	if tg.srv != nil {
		dead := tg.srv.Messages(dlq)
		require.Len(t, dead, 1)
		assert.Equal(t, topic, dead[0].Properties["RETRY_TOPIC"])
		assert.EqualValues(t, 3, dead[0].ReconsumeTimes)
	}
}

func TestDefaultRetryDelayGrowsWithReconsumeTimes(t *testing.T) {
	tg := newTarget(t, minirmq.WithTimeScale(delayScale))
	srv := tg.embeddedOnly(t) // the real first retry takes 10 s and the second 30 s
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 1)
	sendN(t, tg.producer(t), topic, 1, nil)
	var deliveries atomic.Int32
	tg.pushConsumer(t, group, topic, "*", func(ctx context.Context, ms ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		if deliveries.Add(1) < 3 {
			return consumer.ConsumeRetryLater, nil
		}
		return consumer.ConsumeSuccess, nil
	})
	waitFor(t, "two retries", 30*time.Second, func() bool { return deliveries.Load() >= 3 })
	var levels []string
	for _, m := range srv.Messages("SCHEDULE_TOPIC_XXXX") {
		levels = append(levels, m.Properties["DELAY"])
	}
	assert.Equal(t, []string{"3", "4"}, levels, "delay level 3 + reconsume times")
}

type txListener struct {
	mu      sync.Mutex
	local   map[string]primitive.LocalTransactionState
	checked map[string]int
}

func (l *txListener) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.local[string(m.Body)]
}

func (l *txListener) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checked[string(m.Body)]++
	return primitive.CommitMessageState
}

func TestTransactions(t *testing.T) {
	tg := newTarget(t, minirmq.WithTransactionCheck(200*time.Millisecond, 200*time.Millisecond, 15))
	if tg.srv == nil {
		// Make the real broker check back soon; it applies after its current wait (up to 60 s).
		r := rawRequest(t, tg.brokerAddr(t), &rawCmd{Code: 25, Body: []byte("transactionCheckInterval=1000\ntransactionTimeOut=1000\n")})
		require.EqualValues(t, 0, r.Code, r.Remark)
	}
	topic := unique("T")
	tg.createTopic(t, topic, 2)
	l := &txListener{local: map[string]primitive.LocalTransactionState{
		"commit": primitive.CommitMessageState, "rollback": primitive.RollbackMessageState, "unknown": primitive.UnknowState,
	}, checked: map[string]int{}}
	p, err := newTxProducer(t, tg, l)
	require.NoError(t, err)
	for _, body := range []string{"commit", "rollback", "unknown"} {
		res, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte(body)))
		require.NoError(t, err)
		require.Equal(t, primitive.SendOK, res.Status)
	}
	var got received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&got))
	waitFor(t, "committed and checked-back messages", 120*time.Second, func() bool { return got.len() >= 2 })
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, map[string]int{"commit": 1, "unknown": 1}, got.bodies(), "rolled back messages never show")
	l.mu.Lock()
	assert.GreaterOrEqual(t, l.checked["unknown"], 1, "the unknown transaction was checked back")
	assert.Zero(t, l.checked["commit"])
	l.mu.Unlock()
	if tg.srv != nil {
		assert.Zero(t, tg.srv.PendingTransactions())
	}
}

func newTxProducer(t *testing.T, tg *target, l primitive.TransactionListener) (interface {
	SendMessageInTransaction(context.Context, *primitive.Message) (*primitive.TransactionSendResult, error)
}, error) {
	p, err := producer.NewTransactionProducer(l, producer.WithNameServer([]string{tg.addr}),
		producer.WithGroupName(unique("TXG")), producer.WithInstanceName(unique("tx")), producer.WithRetry(1))
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p, nil
}
