package rocketmq

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeNameServer answers one request per connection with code and body, the way a name server
// frames it.
func fakeNameServer(t *testing.T, code int, body string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var lengths [8]byte
			if _, err := io.ReadFull(c, lengths[:]); err == nil {
				rest := make([]byte, binary.BigEndian.Uint32(lengths[0:4])-4)
				_, _ = io.ReadFull(c, rest)
				var req remotingHeader
				_ = json.Unmarshal(rest[:binary.BigEndian.Uint32(lengths[4:8])&0xFFFFFF], &req)
				header, _ := json.Marshal(map[string]any{"code": code, "opaque": req.Opaque, "flag": 1, "remark": "r"})
				frame := make([]byte, 8)
				binary.BigEndian.PutUint32(frame[0:4], uint32(4+len(header)+len(body)))
				binary.BigEndian.PutUint32(frame[4:8], uint32(len(header)))
				frame = append(append(frame, header...), body...)
				_, _ = c.Write(frame)
			}
			_ = c.Close()
		}
	}()
	return l.Addr().String()
}

func TestTopicRouteParsesFastjsonRoutes(t *testing.T) {
	// As Apache RocketMQ's name server writes it: integer map keys without quotes.
	body := `{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"c"},` +
		`{"brokerAddrs":{1:"10.0.0.3:10911"},"brokerName":"broker-b","cluster":"c"}],` +
		`"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":2,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1}]}`
	ns := fakeNameServer(t, 0, body)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	route, err := topicRoute(ctx, ns, "%DLQ%g")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"broker-a": "10.0.0.1:10911"}, route.brokers, "masters only")
	assert.True(t, route.hasQueues)
	assert.False(t, route.readable, "perm 2 is write-only")
	assert.Equal(t, 1, route.queueNums)
}

func TestTopicRouteUnknownTopicAndErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	route, err := topicRoute(ctx, fakeNameServer(t, codeTopicNotExist, ""), "nope")
	require.NoError(t, err)
	assert.False(t, route.hasQueues)

	_, err = topicRoute(ctx, fakeNameServer(t, 1, ""), "t")
	assert.ErrorContains(t, err, "answered code 1")

	_, err = topicRoute(ctx, fakeNameServer(t, 0, "not json"), "t")
	assert.ErrorContains(t, err, "decode route")
}
