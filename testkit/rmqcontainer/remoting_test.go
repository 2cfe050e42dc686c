package rmqcontainer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// codeGetRouteInfoByTopic is the name server request the tests read routes with; the package
// itself only needs cluster info.
const codeGetRouteInfoByTopic = 105

// topicRoute asks a name server for GET_ROUTEINFO_BY_TOPIC and returns the raw body.
func topicRoute(ctx context.Context, nameServer, topic string) (string, error) {
	resp, err := invoke(ctx, nameServer, codeGetRouteInfoByTopic, map[string]string{"topic": topic}, nil)
	if err != nil {
		return "", err
	}
	if resp.Code != 0 {
		return "", fmt.Errorf("name server %s: no route for topic %q: code %d %s", nameServer, topic, resp.Code, resp.Remark)
	}
	return string(resp.Body), nil
}

// TestAdvertiseOnMinirmq sends the advertised-address update to an in-process minirmq and reads
// the result back through the name server, as Run does with a container.
func TestAdvertiseOnMinirmq(t *testing.T) {
	srv := minirmq.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	body, err := clusterInfo(ctx, srv.Addr())
	require.NoError(t, err)
	registered, found := registeredBroker(body, srv.BrokerAddr())
	assert.True(t, registered)
	assert.True(t, found)

	const want = "127.0.0.1:45678"
	_, found = registeredBroker(body, want)
	require.False(t, found)
	require.NoError(t, updateBrokerConfig(ctx, srv.Addr(), map[string]string{"brokerIP1": "127.0.0.1", "listenPort": "45678", "brokerPermission": "6"}))
	body, err = clusterInfo(ctx, srv.Addr())
	require.NoError(t, err)
	_, found = registeredBroker(body, want)
	assert.True(t, found, "cluster info after the update: %s", body)
	assert.Equal(t, want, srv.BrokerAddr())

	require.NoError(t, srv.CreateTopic("rmqc_route", 2))
	route, err := topicRoute(ctx, srv.Addr(), "rmqc_route")
	require.NoError(t, err)
	assert.Contains(t, route, `"`+want+`"`)
	_, err = topicRoute(ctx, srv.Addr(), "rmqc_missing")
	assert.ErrorContains(t, err, "no route")
}

func TestUpdateBrokerConfigRefused(t *testing.T) {
	srv := minirmq.Run(t)
	err := updateBrokerConfig(context.Background(), srv.Addr(), map[string]string{"brokerIP1": "not a host name!"})
	assert.ErrorContains(t, err, "refused UPDATE_BROKER_CONFIG")
}

// TestRealBrokerClusterInfo reads cluster info and the TBW102 route from a real broker when
// ROCKETMQ_NAMESRV names one. Read-only: the shared broker's config is never changed.
func TestRealBrokerClusterInfo(t *testing.T) {
	addr := os.Getenv(minirmq.EnvNameServer)
	if addr == "" {
		t.Skipf("set %s to check the parser against a real name server", minirmq.EnvNameServer)
	}
	addr = strings.Split(addr, ";")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := clusterInfo(ctx, addr)
	require.NoError(t, err)
	registered, _ := registeredBroker(body, "")
	assert.True(t, registered, "a running broker is listed: %s", body)
	route, err := topicRoute(ctx, addr, "TBW102")
	require.NoError(t, err)
	assert.Contains(t, route, "brokerAddrs")
}

func TestRegisteredBroker(t *testing.T) {
	// The Java name server writes numeric map keys unquoted.
	java := `{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"172.17.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}`
	registered, found := registeredBroker(java, "127.0.0.1:32768")
	assert.True(t, registered)
	assert.False(t, found)
	_, found = registeredBroker(java, "172.17.0.2:10911")
	assert.True(t, found)
	_, found = registeredBroker(java, "172.17.0.2:1091")
	assert.False(t, found, "a prefix of the address is not the address")

	registered, _ = registeredBroker(`{"brokerAddrTable":{"broker-a":{"brokerAddrs":{},"brokerName":"broker-a"}}}`, "")
	assert.False(t, registered, "a broker entry without addresses is not registered")
	registered, _ = registeredBroker(`{"brokerAddrTable":{},"clusterAddrTable":{}}`, "")
	assert.False(t, registered)
}

// TestInvokeAgainstBadPeers covers peers that are not RocketMQ servers.
func TestInvokeAgainstBadPeers(t *testing.T) {
	for name, reply := range map[string][]byte{
		"closes at once":  nil,
		"huge length":     {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1},
		"binary header":   {0, 0, 0, 10, 1, 0, 0, 2, '{', '}', 0, 0, 0, 0},
		"header too long": {0, 0, 0, 6, 0, 0, 0, 9, '{', '}'},
		"not json":        {0, 0, 0, 6, 0, 0, 0, 2, 'x', 'y'},
	} {
		t.Run(name, func(t *testing.T) {
			addr := fakePeer(t, reply)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := invoke(ctx, addr, codeGetBrokerClusterInfo, nil, nil)
			assert.Error(t, err)
		})
	}
}

func TestInvokeHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // hold the connection open without answering
		}
		close(accepted)
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = invoke(ctx, ln.Addr().String(), codeGetBrokerClusterInfo, nil, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// TestFrameRoundTrip checks the frame layout against the protocol: total length first, then the
// serialize type and header length, then header and body.
func TestFrameRoundTrip(t *testing.T) {
	frame, err := encodeFrame(remotingHeader{Code: 25, Language: "GO", Version: 317, Opaque: 7, ExtFields: map[string]string{}}, []byte("a=b\n"))
	require.NoError(t, err)
	total := binary.BigEndian.Uint32(frame[0:4])
	assert.Equal(t, len(frame)-4, int(total))
	headerLen := binary.BigEndian.Uint32(frame[4:8])
	assert.Equal(t, byte(0), frame[4], "JSON serialize type")
	assert.JSONEq(t, `{"code":25,"language":"GO","version":317,"opaque":7,"flag":0,"extFields":{}}`, string(frame[8:8+headerLen]))
	h, body, err := readFrame(bytes.NewReader(frame))
	require.NoError(t, err)
	assert.Equal(t, 25, h.Code)
	assert.Equal(t, int32(7), h.Opaque)
	assert.Equal(t, "a=b\n", string(body))
}

// fakePeer accepts one connection, reads the request, writes reply and closes.
func fakePeer(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _, _ = readFrame(c)
		_, _ = c.Write(reply)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}
