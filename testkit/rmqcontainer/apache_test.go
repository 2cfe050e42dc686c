package rmqcontainer

import (
	"context"
	"errors"
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

func TestBrokerConfigText(t *testing.T) {
	text := brokerConfigText(map[string]string{"brokerName": "b1", "defaultTopicQueueNums": "8"})
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	assert.Contains(t, lines, "brokerName=b1", "user entries override the defaults")
	assert.NotContains(t, lines, "brokerName=broker-a")
	assert.Contains(t, lines, "defaultTopicQueueNums=8")
	assert.Contains(t, lines, "autoCreateTopicEnable=true")
	assert.Contains(t, lines, "brokerRole=ASYNC_MASTER")
	assert.IsIncreasing(t, lines, "lines are sorted, so the config is stable")
	assert.Equal(t, "brokerName=broker-a", defaultLine(t, "brokerName"), "defaults are not modified")
}

func defaultLine(t *testing.T, key string) string {
	t.Helper()
	for _, l := range strings.Split(brokerConfigText(nil), "\n") {
		if strings.HasPrefix(l, key+"=") {
			return l
		}
	}
	t.Fatalf("no default for %s", key)
	return ""
}

func TestValidateProperties(t *testing.T) {
	assert.NoError(t, validateProperties(map[string]string{"brokerIP1": "10.0.0.1", "msg": "a b=c"}))
	for name, props := range map[string]map[string]string{
		"empty key":       {"": "x"},
		"key with equals": {"a=b": "x"},
		"key with space":  {"a b": "x"},
		"value newline":   {"a": "x\nevil=1"},
		"value return":    {"a": "x\r"},
	} {
		err := validateProperties(props)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "broker config", name)
		}
	}
}

func TestParseHeap(t *testing.T) {
	for in, want := range map[string]int64{"512m": 512 << 20, "1g": 1 << 30, "1G": 1 << 30, "65536k": 64 << 20, "268435456": 256 << 20} {
		got, err := parseHeap(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "m", "-1g", "0", "1.5g", "512mb", "64k", "99999999999g"} {
		_, err := parseHeap(in)
		assert.Error(t, err, in)
	}
}

func TestApacheEnv(t *testing.T) {
	env := apacheEnv("a=b\n", 512<<20, nil)
	assert.Equal(t, "a=b\n", env[envBrokerConf])
	assert.Equal(t, "536870912", env[envMaxHeap])
	assert.Equal(t, "-Xms536870912 -Xmx536870912 -Xmn268435456", env[envJavaOptExt])
	assert.Equal(t, "-Xms536870912 -Xmx536870912 -Xmn268435456 -XX:MaxDirectMemorySize=536870912", env[envHeapOpts])
	assert.Equal(t, "localhost:9876", env["NAMESRV_ADDR"])
	env = apacheEnv("", 256<<20, []string{"--add-opens", "java.base/java.nio=ALL-UNNAMED"})
	assert.Equal(t, "-Xms268435456 -Xmx268435456 -Xmn134217728 --add-opens java.base/java.nio=ALL-UNNAMED", env[envJavaOptExt],
		"extra options come after the heap flags")
}

func TestOptionErrorsReachRun(t *testing.T) {
	for name, opt := range map[string]Option{
		"heap":       WithJVMHeap("lots"),
		"config":     WithBrokerConfig(map[string]string{"bad key": "1"}),
		"timeout":    WithStartupTimeout(0),
		"host ip":    WithHostIP("localhost"),
		"host ipv6":  WithHostIP("::1"),
		"layout":     WithLayout(Layout(7)),
		"dockerfile": WithDockerfile("", ""),
		"logger":     WithLogger(nil),
		"jvm option": WithJVMOptions("-Da=1\n-Db=2"),
	} {
		_, err := Run(context.Background(), "img", opt)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "rmqcontainer:", name)
		}
	}
	_, err := Run(context.Background(), "")
	assert.ErrorContains(t, err, "no image")
	_, err = Run(context.Background(), "", nil)
	assert.ErrorContains(t, err, "no image", "a nil Option is skipped, not called")
	_, err = Run(context.Background(), "img", WithDockerfile(t.TempDir(), ""))
	assert.ErrorContains(t, err, "exclusive")
}

func TestLayoutDetection(t *testing.T) {
	assert.Equal(t, LayoutApache, layoutFromConfig(map[string]struct{}{"9876/tcp": {}, "10911/tcp": {}, "10909/tcp": {}}, nil))
	assert.Equal(t, LayoutApache, layoutFromConfig(nil, []string{"PATH=/bin", "ROCKETMQ_HOME=/home/rocketmq/rocketmq-5.3.1"}))
	assert.Equal(t, LayoutSinglePort, layoutFromConfig(map[string]struct{}{"9876/tcp": {}}, []string{"PATH=/bin"}))
	for image, want := range map[string]Layout{
		"apache/rocketmq:4.9.4":                   LayoutApache,
		"apache/rocketmq:5.3.1":                   LayoutApache,
		"registry:5000/apache/rocketmq@sha256:ab": LayoutApache,
		"rocketbus/minirmq:dev":                   LayoutSinglePort,
		"localhost:5000/minirmq":                  LayoutSinglePort,
		MinirmqRepo + ":0123":                     LayoutSinglePort,
	} {
		assert.Equal(t, want, layoutFromName(image), image)
	}
	assert.Equal(t, "apache", LayoutApache.String())
	assert.Equal(t, "single-port", LayoutSinglePort.String())
}

// TestApacheStartScript runs the generated start script with /bin/sh against a fake
// ROCKETMQ_HOME whose mqnamesrv and mqbroker record how they were started. The real images are
// not available here; this proves the script's own logic.
func TestApacheStartScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	home := filepath.Join(t.TempDir(), "rocketmq-5.3.1")
	out := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	writeScript(t, filepath.Join(home, "bin", "mqnamesrv"), `echo "$PWD $*" > "$OUT/namesrv"`)
	// The broker stub waits for the name server stub: it runs in the background.
	writeScript(t, filepath.Join(home, "bin", "mqbroker"), `i=0
while [ ! -f "$OUT/namesrv" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
echo "$PWD $*" > "$OUT/broker"
cp "$4" "$OUT/broker.conf"`)

	conf := brokerConfigText(map[string]string{"brokerName": "b-test"})
	userHome := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "-c", apacheStartScript)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ROCKETMQ_HOME=" + home, "HOME=" + userHome, "OUT=" + out,
		envBrokerConf + "=" + conf}
	output, err := cmd.CombinedOutput()
	require.NoError(t, err, string(output))

	binDir := filepath.Join(home, "bin")
	assert.Equal(t, binDir+" \n", readFile(t, filepath.Join(out, "namesrv")), "name server started from bin without arguments")
	confPath := filepath.Join(userHome, "rocketbus-broker.conf")
	assert.Equal(t, binDir+" -n localhost:9876 -c "+confPath+"\n", readFile(t, filepath.Join(out, "broker")))
	assert.Equal(t, conf, readFile(t, filepath.Join(out, "broker.conf")), "broker.conf carries the generated config verbatim")
}

func TestApacheStartScriptWithoutHome(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	cmd := exec.Command(sh, "-c", apacheStartScript)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ROCKETMQ_HOME=" + t.TempDir(), "HOME=" + t.TempDir()}
	output, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(output), "cannot find bin/mqbroker")
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestApacheStartScriptForwardsStop sends SIGTERM to the start script while both stubs run: it
// must pass the signal on and exit, as docker stop expects of the container's PID 1.
func TestApacheStartScriptForwardsStop(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	home := filepath.Join(t.TempDir(), "rocketmq-4.9.4")
	out := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	// Like the images' scripts, the stubs run their long-lived process as a child, not exec.
	for _, name := range []string{"mqnamesrv", "mqbroker"} {
		writeScript(t, filepath.Join(home, "bin", name), `sleep 600
echo stopped-late > "$OUT/`+name+`"`)
	}
	// A guard against a hang, not a timing check: the script gets far longer than it needs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "-c", apacheStartScript)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ROCKETMQ_HOME=" + home, "HOME=" + t.TempDir(), "OUT=" + out}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as PID 1 of a container has
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	waitForChildren(t, cmd.Process.Pid, 2)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err = cmd.Wait()
	require.Error(t, err, "the script reports the stop in its exit status")
	require.NoError(t, ctx.Err(), "the script did not stop on SIGTERM")
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 143, exitErr.ExitCode())
	assert.NoFileExists(t, filepath.Join(out, "mqbroker"), "the stub's sleep was killed, not waited out")
	assert.Empty(t, groupMembers(t, cmd.Process.Pid), "no process of the group survives")
}

// waitForChildren waits until the process group has at least n processes besides its leader.
func waitForChildren(t *testing.T, pgid, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(groupMembers(t, pgid)) >= n }, 10*time.Second, 20*time.Millisecond)
}

// groupMembers lists live processes in process group pgid other than the leader.
func groupMembers(t *testing.T, pgid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc on this machine")
	}
	var members []string
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || e.Name() == strconv.Itoa(pgid) {
			continue
		}
		// Fields after the parenthesised command: state ppid pgrp ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			members = append(members, e.Name())
		}
	}
	return members
}

// A failed build (Docker not up yet, an expired ctx) must not stick for the whole process.
func TestMinirmqImageRetriesAfterAFailure(t *testing.T) {
	minirmqImage.mu.Lock()
	saved := minirmqImage.name
	minirmqImage.name = ""
	builds := 0
	minirmqImage.build = func(context.Context) (string, error) {
		builds++
		if builds == 1 {
			return "", errors.New("rmqcontainer: docker not reachable")
		}
		return "rocketbus-minirmq:test", nil
	}
	minirmqImage.mu.Unlock()
	t.Cleanup(func() {
		minirmqImage.mu.Lock()
		minirmqImage.name, minirmqImage.build = saved, nil
		minirmqImage.mu.Unlock()
	})

	_, err := MinirmqImage(context.Background())
	assert.ErrorContains(t, err, "docker not reachable")
	name, err := MinirmqImage(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "rocketbus-minirmq:test", name)
	name, err = MinirmqImage(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "rocketbus-minirmq:test", name)
	assert.Equal(t, 2, builds, "a successful build is kept")
}
