package minirmq_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// javaDist finds an Apache RocketMQ binary distribution (its lib/ holds the Java client, the
// examples and mqadmin): $ROCKETMQ_DIST, else where ../shared/real-broker/setup.sh puts it.
func javaDist(t *testing.T) string {
	t.Helper()
	dist := os.Getenv("ROCKETMQ_DIST")
	if dist == "" {
		dist = "/tmp/rmq/dist"
	}
	if !raceEnabled && os.Getenv("ROCKETBUS_SECOND_PASS") != "" {
		t.Skip("ran in make test's race pass already (it drives no racy client code)")
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("no java on PATH: the Java client and mqadmin checks need a JVM")
	}
	if _, err := os.Stat(filepath.Join(dist, "lib", "rocketmq-tools-4.9.4.jar")); err != nil {
		t.Skipf("no RocketMQ 4.9.4 distribution at %s (set ROCKETMQ_DIST): the Java client and mqadmin checks need it", dist)
	}
	return dist
}

// java runs a class from the distribution and returns what it printed.
func java(t *testing.T, ctx context.Context, dist string, class string, args ...string) string {
	t.Helper()
	cmdArgs := append([]string{"-Xmx256m", "-Duser.home=" + t.TempDir(), "-Drocketmq.home.dir=" + dist, "-Drocketmq.client.logUseSlf4j=false",
		"--add-opens", "java.base/java.nio=ALL-UNNAMED", "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
		"--add-opens", "java.base/java.lang=ALL-UNNAMED", "--add-opens", "java.base/java.util=ALL-UNNAMED",
		"-cp", filepath.Join(dist, "lib", "*"), class}, args...)
	out, err := exec.CommandContext(ctx, "java", cmdArgs...).CombinedOutput()
	if ctx.Err() == nil {
		require.NoError(t, err, "%s %v:\n%s", class, args, out)
	}
	return string(out)
}

// The official Java client and mqadmin, unmodified, against minirmq.
func TestJavaClientAndMQAdmin(t *testing.T) {
	dist := javaDist(t)
	srv := minirmq.Run(t)
	addr := srv.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	admin := func(args ...string) string {
		out := java(t, ctx, dist, "org.apache.rocketmq.tools.command.MQAdminStartup", append(args[:1:1], append([]string{"-n", addr}, args[1:]...)...)...)
		// mqadmin exits 0 even when a command fails: failures show as exceptions in the output.
		assert.NotContains(t, out, "Exception", "mqadmin %v", args)
		return out
	}

	// The benchmark producer uses the compact binary header encoding and SEND_MESSAGE_V2.
	out := java(t, ctx, dist, "org.apache.rocketmq.example.benchmark.Producer", "-n", addr, "-t", "JavaT", "-w", "4", "-s", "1024", "-q", "400", "-k", "true")
	assert.Regexp(t, `Send Total: 400 .*Send Failed: 0 Response Failed: 0`, out)
	assert.Len(t, srv.Messages("JavaT"), 400)

	// The Java push consumer reads it all back; stop it once the group has no lag.
	cctx, stop := context.WithCancel(ctx)
	done := make(chan string, 1)
	go func() {
		done <- java(t, cctx, dist, "org.apache.rocketmq.example.benchmark.Consumer", "-n", addr, "-t", "JavaT", "-g", "JavaG")
	}()
	waitFor(t, "the Java consumer to catch up", 2*time.Minute, func() bool {
		return len(srv.Consumers("JavaG")) == 1 && srv.Lag("JavaG", "JavaT") == 0
	})
	progress := admin("consumerProgress", "-g", "JavaG")
	assert.Contains(t, progress, "Diff Total: 0")
	stop()
	<-done
	waitFor(t, "the Java consumer to leave", time.Minute, func() bool { return len(srv.Consumers("JavaG")) == 0 })
	// With the group offline mqadmin rewrites the offsets itself (search by time, then commit).
	assert.Contains(t, admin("resetOffsetByTime", "-g", "JavaG", "-t", "JavaT", "-s", "0"), "rollbackOffset")
	assert.EqualValues(t, 400, srv.Lag("JavaG", "JavaT"), "reset to the start of every queue")

	assert.Contains(t, admin("clusterList"), addr)
	assert.Contains(t, admin("updateTopic", "-b", addr, "-t", "AdminT", "-r", "2", "-w", "2"), "success")
	assert.Contains(t, admin("topicRoute", "-t", "AdminT"), `"readQueueNums":2`)
	sent := admin("sendMessage", "-t", "AdminT", "-p", "hello", "-k", "key1", "-c", "TagX")
	assert.Contains(t, sent, "SEND_OK")
	status := admin("topicStatus", "-t", "AdminT")
	assert.Regexp(t, `broker-a\s+\d\s+0\s+1\s`, status, "one message in one of the queues")
	assert.Contains(t, admin("queryMsgByKey", "-t", "AdminT", "-k", "key1"), "  ")
	msgs := srv.Messages("AdminT")
	require.Len(t, msgs, 1)
	byID := admin("queryMsgById", "-i", msgs[0].OffsetMsgID)
	assert.Contains(t, byID, "TagX")
	assert.Contains(t, byID, "key1")
	assert.Contains(t, admin("updateBrokerConfig", "-b", addr, "-k", "brokerIP1", "-v", "127.0.0.1"), "success")
	assert.True(t, strings.Contains(admin("getBrokerConfig", "-b", addr), "brokerIP1"))
}
