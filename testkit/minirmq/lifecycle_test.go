package minirmq_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func TestMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	srv := minirmq.Run(t)
	frames := map[string][]byte{
		"length below header":   {0, 0, 0, 2, 0, 0},
		"huge length":           {0x7f, 0xff, 0xff, 0xff},
		"header past frame end": append(binary.BigEndian.AppendUint32(nil, 8), 0, 0xff, 0xff, 0xff, 'x', 'x', 'x', 'x'),
		"invalid JSON":          append(binary.BigEndian.AppendUint32(nil, 9), 0, 0, 0, 5, '{', 'c', 'o', 'd', 'e'),
		"unknown serialize":     append(binary.BigEndian.AppendUint32(nil, 6), 9, 0, 0, 2, '{', '}'),
		"truncated body":        append(binary.BigEndian.AppendUint32(nil, 100), 0, 0, 0, 2, '{', '}'),
	}
	healthy, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer healthy.Close()
	hr := bufio.NewReader(healthy)
	for name, frame := range frames {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", srv.Addr())
			require.NoError(t, err)
			defer nc.Close()
			_, err = nc.Write(frame)
			require.NoError(t, err)
			if name == "truncated body" {
				nc.(*net.TCPConn).CloseWrite()
			}
			require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
			_, err = nc.Read(make([]byte, 1))
			assert.Error(t, err, "the server closes a connection that sent a malformed frame")
			assert.NotContains(t, err.Error(), "timeout")

			// Another client is unaffected.
			req := &rawCmd{Code: 106, Opaque: 3}
			_, err = healthy.Write(encodeRaw(req))
			require.NoError(t, err)
			require.NoError(t, healthy.SetReadDeadline(time.Now().Add(5*time.Second)))
			resp, err := readRaw(hr)
			require.NoError(t, err)
			assert.EqualValues(t, 0, resp.Code)
		})
	}
}

func TestRestartKeepsMessagesAndOffsets(t *testing.T) {
	tg := newTarget(t)
	srv := tg.embeddedOnly(t)
	topic, group := unique("T"), unique("G")
	tg.createTopic(t, topic, 2)
	p := tg.producer(t)
	before := sendN(t, p, topic, 5, nil)
	var got received
	tg.pushConsumer(t, group, topic, "*", collectAll(&got))
	waitFor(t, "messages before the restart", 30*time.Second, func() bool { return got.len() >= len(before) })

	require.NoError(t, srv.Restart())
	assert.Len(t, srv.Messages(topic), 5, "messages survive a restart")

	// The same clients reconnect on their own and carry on.
	for i := 0; i < 5; i++ {
		waitFor(t, "the producer to reconnect", 30*time.Second, func() bool {
			_, err := p.SendSync(t.Context(), newMsg(topic, "after-"+string(rune('a'+i))))
			return err == nil
		})
	}
	waitFor(t, "messages after the restart", 60*time.Second, func() bool { return len(got.bodies()) >= 10 })
	for _, b := range before {
		assert.Equal(t, 1, got.bodies()[b], "an acked message was not redelivered by the restart")
	}
}

func TestPauseRefusesConnectionsUntilResume(t *testing.T) {
	srv := minirmq.Run(t)
	srv.Pause()
	_, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
	require.Error(t, err, "a paused broker refuses connections")
	require.NoError(t, srv.Resume())
	resp := rawRequest(t, srv.Addr(), &rawCmd{Code: 106})
	assert.EqualValues(t, 0, resp.Code)
}

func TestDropConnectionsClosesClients(t *testing.T) {
	srv := minirmq.Run(t)
	nc, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write(encodeRaw(&rawCmd{Code: 106, Opaque: 1}))
	require.NoError(t, err)
	_, err = readRaw(bufio.NewReader(nc))
	require.NoError(t, err)
	srv.DropConnections()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = nc.Read(make([]byte, 1))
	assert.Error(t, err)
	assert.EqualValues(t, 0, rawRequest(t, srv.Addr(), &rawCmd{Code: 106}).Code, "new connections still work")
}

func TestAdvertisedAddress(t *testing.T) {
	srv := minirmq.Run(t, minirmq.WithAdvertisedAddr("127.0.0.1:1"))
	topic := unique("T")
	require.NoError(t, srv.CreateTopic(topic, 2))
	route := func() string {
		return string(rawRequest(t, srv.Addr(), &rawCmd{Code: 105, ExtFields: map[string]string{"topic": topic}}).Body)
	}
	assert.Contains(t, route(), `"127.0.0.1:1"`)

	// What testcontainers-style setups send after mapping the port.
	resp := rawRequest(t, srv.Addr(), &rawCmd{Code: 25, Body: []byte("brokerIP1=10.9.8.7\nlistenPort=30911\nbrokerPermission=6\n")})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	assert.Contains(t, route(), `"10.9.8.7:30911"`)
	assert.Equal(t, "10.9.8.7:30911", srv.BrokerAddr())
	conf := string(rawRequest(t, srv.Addr(), &rawCmd{Code: 26}).Body)
	assert.True(t, strings.Contains(conf, "brokerIP1=10.9.8.7\n") && strings.Contains(conf, "listenPort=30911\n"), conf)
}

func TestCloseIsIdempotentAndRejectsResume(t *testing.T) {
	srv, err := minirmq.New()
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close())
	assert.Error(t, srv.Resume())
	_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
	assert.Error(t, err)
}

func TestOptionsAreValidated(t *testing.T) {
	_, err := minirmq.New(minirmq.WithAdvertisedAddr("no-port"))
	assert.ErrorContains(t, err, "advertised address")
	_, err = minirmq.New(minirmq.WithAddr("256.0.0.1:0"))
	assert.ErrorContains(t, err, "listen")
	srv := minirmq.Run(t)
	assert.ErrorContains(t, srv.CreateTopic("bad topic", 1), "illegal characters")
	assert.ErrorContains(t, srv.CreateTopic("ok", 0), "queue count")
}

// A client that keeps pipelining requests, or one that never reads its replies, must not keep a
// stopping server from closing its connection: Pause and Close return and the client sees the
// connection end.
func TestStoppingServesNoClientForever(t *testing.T) {
	for _, stop := range []string{"Pause", "Close"} {
		for _, client := range []string{"pipelining", "not reading"} {
			t.Run(stop+"/"+client, func(t *testing.T) {
				srv, err := minirmq.New()
				require.NoError(t, err)
				t.Cleanup(func() { _ = srv.Close() })
				nc, err := net.Dial("tcp", srv.Addr())
				require.NoError(t, err)
				defer nc.Close()

				clientDone := make(chan struct{})
				var answered atomic.Int64
				if client == "pipelining" {
					go func() {
						r := bufio.NewReader(nc)
						for {
							if _, err := readRaw(r); err != nil {
								return
							}
							answered.Add(1)
						}
					}()
				}
				go func() {
					defer close(clientDone)
					frame := encodeRaw(&rawCmd{Code: 106, Opaque: 1})
					burst := bytes.Repeat(frame, 64)
					for {
						if _, err := nc.Write(burst); err != nil {
							return // the server closed the connection
						}
					}
				}()
				if client == "pipelining" {
					waitFor(t, "the server to answer the pipelined requests", 10*time.Second, func() bool { return answered.Load() > 1000 })
				} else {
					time.Sleep(200 * time.Millisecond) // the socket buffers fill up
				}

				stopped := make(chan struct{})
				go func() {
					defer close(stopped)
					if stop == "Pause" {
						srv.Pause()
					} else {
						_ = srv.Close()
					}
				}()
				select {
				case <-stopped:
				case <-time.After(30 * time.Second):
					t.Fatalf("%s did not return while a client kept sending", stop)
				}
				_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
				select {
				case <-clientDone:
				case <-time.After(30 * time.Second):
					t.Fatal("the client's connection was not closed")
				}
			})
		}
	}
}
