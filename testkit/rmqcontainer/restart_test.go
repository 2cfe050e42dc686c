package rmqcontainer

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestWithHostPortValidation(t *testing.T) {
	for _, o := range []Option{WithHostPort(0, 1), WithHostPort(9876, 0), WithHostPort(9876, 70000)} {
		_, err := Run(context.Background(), "img", o)
		assert.ErrorContains(t, err, "ports must be in 1..65535")
	}
}

// TestWithHostPortUnknownPort: a single-port image publishes 9876 only, so fixing 10911 is a
// mistake Run reports before creating anything.
func TestWithHostPortUnknownPort(t *testing.T) {
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Run(ctx, "img", WithSinglePort(), WithHostPort(10911, freePort(t)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithHostPort(10911): the single-port layout publishes only 9876/tcp")
}

// TestRestartKeepsAddresses restarts a container whose name server port is fixed: the name
// server address stays the same, the name server lists the broker at the address clients
// reach, and clients given that same address work against the restarted broker.
func TestRestartKeepsAddresses(t *testing.T) {
	port := freePort(t)
	c := RunTest(t, "", WithHostPort(9876, port))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, err := c.NameServer(ctx)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:"+strconv.Itoa(port), ns, "the name server is published on the fixed port")
	startedAt := containerStartedAt(t, c)

	require.NoError(t, c.Restart(ctx))
	assert.NotEqual(t, startedAt, containerStartedAt(t, c), "the container must have been restarted")
	after, err := c.NameServer(ctx)
	require.NoError(t, err)
	assert.Equal(t, ns, after, "a fixed port survives the restart")
	broker, err := c.BrokerAddr(ctx)
	require.NoError(t, err)
	body, err := clusterInfo(ctx, ns)
	require.NoError(t, err)
	_, found := registeredBroker(body, broker)
	assert.True(t, found, "after the restart the name server must list the broker at %s: %s", broker, body)

	topic := "rmqc_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	createTopic(t, ns, broker, topic)
	sendAndReceive(t, ns, topic)
}

// TestRestartWithoutFixedPorts: Docker moves the ports, and Restart advertises the new ones.
func TestRestartWithoutFixedPorts(t *testing.T) {
	t.Setenv(EnvImage, "") // the minirmq image restarts in a second; a JVM broker would not
	c := RunTest(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, c.Restart(ctx))
	ns, err := c.NameServer(ctx)
	require.NoError(t, err)
	broker, err := c.BrokerAddr(ctx)
	require.NoError(t, err)
	body, err := clusterInfo(ctx, ns)
	require.NoError(t, err)
	_, found := registeredBroker(body, broker)
	assert.True(t, found, "after the restart the name server must list the broker at its new address %s: %s", broker, body)
}

func containerStartedAt(t *testing.T, c *Container) string {
	t.Helper()
	st, err := c.State(context.Background())
	require.NoError(t, err)
	require.True(t, st.Running, "container is %s", st.Status)
	return st.StartedAt
}
