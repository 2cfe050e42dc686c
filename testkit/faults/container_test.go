package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
	"github.com/rocketbus/rocketbus/testkit/rmqcontainer"
)

// TestBrokerContainerRestart runs the locally built minirmq image (its data directory is inside
// the container) and restarts the container with `docker restart` mid-stream, as one restarts
// a broker container: the name server port is published on a fixed host port, because Docker
// gives a restarted container new random host ports while RocketMQ clients keep the name server
// address they were given. No Docker engine: the case skips (fails when CI=true).
func TestBrokerContainerRestart(t *testing.T) {
	const caseName = "broker container restart"
	eachBackend(t, caseName, func(t *testing.T, name string) {
		switch name {
		case "rocketmq":
		case "nats":
			skipCase(t, caseName, name, "no nats-server image here (images are built locally FROM scratch, nothing is pulled); the broker restart and SIGKILL cases restart its server")
		case "gochannel":
			skipCase(t, caseName, name, "gochannel has no server to break")
		case "rabbitmq":
			skipCase(t, caseName, name, rabbitmqRestartSkip)
		default:
			skipCase(t, caseName, name, "no "+name+" image here (images are built locally FROM scratch, nothing is pulled, "+
				"and "+name+" is no static Go binary); the broker restart and SIGKILL cases restart a private "+name+" server instead")
		}
		if os.Getenv(minirmq.EnvNameServer) != "" {
			skipCase(t, caseName, name, "external broker ($"+minirmq.EnvNameServer+"): "+EnvRestartCmd+" restarts it in the broker restart case")
		}
		t.Cleanup(func() {
			if t.Skipped() { // RequireDocker skipped: no engine answers
				addRow(counts{Case: caseName, Backend: name, Published: -1, Note: "skipped: no Docker engine answers"})
			}
		})
		rmqcontainer.RequireDocker(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		image, err := rmqcontainer.MinirmqImage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(freeAddr(t))
		hostPort, _ := strconv.Atoi(port) // a port net.Listen chose
		logs := &restartLog{t: t}
		c := rmqcontainer.RunTest(t, image, rmqcontainer.WithHostPort(9876, hostPort), rmqcontainer.WithLogger(logs))
		ns, err := c.NameServer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tg := rocketMQClientTarget(t, []string{ns})
		var took time.Duration
		brokerFault(t, caseName, tg, func(t *testing.T) {
			began := time.Now()
			if err := c.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			took = time.Since(began)
		}, func() string {
			return fmt.Sprintf("docker restart took %v (name server on a fixed host port); %s", took.Round(10*time.Millisecond), logs.advertised())
		})
		after, err := c.NameServer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != ns {
			t.Errorf("the name server moved from %s to %s across the restart", ns, after)
		}
	})
}

// restartLog passes testcontainers' and rmqcontainer's messages to the test log and remembers
// what Restart found: whether the broker kept its advertised address.
type restartLog struct {
	t    *testing.T
	mu   sync.Mutex
	kept *bool
}

func (l *restartLog) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.t.Log(msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case strings.Contains(msg, "kept advertising"):
		kept := true
		l.kept = &kept
	case strings.Contains(msg, "forgot its advertised address"):
		kept := false
		l.kept = &kept
	}
}

func (l *restartLog) advertised() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.kept == nil:
		return "no restart"
	case *l.kept:
		return "the broker kept its advertised address"
	}
	return "the broker forgot its advertised address and was told again"
}
