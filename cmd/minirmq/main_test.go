package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(envChildArgs); ok {
		// Re-executed by a test as a separate minirmq process.
		os.Args = append(os.Args[:1], strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// syncBuffer lets the test read what the server prints while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func clusterInfo(t *testing.T, addr string) int {
	t.Helper()
	return request(t, addr, 106, nil, nil).Code
}

// response is a remoting reply as the tests read it.
type response struct {
	Code      int               `json:"code"`
	Remark    string            `json:"remark"`
	ExtFields map[string]string `json:"extFields"`
	Body      []byte            `json:"-"`
}

// request sends one remoting request (JSON header) on a fresh connection.
func request(t *testing.T, addr string, code int, ext map[string]string, body []byte) response {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	h, _ := json.Marshal(map[string]any{"code": code, "language": "GO", "version": 317, "opaque": 1, "flag": 0, "extFields": ext})
	frame := binary.BigEndian.AppendUint32(nil, uint32(4+len(h)+len(body)))
	frame = binary.BigEndian.AppendUint32(frame, uint32(len(h)))
	_, err = nc.Write(append(append(frame, h...), body...))
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	r := bufio.NewReader(nc)
	var lb [4]byte
	_, err = io.ReadFull(r, lb[:])
	require.NoError(t, err)
	frameBody := make([]byte, binary.BigEndian.Uint32(lb[:]))
	_, err = io.ReadFull(r, frameBody)
	require.NoError(t, err)
	hl := binary.BigEndian.Uint32(frameBody[:4]) & 0xFFFFFF
	var resp response
	require.NoError(t, json.Unmarshal(frameBody[4:4+hl], &resp))
	resp.Body = frameBody[4+hl:]
	return resp
}

func TestServesRestartsOnHUPAndStopsOnTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"-listen", addr, "-advertise", "127.0.0.1:1"}, &out, io.Discard)
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "listening on "+addr) }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, out.String(), "broker address 127.0.0.1:1")
	assert.Equal(t, 0, clusterInfo(t, addr))

	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "restarted") }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0, clusterInfo(t, addr), "serves again after a restart")

	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the server")
	}
	_, err = net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "stopped server must not accept connections")
}

func TestBadFlagsAreRejected(t *testing.T) {
	for _, args := range [][]string{{"-queues", "0"}, {"-time-scale", "-1"}, {"-advertise", "nope"}, {"-listen", "256.1.1.1:1"}, {"-acl", "no-secret"}, {"-data-dir", "/dev/null/store"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		assert.Error(t, err, "args %v", args)
	}
}
