package faults

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// TestBrokerKilled runs the broker as a child process with a data directory, kills it with
// SIGKILL while messages are being published and consumed (publishing goes on, so the kill can
// land while a send is in flight), and starts it again at once on the same port and directory. What a killed broker had
// acknowledged must come back: lost == 0. Duplicates are expected (consumer offsets saved
// before the kill may be older than what was handled) and reported.
//
// RocketMQ runs cmd/minirmq built from this module with -data-dir; NATS runs nats-server
// (JetStream, file store) in a child process that is this test binary run again as
// TestChildNATSServer; Redis and PostgreSQL run on a private server of the case
// (privateServer): redis-server with appendfsync always, a PostgreSQL cluster whose postmaster
// is killed (its backends, left behind, are killed after it so that the new postmaster can
// start).
func TestBrokerKilled(t *testing.T) {
	const caseName = "broker SIGKILL, restarted from its data dir"
	eachBackend(t, caseName, func(t *testing.T, name string) {
		var proc *brokerProcess
		var tg *target
		switch name {
		case "rocketmq":
			if os.Getenv(minirmq.EnvNameServer) != "" {
				skipCase(t, caseName, name, "external broker ($"+minirmq.EnvNameServer+"): the suite kills only a broker process it started itself")
			}
			proc = minirmqProcess(t)
			tg = rocketMQClientTarget(t, []string{proc.addr})
		case "nats":
			proc = natsServerProcess(t)
			tg = natsClientTarget(t, "nats://"+proc.addr)
		case "redis", "postgres":
			proc, tg = privateServer(t, caseName, name)
		case "gochannel":
			skipCase(t, caseName, name, "gochannel has no server to break")
		case "rabbitmq":
			skipCase(t, caseName, name, rabbitmqRestartSkip)
		default:
			skipCase(t, caseName, name, name+" is the shared service scripts/test-services.sh starts; killing it would break the other packages' tests that run at the same time")
		}
		brokerKilled(t, caseName, tg, proc)
	})
}

// brokerKilled is brokerFault with a kill that does not stop the publisher: the broker is
// killed from another goroutine a moment after the publisher passed the middle of the stream, and
// restarted as soon as it is gone. Publish calls made while it is down fail (and are not counted
// as published).
func brokerKilled(t *testing.T, caseName string, tg *target, proc *brokerProcess) {
	topic, group := tg.topic(t), newGroup()
	path := filepath.Join(t.TempDir(), "handled")
	startConsumer(t, tg, topic, group, path, consumerOptions{})
	pub := tg.publisher(t)
	type outcome struct {
		err       error
		handled   int
		published int64 // Publish calls begun when the kill was sent
		downtime  time.Duration
	}
	restarted := make(chan outcome, 1)
	var calls atomic.Int64
	res := publishAll(pub, topic, newIDs(streamN), func(i int) {
		calls.Store(int64(i + 1))
		if i != streamN/2 {
			return
		}
		waitCount(t, path, streamN/4)
		go func() {
			time.Sleep(2 * time.Millisecond) // let the next Publish call get on the wire
			// No t.Fatal here: this is not the test's goroutine.
			done, err := readLedger(path)
			o := outcome{handled: len(done), err: err}
			began := time.Now()
			o.published = calls.Load()
			if o.err == nil {
				o.err = proc.kill()
			}
			if o.err == nil {
				o.err = proc.start()
			}
			o.downtime = time.Since(began)
			restarted <- o
		}()
	})
	o := <-restarted
	if o.err != nil {
		t.Fatalf("restarting %s: %v", proc.name, o.err)
	}
	t.Logf("%s killed during Publish call %d with %d messages handled, serving again after %v", proc.name, o.published, o.handled, o.downtime.Round(time.Millisecond))
	note := fmt.Sprintf("killed at Publish call %d, %d handled; serving again %v later", o.published, o.handled, o.downtime.Round(10*time.Millisecond))
	if proc.note != nil {
		note += "; " + proc.note()
	}
	waitHandled(t, path, res.okIDs, nil, 90*time.Second)
	finish(t, caseName, tg.name, res, path, nil, note)
}

// brokerProcess is a broker in a child process that serves on addr and keeps its data in a
// directory, so that it can be killed and started again with the same command.
type brokerProcess struct {
	name string
	addr string // 127.0.0.1:port
	argv []string
	env  []string // nil: this process's environment

	// Optional, for servers that are not this module's own (redis-server, postgres).
	// attr replaces childProcAttr (PostgreSQL runs as the postgres user when the test runs as
	// root). ready is polled once the port accepts connections, until it returns nil: the server
	// answers requests (Redis loading its append-only file, PostgreSQL recovering, answer with
	// errors). stopSignal asks for a clean shutdown: stop sends it, and the test's cleanup stops
	// the process with it (nil: the cleanup kills). reap runs after the process is gone (kill,
	// stop, cleanup; pid is the process's) and ends what it left behind (PostgreSQL's backends).
	attr       *syscall.SysProcAttr
	ready      func() error
	stopSignal os.Signal
	reap       func(pid int) error
	// note, when set, adds to the report's note of the SIGKILL case, after the kill.
	note func() string

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while not running
	stdin  io.WriteCloser
	out    *lockedWriter
	waited chan error
}

// minirmqProcess builds cmd/minirmq and starts it on a free port with a data directory. The
// time scale matches the in-process minirmq of the other cases.
func minirmqProcess(t *testing.T) *brokerProcess {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "minirmq")
	build := exec.Command("go", "build", "-o", bin, "github.com/rocketbus/rocketbus/cmd/minirmq")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/minirmq: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	p := &brokerProcess{name: "minirmq", addr: addr,
		argv: []string{bin, "-listen", addr, "-data-dir", filepath.Join(dir, "data"), "-time-scale", "0.01"}}
	p.startOrFail(t)
	return p
}

// Variables of the child nats-server (TestChildNATSServer).
const (
	envNATSServerDir  = "FAULTS_NATS_SERVER_DIR"
	envNATSServerPort = "FAULTS_NATS_SERVER_PORT"
)

// natsServerProcess starts nats-server with JetStream in a child process on a free port.
func natsServerProcess(t *testing.T) *brokerProcess {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvReport+"=") && !strings.HasPrefix(kv, "FAULTS_CHILD") {
			env = append(env, kv)
		}
	}
	env = append(env, envNATSServerDir+"="+t.TempDir(), envNATSServerPort+"="+port)
	p := &brokerProcess{name: "nats-server", addr: addr, env: env,
		argv: []string{os.Args[0], "-test.run=^TestChildNATSServer$", "-test.count=1", "-test.v"}}
	p.startOrFail(t)
	return p
}

// TestChildNATSServer is the nats-server process of TestBrokerKilled: JetStream with a file
// store in the given directory, serving until its stdin closes or it is killed.
func TestChildNATSServer(t *testing.T) {
	dir := os.Getenv(envNATSServerDir)
	if dir == "" {
		t.Skip("runs only as the child process of TestBrokerKilled")
	}
	port, err := strconv.Atoi(os.Getenv(envNATSServerPort))
	if err != nil {
		t.Fatalf("%s: %v", envNATSServerPort, err)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "faults-child", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("nats-server not ready on port %d after 30s", port)
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin (or dies)
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startOrFail starts the process and kills it when the test ends.
func (p *brokerProcess) startOrFail(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		if cmd != nil {
			var err error
			if p.stopSignal != nil {
				err = p.stop(30 * time.Second)
			} else {
				err = p.kill()
			}
			// A child that exited by itself (ErrProcessDone from kill) was not the cleanup's to
			// report before stop existed; stop reports its exit status.
			if err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("stopping %s: %v", p.name, err)
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.output())
		}
	})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
}

// start runs the command and waits until addr accepts connections. It retries when the process
// exits at once: the port of a process killed a moment ago may not be free yet.
func (p *brokerProcess) start() error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = p.startOnce(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

func (p *brokerProcess) startOnce() error {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = childProcAttr()
	if p.attr != nil {
		cmd.SysProcAttr = p.attr
	}
	out := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = out, out
	// Once the process exited, Wait gives up on output pipes that descendants still hold open
	// after this long (reap normally ends those descendants first).
	cmd.WaitDelay = 10 * time.Second
	// The child nats-server serves until its stdin closes: a pipe that closes when this
	// process dies, so a crashed test run leaves no server behind.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.stdin, p.out, p.waited = cmd, stdin, out, waited
	p.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			_ = conn.Close()
			if p.ready == nil {
				return nil
			}
			if err = p.ready(); err == nil {
				return nil
			}
		}
		select {
		case werr := <-waited:
			waited <- werr
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("%s exited before serving on %s: %v\n%s", p.name, p.addr, werr, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("%s not serving on %s after 60s (last: %v)\n%s", p.name, p.addr, err, p.output())
		}
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *brokerProcess) kill() error {
	p.mu.Lock()
	cmd, waited := p.cmd, p.waited
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + " is not running")
	}
	if err := cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing %s: %w", p.name, err)
	}
	// Leftovers first: processes the killed one left behind keep its output pipes open, and
	// cmd.Wait waits for those pipes.
	rerr := p.reapLeftovers(cmd.Process.Pid)
	err := <-waited
	waited <- err
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return rerr
}

// stop sends stopSignal and waits up to timeout for the process to exit; one that does not is
// killed, and one that exits with an error is reported (with its output).
func (p *brokerProcess) stop(timeout time.Duration) error {
	p.mu.Lock()
	cmd, waited := p.cmd, p.waited
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + " is not running")
	}
	if p.stopSignal == nil {
		return errors.New(p.name + " has no stop signal")
	}
	// A process that already exited (ErrProcessDone) is collected below with its exit status.
	if err := cmd.Process.Signal(p.stopSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	var err error
	select {
	case err = <-waited:
		waited <- err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		_ = p.reapLeftovers(cmd.Process.Pid) // before waiting: see kill
		werr := <-waited
		waited <- werr
		err = fmt.Errorf("did not exit within %v of %v, killed", timeout, p.stopSignal)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	if rerr := p.reapLeftovers(cmd.Process.Pid); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("stopping %s (pid %d): %w\n%s", p.name, cmd.Process.Pid, err, p.output())
	}
	return nil
}

func (p *brokerProcess) reapLeftovers(pid int) error {
	if p.reap == nil {
		return nil
	}
	if err := p.reap(pid); err != nil {
		return fmt.Errorf("after %s exited: %w", p.name, err)
	}
	return nil
}

func (p *brokerProcess) output() string {
	p.mu.Lock()
	out := p.out
	p.mu.Unlock()
	if out == nil {
		return ""
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	return out.w.(*bytes.Buffer).String()
}
