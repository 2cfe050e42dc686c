package minirmq_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fastjsonKeys turns fastjson's object-keyed maps ({{"brokerName":..,"queueId":0,..}:v}) into
// plain JSON keyed by queue id, so tests can read the replies the Java tools parse.
var mqKey = regexp.MustCompile(`\{"brokerName":"[^"]*","queueId":(\d+),"topic":"[^"]*"\}:`)

func byQueue(t *testing.T, body []byte, field string) map[string]map[string]int64 {
	t.Helper()
	plain := mqKey.ReplaceAllString(string(body), `"$1":`)
	var out map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(plain), &out), plain)
	var table map[string]map[string]int64
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(out[field], &raw), plain)
	table = map[string]map[string]int64{}
	for q, v := range raw {
		var m map[string]int64
		if err := json.Unmarshal(v, &m); err != nil {
			var n int64
			require.NoError(t, json.Unmarshal(v, &n))
			m = map[string]int64{"offset": n}
		}
		table[q] = m
	}
	return table
}

func TestStatsRequestsOperatorsUse(t *testing.T) {
	tg := newTarget(t)
	broker := tg.brokerAddr(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	p := tg.producer(t)
	res, err := p.SendSync(context.Background(), newMsg(topic, "a").WithKeys([]string{"order-1", "user-9"}))
	require.NoError(t, err)
	sendN(t, p, topic, 3, nil)

	stats := rawRequest(t, broker, &rawCmd{Code: 202, ExtFields: map[string]string{"topic": topic}})
	require.EqualValues(t, 0, stats.Code, stats.Remark)
	offsets := byQueue(t, stats.Body, "offsetTable")
	require.Len(t, offsets, 2)
	assert.EqualValues(t, 4, offsets["0"]["maxOffset"]+offsets["1"]["maxOffset"], "GET_TOPIC_STATS_INFO max offsets")

	runtime := rawRequest(t, broker, &rawCmd{Code: 28})
	require.EqualValues(t, 0, runtime.Code)
	var kv struct{ Table map[string]string }
	require.NoError(t, json.Unmarshal(runtime.Body, &kv))
	for _, key := range []string{"brokerVersionDesc", "putTps", "getTransferedTps", "msgPutTotalTodayNow", "commitLogMaxOffset", "runtime"} {
		assert.Contains(t, kv.Table, key, "GET_BROKER_RUNTIME_INFO is what mqadmin clusterList prints")
	}

	// A group that committed offsets shows up as a consumer of the topic with its progress.
	for q := 0; q < 2; q++ {
		r := rawRequest(t, broker, &rawCmd{Code: 15, ExtFields: map[string]string{"consumerGroup": group, "topic": topic,
			"queueId": strconv.Itoa(q), "commitOffset": "1"}})
		require.EqualValues(t, 0, r.Code)
	}
	who := rawRequest(t, broker, &rawCmd{Code: 300, ExtFields: map[string]string{"topic": topic}})
	assert.Contains(t, string(who.Body), `"`+group+`"`, "QUERY_TOPIC_CONSUME_BY_WHO")
	cs := rawRequest(t, broker, &rawCmd{Code: 208, ExtFields: map[string]string{"consumerGroup": group, "topic": topic}})
	require.EqualValues(t, 0, cs.Code, cs.Remark)
	progress := byQueue(t, cs.Body, "offsetTable")
	assert.EqualValues(t, 1, progress["0"]["consumerOffset"])
	assert.EqualValues(t, 4, progress["0"]["brokerOffset"]+progress["1"]["brokerOffset"])

	conns := rawRequest(t, broker, &rawCmd{Code: 203, ExtFields: map[string]string{"consumerGroup": group}})
	assert.EqualValues(t, 206, conns.Code, "GET_CONSUMER_CONNECTION_LIST: CONSUMER_NOT_ONLINE without clients")
	assert.Equal(t, "the consumer group["+group+"] not online", conns.Remark)

	reset := rawRequest(t, broker, &rawCmd{Code: 222, ExtFields: map[string]string{"topic": topic, "group": group, "timestamp": "0", "isForce": "true"}})
	assert.EqualValues(t, 206, reset.Code, "reset needs online consumers; mqadmin then updates offsets itself")
	assert.Contains(t, reset.Remark, "Consumer not online, so can not reset offset, Group: "+group)

	earliest := rawRequest(t, broker, &rawCmd{Code: 32, ExtFields: map[string]string{"topic": topic, "queueId": strconv.Itoa(res.MessageQueue.QueueId)}})
	require.EqualValues(t, 0, earliest.Code)
	ts, err := strconv.ParseInt(earliest.ExtFields["timestamp"], 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, time.Now().UnixMilli(), ts, float64(time.Minute.Milliseconds()), "GET_EARLIEST_MSG_STORETIME")
}

func TestMessageLookups(t *testing.T) {
	tg := newTarget(t)
	broker := tg.brokerAddr(t)
	topic := unique("T")
	tg.createTopic(t, topic, 2)
	res, err := tg.producer(t).SendSync(context.Background(), newMsg(topic, "find me").WithKeys([]string{"order-1", "user-9"}))
	require.NoError(t, err)

	phys := commitLogOffset(t, res.OffsetMsgID)
	view := rawRequest(t, broker, &rawCmd{Code: 33, ExtFields: map[string]string{"offset": strconv.FormatInt(phys, 10)}})
	require.EqualValues(t, 0, view.Code, view.Remark)
	msgs := primitive.DecodeMessage(view.Body)
	require.Len(t, msgs, 1, "VIEW_MESSAGE_BY_ID returns the stored message")
	assert.Equal(t, "find me", string(msgs[0].Body))
	assert.Equal(t, res.OffsetMsgID, msgs[0].OffsetMsgId)

	query := func(key string, uniq bool) *rawCmd {
		ext := map[string]string{"topic": topic, "key": key, "maxNum": "32", "beginTimestamp": "0",
			"endTimestamp": strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)}
		if uniq {
			ext["_UNIQUE_KEY_QUERY"] = "true"
		}
		return rawRequest(t, broker, &rawCmd{Code: 12, ExtFields: ext})
	}
	// The real broker indexes asynchronously: poll until the key is searchable.
	var byKey *rawCmd
	waitFor(t, "the key index", 10*time.Second, func() bool { byKey = query("user-9", false); return byKey.Code == 0 })
	found := primitive.DecodeMessage(byKey.Body)
	require.Len(t, found, 1)
	assert.Equal(t, "find me", string(found[0].Body))
	byUniq := query(res.MsgID, true)
	require.EqualValues(t, 0, byUniq.Code, byUniq.Remark)
	assert.Len(t, primitive.DecodeMessage(byUniq.Body), 1, "QUERY_MESSAGE by unique key")

	missing := query("no-such-key", false)
	assert.EqualValues(t, 22, missing.Code)
	assert.Equal(t, "can not find message, maybe time range not correct", missing.Remark)
	assert.Equal(t, "0", missing.ExtFields["indexLastUpdateTimestamp"])
}

func commitLogOffset(t *testing.T, offsetMsgID string) int64 {
	t.Helper()
	require.Len(t, offsetMsgID, 32)
	n, err := strconv.ParseInt(strings.ToLower(offsetMsgID[16:]), 16, 64)
	require.NoError(t, err)
	return n
}
