package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// envChildArgs holds the command line of this test binary re-executed as minirmq.
const envChildArgs = "MINIRMQ_TEST_CHILD_ARGS"

// startChild runs minirmq as a separate process and waits until it serves.
func startChild(t *testing.T, addr string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildArgs+"="+strings.Join(append([]string{"-listen", addr}, args...), " "))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "listening on") }, 10*time.Second, 10*time.Millisecond, "output: %s", &out)
	return cmd
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func queueMaxOffset(t *testing.T, addr, topic string) int64 {
	t.Helper()
	resp := request(t, addr, 30, map[string]string{"topic": topic, "queueId": "0"}, nil)
	require.Equal(t, 0, resp.Code, resp.Remark)
	n, err := strconv.ParseInt(resp.ExtFields["offset"], 10, 64)
	require.NoError(t, err)
	return n
}

// TestKilledServerRestartsFromItsDataDir kills minirmq with SIGKILL, so nothing is saved on the
// way out, and starts a new process on the same data directory.
func TestKilledServerRestartsFromItsDataDir(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	child := startChild(t, addr, "-data-dir", dir)
	var lastID string
	for i := 0; i < 50; i++ {
		resp := request(t, addr, 10, map[string]string{"producerGroup": "p", "topic": "killed", "queueId": "0",
			"sysFlag": "0", "bornTimestamp": "0", "flag": "0", "properties": ""}, []byte(fmt.Sprintf("m%d", i)))
		require.Equal(t, 0, resp.Code, resp.Remark)
		lastID = resp.ExtFields["msgId"]
	}
	resp := request(t, addr, 15, map[string]string{"consumerGroup": "g", "topic": "killed", "queueId": "0", "commitOffset": "20"}, nil)
	require.Equal(t, 0, resp.Code, resp.Remark)
	// Offsets reach the disk with the next checkpoint (every second); messages already have.
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "checkpoint.json"))
		return strings.Contains(string(b), `"offset": 20`)
	}, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	startChild(t, addr, "-data-dir", dir)

	assert.EqualValues(t, 50, queueMaxOffset(t, addr, "killed"), "every acknowledged message survives the kill")
	resp = request(t, addr, 14, map[string]string{"consumerGroup": "g", "topic": "killed", "queueId": "0"}, nil)
	require.Equal(t, 0, resp.Code, resp.Remark)
	assert.Equal(t, "20", resp.ExtFields["offset"])
	phys, err := strconv.ParseInt(lastID[len(lastID)-16:], 16, 64)
	require.NoError(t, err)
	resp = request(t, addr, 33, map[string]string{"offset": strconv.FormatInt(phys, 10)}, nil)
	require.Equal(t, 0, resp.Code, resp.Remark)
	// The stored encoding: body, then the topic's length byte and the topic.
	assert.Contains(t, string(resp.Body), "m49\x06killed", "the last message reads back by its id")
}
