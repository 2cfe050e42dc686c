package minirmq_test

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sendRequest(topic string, queueID int, body []byte) *rawCmd {
	return &rawCmd{Code: 10, Body: body, ExtFields: map[string]string{
		"producerGroup": "PG_raw", "topic": topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
		"queueId": strconv.Itoa(queueID), "sysFlag": "0", "bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10),
		"flag": "0", "properties": "UNIQ_KEY\x01raw-1\x02", "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "16", "batch": "false",
	}}
}

// The broker's answers to bad sends, as a real RocketMQ 4.9.4 gives them.
func TestBadSendsAreRejectedLikeTheRealBroker(t *testing.T) {
	tg := newTarget(t)
	broker := tg.brokerAddr(t)
	topic := unique("T")
	tg.createTopic(t, topic, 2)

	cases := []struct {
		name   string
		req    *rawCmd
		code   int16
		remark string
	}{
		{"blank topic", sendRequest("", 0, []byte("x")), 1, "The specified topic is blank"},
		{"illegal characters", sendRequest("a b", 0, []byte("x")), 1, "contains illegal characters"},
		{"too long", sendRequest(string(bytes.Repeat([]byte("t"), 128)), 0, []byte("x")), 1, "longer than topic max length"},
		{"body over 4 MiB", sendRequest(topic, 0, make([]byte, 4<<20+1)), 13, ""},
		{"queue out of range", sendRequest(topic, 9, []byte("x")), 1, "queueId[9] is illegal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := rawRequest(t, broker, c.req)
			assert.Equal(t, c.code, resp.Code, resp.Remark)
			assert.Contains(t, resp.Remark, c.remark)
		})
	}
	t.Run("empty body is stored", func(t *testing.T) {
		// The broker itself accepts an empty body; only the Java client refuses to send one.
		resp := rawRequest(t, broker, sendRequest(topic, 0, nil))
		assert.EqualValues(t, 0, resp.Code, resp.Remark)
		assert.Len(t, resp.ExtFields["msgId"], 32)
	})
	t.Run("unsupported request code", func(t *testing.T) {
		resp := rawRequest(t, broker, &rawCmd{Code: 9999})
		assert.EqualValues(t, 3, resp.Code)
		assert.Equal(t, " request type 9999 not supported", resp.Remark)
	})
	t.Run("unknown topic route", func(t *testing.T) {
		nope := unique("nope")
		resp := rawRequest(t, tg.addr, &rawCmd{Code: 105, ExtFields: map[string]string{"topic": nope}})
		assert.EqualValues(t, 17, resp.Code)
		assert.Equal(t, "No topic route info in name server for the topic: "+nope+
			"\nSee http://rocketmq.apache.org/docs/faq/ for further details.", resp.Remark)
	})
	require.NotEmpty(t, broker)
}

// The broker keeps a message's flag and sysFlag bits as sent: the Java client marks zlib bodies
// with compression-type bits beyond the Go client's 0x1.
func TestFlagsAndSysFlagBitsKeptAsSent(t *testing.T) {
	tg := newTarget(t)
	broker := tg.brokerAddr(t)
	topic := unique("T")
	tg.createTopic(t, topic, 1)
	req := sendRequest(topic, 0, []byte("not really compressed"))
	req.ExtFields["sysFlag"] = strconv.Itoa(0x1 | 0x200) // compressed, zlib type bits
	req.ExtFields["flag"] = "7"
	resp := rawRequest(t, broker, req)
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	pulled := rawRequest(t, broker, pullRequest(topic, unique("G"), 0, 0, 0))
	require.EqualValues(t, 0, pulled.Code)
	// Decode by hand: the client's decoder would try to unzip the body.
	body := pulled.Body
	require.Greater(t, len(body), 40)
	flag := int32(binary.BigEndian.Uint32(body[16:20]))
	sysFlag := int32(binary.BigEndian.Uint32(body[36:40]))
	assert.EqualValues(t, 7, flag)
	assert.EqualValues(t, 0x201, sysFlag)
}
