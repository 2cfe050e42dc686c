package rocketmq_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"
)

// startMinirmqProcess runs cmd/minirmq as a child process so that Watermill's TestReconnect can
// restart the broker from outside with an ordinary command (SIGHUP: connections dropped,
// messages and offsets kept).
func startMinirmqProcess(t *testing.T) (addr string, restart []string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "minirmq")
	build := exec.Command("go", "build", "-o", bin, "github.com/rocketbus/rocketbus/cmd/minirmq")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr = l.Addr().String()
	require.NoError(t, l.Close())

	cmd := exec.Command(bin, "-listen", addr)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 30*time.Second, 50*time.Millisecond)
	return addr, []string{"kill", "-HUP", strconv.Itoa(cmd.Process.Pid)}
}

// TestPubSubReconnect is Watermill's TestReconnect: 10 000 messages from 100 publishers while
// the broker restarts twice.
func TestPubSubReconnect(t *testing.T) {
	if os.Getenv("ROCKETMQ_NAMESRV") != "" {
		t.Skip("the reconnect test restarts its own minirmq process")
	}
	nameServers(t) // applies the race-detector policy
	addr, restart := startMinirmqProcess(t)
	pubSub, _ := suiteConstructors([]string{addr}, false)
	tests.TestReconnect(t, tests.TestContext{
		TestID: tests.NewTestID(),
		Features: tests.Features{
			ConsumerGroups:        true,
			Persistent:            true,
			RestartServiceCommand: restart,
		},
	}, pubSub)
}
