package minirmq_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func heartbeat(clientID, group, topic string) *rawCmd {
	body, _ := json.Marshal(map[string]any{
		"clientID":        clientID,
		"producerDataSet": []any{},
		"consumerDataSet": []any{map[string]any{
			"groupName": group, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
			"consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": false,
			"subscriptionDataSet": []any{map[string]any{"classFilterMode": false, "topic": topic, "subString": "*",
				"tagsSet": []string{}, "codeSet": []string{}, "subVersion": time.Now().UnixMilli(), "expressionType": "TAG"}},
		}},
	})
	return &rawCmd{Code: 34, Body: body}
}

// session is one long-lived raw connection, for requests the broker answers per connection.
type session struct {
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *session {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &session{nc: nc, r: bufio.NewReader(nc)}
}

// call sends req and returns its response, collecting broker-initiated requests on the way.
func (s *session) call(t *testing.T, req *rawCmd, opaque int32) (*rawCmd, []*rawCmd) {
	t.Helper()
	req.Opaque = opaque
	_, err := s.nc.Write(encodeRaw(req))
	require.NoError(t, err)
	var pushed []*rawCmd
	require.NoError(t, s.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		c, err := readRaw(s.r)
		require.NoError(t, err)
		if c.Flag&1 == 0 {
			pushed = append(pushed, c)
			continue
		}
		if c.Opaque == opaque {
			return c, pushed
		}
	}
}

// nextPush waits for a broker-initiated request on the session.
func (s *session) nextPush(t *testing.T) *rawCmd {
	t.Helper()
	require.NoError(t, s.nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		c, err := readRaw(s.r)
		require.NoError(t, err, "expected a request from the broker")
		if c.Flag&1 == 0 {
			return c
		}
	}
}

func consumerList(t *testing.T, broker, group string) (int16, []string) {
	resp := rawRequest(t, broker, &rawCmd{Code: 38, ExtFields: map[string]string{"consumerGroup": group}})
	var body struct {
		ConsumerIDList []string `json:"consumerIdList"`
	}
	if resp.Code == 0 {
		require.NoError(t, json.Unmarshal(resp.Body, &body))
	}
	return resp.Code, body.ConsumerIDList
}

func TestGroupMembershipHeartbeatNotifyUnregister(t *testing.T) {
	tg := newTarget(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	broker := tg.brokerAddr(t)

	code, _ := consumerList(t, broker, group)
	assert.EqualValues(t, 1, code, "a group nobody joined has no consumer list")
	// The retry topic appears with the group's first heartbeat.
	retryRoute := func() int16 {
		return rawRequest(t, tg.addr, &rawCmd{Code: 105, ExtFields: map[string]string{"topic": "%RETRY%" + group}}).Code
	}
	assert.EqualValues(t, 17, retryRoute(), "no %RETRY% route before the first heartbeat")

	a := dial(t, broker)
	resp, _ := a.call(t, heartbeat("10.0.0.1@a", group, topic), 1)
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	_, ids := consumerList(t, broker, group)
	assert.Equal(t, []string{"10.0.0.1@a"}, ids)
	waitFor(t, "the retry topic route", 35*time.Second, func() bool { return retryRoute() == 0 })

	b := dial(t, broker)
	resp, _ = b.call(t, heartbeat("10.0.0.2@b", group, topic), 1)
	require.EqualValues(t, 0, resp.Code)
	note := a.nextPush(t)
	assert.EqualValues(t, 40, note.Code, "the first member is told the group changed")
	assert.Equal(t, group, note.ExtFields["consumerGroup"])
	_, ids = consumerList(t, broker, group)
	assert.ElementsMatch(t, []string{"10.0.0.1@a", "10.0.0.2@b"}, ids)

	resp, _ = b.call(t, &rawCmd{Code: 35, ExtFields: map[string]string{"clientID": "10.0.0.2@b", "consumerGroup": group}}, 2)
	require.EqualValues(t, 0, resp.Code)
	assert.EqualValues(t, 40, a.nextPush(t).Code, "told again when a member unregisters")
	_, ids = consumerList(t, broker, group)
	assert.Equal(t, []string{"10.0.0.1@a"}, ids)

	a.nc.Close()
	waitFor(t, "the closed member to leave", 10*time.Second, func() bool {
		code, _ := consumerList(t, broker, group)
		return code == 1
	})
}

func TestInspection(t *testing.T) {
	tg := newTarget(t)
	srv := tg.embeddedOnly(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	sendN(t, tg.producer(t), topic, 6, func(i int, m *primitive.Message) { m.WithTag("T" + string(rune('0'+i))) })
	msgs := srv.Messages(topic)
	require.Len(t, msgs, 6)
	assert.Equal(t, topic+"-0", string(msgs[0].Body))
	assert.Equal(t, "T0", msgs[0].Tags)
	assert.Len(t, msgs[0].OffsetMsgID, 32)
	assert.NotEqual(t, msgs[0].OffsetMsgID, msgs[0].MsgID, "MsgID is the producer's UNIQ_KEY")
	assert.EqualValues(t, 6, srv.Lag(group, topic), "a group that consumed nothing lags by everything")

	var got received
	tg.pushConsumer(t, group, topic, "*", collectAll(&got))
	waitFor(t, "lag to reach zero", 30*time.Second, func() bool { return srv.Lag(group, topic) == 0 })
	assert.Len(t, srv.Consumers(group), 1)
	var committed int64
	for q := 0; q < 2; q++ {
		off, ok := srv.Offset(group, topic, q)
		require.True(t, ok)
		committed += off
	}
	assert.EqualValues(t, 6, committed)
	assert.Contains(t, srv.Topics(), topic)
	assert.Contains(t, srv.Topics(), "%RETRY%"+group)
}

func TestAutoCreatedTopicsUseTheConfiguredQueueCount(t *testing.T) {
	tg := newTarget(t)
	topic := unique("T")
	sendN(t, tg.producer(t), topic, 1, nil) // no CreateTopic: the broker creates it on first send
	var route struct {
		QueueDatas []struct {
			ReadQueueNums  int `json:"readQueueNums"`
			WriteQueueNums int `json:"writeQueueNums"`
			Perm           int `json:"perm"`
		} `json:"queueDatas"`
	}
	// A real broker registers the new topic with the name server asynchronously.
	var resp *rawCmd
	waitFor(t, "the auto-created topic's route", 35*time.Second, func() bool {
		resp = rawRequest(t, tg.addr, &rawCmd{Code: 105, ExtFields: map[string]string{"topic": topic}})
		return resp.Code == 0
	})
	require.NoError(t, json.Unmarshal(fixJSONKeys(resp.Body), &route))
	require.Len(t, route.QueueDatas, 1)
	assert.Equal(t, 4, route.QueueDatas[0].WriteQueueNums, "defaultTopicQueueNums")
	assert.Equal(t, 6, route.QueueDatas[0].Perm)
}

// RocketMQ's compact binary header (serialize type 1), which the Java client can use.
func TestBinaryHeaderRequestsGetBinaryReplies(t *testing.T) {
	tg := newTarget(t)
	var ext []byte
	for k, v := range map[string]string{"topic": "TBW102"} {
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(k)))
		ext = append(ext, k...)
		ext = binary.BigEndian.AppendUint32(ext, uint32(len(v)))
		ext = append(ext, v...)
	}
	var h []byte
	h = binary.BigEndian.AppendUint16(h, 105)
	h = append(h, 0) // JAVA
	h = binary.BigEndian.AppendUint16(h, 401)
	h = binary.BigEndian.AppendUint32(h, 77) // opaque
	h = binary.BigEndian.AppendUint32(h, 0)  // flag
	h = binary.BigEndian.AppendUint32(h, 0)  // remark
	h = binary.BigEndian.AppendUint32(h, uint32(len(ext)))
	h = append(h, ext...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(4+len(h)))
	frame = binary.BigEndian.AppendUint32(frame, 1<<24|uint32(len(h)))
	frame = append(frame, h...)

	s := dial(t, tg.addr)
	_, err := s.nc.Write(frame)
	require.NoError(t, err)
	require.NoError(t, s.nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	var lb [4]byte
	_, err = s.r.Read(lb[:])
	require.NoError(t, err)
	resp := make([]byte, binary.BigEndian.Uint32(lb[:]))
	_, err = io.ReadFull(s.r, resp)
	require.NoError(t, err)
	assert.EqualValues(t, 1, resp[0], "answered in the binary encoding")
	hdr := resp[4:]
	assert.EqualValues(t, 0, binary.BigEndian.Uint16(hdr[0:2]), "SUCCESS")
	assert.EqualValues(t, 77, binary.BigEndian.Uint32(hdr[5:9]), "opaque echoed")
	assert.EqualValues(t, 1, binary.BigEndian.Uint32(hdr[9:13])&1, "response flag")
	hl := binary.BigEndian.Uint32(resp[:4]) & 0xFFFFFF
	assert.Contains(t, string(resp[4+hl:]), "brokerAddrs", "the route body follows the header")
}

// KeepClosedConsumers reproduces the real broker's stale member: a consumer whose connection
// closed stays listed for the given time, gets no notifications, then leaves.
func TestKeepClosedConsumers(t *testing.T) {
	srv := minirmq.Run(t)
	srv.KeepClosedConsumers(300 * time.Millisecond)
	group, topic := unique("G"), unique("T")
	gone := dial(t, srv.Addr())
	resp, _ := gone.call(t, heartbeat("10.0.0.1@gone", group, topic), 1)
	require.EqualValues(t, 0, resp.Code)
	live := dial(t, srv.Addr())
	resp, _ = live.call(t, heartbeat("10.0.0.2@live", group, topic), 1)
	require.EqualValues(t, 0, resp.Code)

	require.NoError(t, gone.nc.Close())
	time.Sleep(50 * time.Millisecond) // the broker notices the close
	assert.Equal(t, []string{"10.0.0.1@gone", "10.0.0.2@live"}, srv.Consumers(group), "the closed consumer is still a member")
	list := rawRequest(t, srv.Addr(), &rawCmd{Code: 38, ExtFields: map[string]string{"consumerGroup": group}})
	assert.Contains(t, string(list.Body), "10.0.0.1@gone", "and clients are told so")
	waitFor(t, "the stale member to expire", 10*time.Second, func() bool {
		return len(srv.Consumers(group)) == 1
	})
	assert.Equal(t, []string{"10.0.0.2@live"}, srv.Consumers(group))

	srv.KeepClosedConsumers(0)
	require.NoError(t, live.nc.Close())
	waitFor(t, "a closed consumer to leave at once when the fault is off", 10*time.Second, func() bool {
		return len(srv.Consumers(group)) == 0
	})
}
