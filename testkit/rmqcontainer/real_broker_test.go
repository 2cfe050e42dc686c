package rmqcontainer

import (
	"bufio"
	"context"
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

// EnvRocketMQDist names a RocketMQ binary distribution (the unpacked rocketmq-all-*-bin-release
// folder) for TestRunRealRocketMQ, which packs it with this machine's JDK into an image laid out
// like apache/rocketmq. No image registry is needed; the test is opt-in because the image is
// about 250 MB and two JVMs start in it.
const envRocketMQDist = "RMQC_ROCKETMQ_DIST"

// java17Opens are the JVM options RocketMQ 4.9, which predates the module system, needs on
// Java 17 (the broker started on this machine runs with the same).
var java17Opens = []string{"-Dio.netty.tryReflectionSetAccessible=true",
	"--add-opens java.base/java.nio=ALL-UNNAMED", "--add-opens java.base/sun.nio.ch=ALL-UNNAMED",
	"--add-opens java.base/java.lang=ALL-UNNAMED", "--add-opens java.base/java.util=ALL-UNNAMED",
	"--add-opens java.base/jdk.internal.ref=ALL-UNNAMED", "--add-opens java.base/jdk.internal.misc=ALL-UNNAMED"}

// TestRunRealRocketMQ runs the real Java name server and broker through Run's apache layout,
// with the distribution's stock scripts: the start script, broker.conf, JVM settings and the
// advertised-address update on a real broker, then a client round trip through the mapping.
//
//	RMQC_ROCKETMQ_DIST=/path/to/rocketmq-4.9.4 go test -run TestRunRealRocketMQ ./testkit/rmqcontainer/
func TestRunRealRocketMQ(t *testing.T) {
	dist := os.Getenv(envRocketMQDist)
	if dist == "" {
		t.Skipf("set %s to a RocketMQ binary distribution to run the real broker in a container", envRocketMQDist)
	}
	RequireDocker(t)
	dir := t.TempDir()
	realRocketMQContext(t, dir, dist, javaHome(t))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Run(ctx, "", WithDockerfile(dir, ""), WithLogger(log.TestLogger(t)),
		WithJVMHeap("256m"), WithJVMOptions(java17Opens...),
		WithBrokerConfig(map[string]string{"brokerName": "broker-rmqc"}))
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Terminate(context.Background())) })
	require.Equal(t, LayoutApache, c.Layout())

	ns, err := c.NameServer(ctx)
	require.NoError(t, err)
	broker, err := c.BrokerAddr(ctx)
	require.NoError(t, err)
	t.Logf("name server %s, broker %s", ns, broker)
	body, err := clusterInfo(ctx, ns)
	require.NoError(t, err)
	assert.Contains(t, body, `"`+broker+`"`)
	assert.Contains(t, body, "broker-rmqc", "broker.conf reached the broker")

	topic := "rmqc_real_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	createTopic(t, ns, broker, topic)
	require.Eventually(t, func() bool {
		_, err := topicRoute(ctx, ns, topic)
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "the broker registers new topics with the name server asynchronously")
	route, err := topicRoute(ctx, ns, topic)
	require.NoError(t, err)
	assert.Contains(t, route, `"`+broker+`"`)
	sendAndReceive(t, ns, topic)
}

// javaHome is $JAVA_HOME, or the JDK of the java on PATH.
func javaHome(t testing.TB) string {
	t.Helper()
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return h
	}
	java, err := exec.LookPath("java")
	require.NoError(t, err, "need JAVA_HOME or java on PATH")
	java, err = filepath.EvalSymlinks(java)
	require.NoError(t, err)
	return filepath.Dir(filepath.Dir(java))
}

// realRocketMQContext lays out dist and the JDK like the apache/rocketmq images
// (ROCKETMQ_HOME=/home/rocketmq/rocketmq-<version>) on an empty base: dash and the few tools
// the stock scripts call, plus every shared library the JDK and those tools load.
func realRocketMQContext(t testing.TB, dir, dist, javaHome string) {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	home := filepath.Join(rootfs, "home/rocketmq/rocketmq-dist")
	require.NoError(t, os.MkdirAll(home, 0o755))
	for _, sub := range []string{"bin", "conf", "lib"} {
		copyTree(t, filepath.Join(dist, sub), filepath.Join(home, sub))
	}
	jdk := filepath.Join(rootfs, "opt/java")
	require.NoError(t, os.MkdirAll(jdk, 0o755))
	for _, sub := range []string{"bin", "conf", "lib", "release"} {
		copyTree(t, filepath.Join(javaHome, sub), filepath.Join(jdk, sub))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(rootfs, "tmp"), 0o777))
	require.NoError(t, os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777))

	elves := []string{}
	for _, tool := range []string{"sh", "dirname", "uname", "head", "cut", "sed", "expr", "ls", "cat"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err, tool)
		p, err = filepath.EvalSymlinks(p)
		require.NoError(t, err)
		copyFile(t, p, filepath.Join(rootfs, "bin", tool), 0o755)
		elves = append(elves, p)
	}
	require.NoError(t, filepath.WalkDir(filepath.Join(javaHome, "lib"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".so") {
			elves = append(elves, p)
		}
		return err
	}))
	elves = append(elves, filepath.Join(javaHome, "bin", "java"))
	libs := map[string]bool{}
	for _, elf := range elves {
		out, _ := exec.Command("ldd", elf).Output()
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "/") && !strings.HasPrefix(f, javaHome) {
					libs[f] = true
				}
			}
		}
	}
	for lib := range libs {
		copyFile(t, lib, filepath.Join(rootfs, lib), 0o755)
	}
	dockerfile := `FROM scratch
COPY rootfs/ /
ENV ROCKETMQ_HOME=/home/rocketmq/rocketmq-dist JAVA_HOME=/opt/java PATH=/opt/java/bin:/bin HOME=/home/rocketmq
EXPOSE 9876 10909 10911 10912
WORKDIR /home/rocketmq/rocketmq-dist/bin
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644))
}

// copyTree copies src to dst, following symlinks (Debian's JDK links into /etc) and skipping
// dangling ones (its src.zip).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	fi, err := os.Stat(src)
	if err != nil {
		return // dangling symlink
	}
	if !fi.IsDir() {
		copyFile(t, src, dst, fi.Mode().Perm())
		return
	}
	require.NoError(t, os.MkdirAll(dst, 0o755))
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		copyTree(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
}
