package rmqcontainer

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go/log"
)

// fakeApacheDockerfile mimics the apache/rocketmq images' layout: ROCKETMQ_HOME with bin/mqnamesrv
// and bin/mqbroker, ports 9876/10909/10911 exposed, a shell. The "Java" processes are
// internal/fakeapache; the shell is this machine's dash with its libc (nothing is pulled). Its
// entrypoint fails, so the test also proves Run replaces it, as it must replace the real images'
// docker-entrypoint.sh.
const fakeApacheDockerfile = `FROM scratch
COPY rootfs/ /
ENV ROCKETMQ_HOME=/home/rocketmq/rocketmq-5.3.1 HOME=/home/rocketmq PATH=/bin
EXPOSE 9876 10909 10911 10912
WORKDIR /home/rocketmq/rocketmq-5.3.1/bin
ENTRYPOINT ["/fakeapache", "entrypoint-not-overridden"]
CMD ["nameserver"]
`

// fakeApacheContext writes the build context of the fake apache/rocketmq image into dir, or
// skips when this machine has no dynamically linked dash to borrow.
func fakeApacheContext(t *testing.T, dir string) {
	t.Helper()
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil || filepath.Base(shell) != "dash" {
		t.Skipf("the fake apache image borrows /bin/sh as dash; here it is %q (%v)", shell, err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	files := map[string]string{
		"/bin/sh":                         "/bin/sh",
		"/lib/x86_64-linux-gnu/libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2":     "/lib64/ld-linux-x86-64.so.2",
	}
	for src, dst := range files {
		if _, err := os.Stat(src); err != nil {
			t.Skipf("the fake apache image needs %s: %v", src, err)
		}
		copyFile(t, src, filepath.Join(rootfs, dst), 0o755)
	}
	home := filepath.Join(rootfs, "home/rocketmq/rocketmq-5.3.1/bin")
	require.NoError(t, os.MkdirAll(home, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, "mqnamesrv"), []byte("exec /fakeapache namesrv \"$@\"\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, "mqbroker"), []byte("exec /fakeapache broker \"$@\"\n"), 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "fakeapache"), "./internal/fakeapache")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fakeApacheDockerfile), 0o644))
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	b, err := os.ReadFile(src) // follows symlinks: the image gets the real file
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, mode))
}

// TestRunApacheLayout runs the apache layout end to end against an image shaped like
// apache/rocketmq: the start script, broker.conf from the environment, heap settings, the
// separate broker port and its advertised address.
func TestRunApacheLayout(t *testing.T) {
	RequireDocker(t)
	dir := t.TempDir()
	fakeApacheContext(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c, err := Run(ctx, "", WithDockerfile(dir, ""), WithLogger(log.TestLogger(t)),
		WithJVMHeap("256m"), WithBrokerConfig(map[string]string{"brokerName": "broker-x", "defaultTopicQueueNums": "3"}))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Terminate(context.Background())) })
	assert.Equal(t, LayoutApache, c.Layout(), "ROCKETMQ_HOME and 10911 mark an apache/rocketmq image")

	ns, err := c.NameServer(ctx)
	require.NoError(t, err)
	broker, err := c.BrokerAddr(ctx)
	require.NoError(t, err)
	nsMapped, err := c.MappedPort(ctx, "9876/tcp")
	require.NoError(t, err)
	brokerMapped, err := c.MappedPort(ctx, "10911/tcp")
	require.NoError(t, err)
	assert.Equal(t, net.JoinHostPort("127.0.0.1", nsMapped.Port()), ns)
	assert.Equal(t, net.JoinHostPort("127.0.0.1", brokerMapped.Port()), broker)
	assert.NotEqual(t, ns, broker, "name server and broker are separate ports")

	logs := containerLogs(t, c)
	assert.Contains(t, logs, "fakeapache: name server localhost:9876")
	assert.Contains(t, logs, "fakeapache: conf brokerName=broker-x", "user config overrides the default")
	assert.Contains(t, logs, "fakeapache: conf autoCreateTopicEnable=true", "defaults are kept")
	assert.Contains(t, logs, "fakeapache: env MAX_POSSIBLE_HEAP=268435456")
	assert.Contains(t, logs, "fakeapache: env JAVA_OPT_EXT=-Xms268435456 -Xmx268435456 -Xmn134217728")
	assert.Contains(t, logs, "The Name Server boot success.")

	topic := "rmqc_apache_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	createTopic(t, ns, broker, topic)
	route, err := topicRoute(ctx, ns, topic)
	require.NoError(t, err)
	assert.Contains(t, route, `"`+broker+`"`, "the route carries the mapped broker port, not 10911")
	assert.NotContains(t, route, ":10911\"")
	sendAndReceive(t, ns, topic)
}

func containerLogs(t *testing.T, c *Container) string {
	t.Helper()
	r, err := c.Logs(context.Background())
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}
