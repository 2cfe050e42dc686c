package minirmq

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Pulls see a message a producer sent only as its reply is written, as the real broker
// dispatches a stored message to its consume queue as it answers the put: a consumer must not
// get a message while its send's reply is still held back.
func TestSendShowsItsMessageWithItsReply(t *testing.T) {
	srv, err := New()
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	require.NoError(t, srv.CreateTopic("woken", 1))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	c := newConn(srv, server)
	defer c.close()

	srv.mu.Lock()
	waiting := srv.store.topics["woken"].queue(0).arrived // what a long-polling pull waits on
	srv.mu.Unlock()

	resp := srv.handle(c, &command{Code: reqSendMessage, ExtFields: map[string]string{
		"producerGroup": "p", "topic": "woken", "queueId": "0", "sysFlag": "0", "bornTimestamp": "0",
		"flag": "0", "properties": "", "reconsumeTimes": "0",
	}, Body: []byte("m")})
	require.EqualValues(t, codeSuccess, resp.Code, resp.Remark)
	require.Len(t, srv.Messages("woken"), 1, "stored")
	select {
	case <-waiting:
		t.Fatal("a waiting pull was woken while the send's reply was held back")
	default:
	}
	pull := &pullRequest{group: "g", topic: "woken", queueID: 0, offset: 0, maxNums: 32, sysFlag: pullSubscription, subscription: "*", expressionTyp: "TAG"}
	early, _ := srv.tryPull(pull)
	require.EqualValues(t, codePullNotFound, early.Code, "a new pull does not see the message before its reply either")

	c.buffer(prepareReply(&command{Opaque: 1}, resp), false)
	c.releaseHeld() // what the read goroutine does right before it writes the replies
	c.flush()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting pull was not woken with the reply")
	}
	late, _ := srv.tryPull(pull)
	require.EqualValues(t, codeSuccess, late.Code, "once the reply is written, pulls get the message")
}
