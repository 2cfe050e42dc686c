package faults

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/rocketbus/rocketbus/testkit"
)

// The child consumer is this test binary run again with -test.run=^TestChildConsumer$ and
// these variables set; envChild names the backend.
const (
	envChild       = "FAULTS_CHILD"
	envChildAddr   = "FAULTS_CHILD_ADDR"
	envChildTopic  = "FAULTS_CHILD_TOPIC"
	envChildGroup  = "FAULTS_CHILD_GROUP"
	envChildLedger = "FAULTS_CHILD_LEDGER"
	envChildBegun  = "FAULTS_CHILD_BEGUN"
	envChildReady  = "FAULTS_CHILD_READY"
	envChildSleep  = "FAULTS_CHILD_SLEEP"
)

// TestChildConsumer is the consumer process of TestConsumerKilled: it handles the topic's
// messages in the group, noting each id in the begun file when its handler starts and in the
// ledger when it finishes, until its stdin closes. The parent kills it with SIGKILL while
// handlers are in the middle of their work.
func TestChildConsumer(t *testing.T) {
	name := os.Getenv(envChild)
	if name == "" {
		t.Skip("runs only as the child process of TestConsumerKilled")
	}
	sleep, err := time.ParseDuration(os.Getenv(envChildSleep))
	if err != nil {
		t.Fatalf("%s: %v", envChildSleep, err)
	}
	tg := childTarget(t, name, os.Getenv(envChildAddr))
	begun, err := os.OpenFile(os.Getenv(envChildBegun), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer begun.Close()
	var mu sync.Mutex
	startConsumer(t, tg, os.Getenv(envChildTopic), os.Getenv(envChildGroup), os.Getenv(envChildLedger), consumerOptions{
		handle: func(ctx context.Context, id string) error {
			// No fsync needed: SIGKILL does not lose what write(2) handed to the kernel.
			mu.Lock()
			_, err := begun.WriteString(id + "\n")
			mu.Unlock()
			if err != nil {
				return err
			}
			time.Sleep(sleep)
			return nil
		},
	})
	if err := os.WriteFile(os.Getenv(envChildReady), []byte("ready"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin (or dies)
}

// childTarget builds, inside the child, the subscriber side of the parent's backend.
func childTarget(t *testing.T, name, addr string) *target {
	switch name {
	case "rocketmq":
		ns := strings.Split(addr, ";")
		return &target{name: name, subscriber: func(t *testing.T, group string, brokerRetry bool) (message.Subscriber, error) {
			return newRocketMQSubscriber(t, ns, group, brokerRetry), nil
		}}
	case "nats":
		return natsClientTarget(t, addr)
	case "redis":
		return kitTarget(t, name, testkit.Redis, false)
	case "postgres":
		return kitTarget(t, name, testkit.PostgreSQL, false)
	case "rabbitmq":
		return kitTarget(t, name, testkit.RabbitMQ, false)
	}
	t.Fatalf("%s=%q is not a backend the child can run", envChild, name)
	return nil
}

// child is a running child consumer.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bytes.Buffer
	waited chan error
}

// spawnChild starts a child consumer and waits until its router runs.
func spawnChild(t *testing.T, tg *target, topic, group, ledgerPath, begunPath string, sleep time.Duration) *child {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildConsumer$", "-test.count=1", "-test.v")
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvReport+"=") && !strings.HasPrefix(kv, "FAULTS_CHILD") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		envChild+"="+tg.name, envChildAddr+"="+tg.childAddr, envChildTopic+"="+topic, envChildGroup+"="+group,
		envChildLedger+"="+ledgerPath, envChildBegun+"="+begunPath, envChildReady+"="+ready, envChildSleep+"="+sleep.String())
	c := &child{cmd: cmd, out: &bytes.Buffer{}, waited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: c.out}, &lockedWriter{w: c.out}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.waited
		if t.Failed() {
			t.Logf("child %d output:\n%s", cmd.Process.Pid, c.output())
		}
	})
	deadline := time.After(90 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return c
		}
		select {
		case err := <-c.waited:
			c.waited <- err
			t.Fatalf("child consumer exited before it was ready: %v\n%s", err, c.output())
		case <-deadline:
			t.Fatalf("child consumer not ready after 90s\n%s", c.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *child) output() string {
	w := c.cmd.Stdout.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return c.out.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing child: %v", err)
	}
	err := <-c.waited
	c.waited <- err
}

// stop closes the child's stdin, which makes it close its router and exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.stdin.Close()
	select {
	case err := <-c.waited:
		c.waited <- err
		if err != nil {
			t.Errorf("child consumer failed: %v\n%s", err, c.output())
		}
	case <-time.After(60 * time.Second):
		t.Errorf("child consumer still running 60s after its stdin closed\n%s", c.output())
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
