package faults

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// streamN is the number of messages of the mid-stream broker faults.
const streamN = 1500

// TestBrokerRestart restarts the broker (keeping its data) while messages are being published
// and consumed. Redis and PostgreSQL run on a private server of the case (privateServer), not
// on the shared services.
func TestBrokerRestart(t *testing.T) {
	const caseName = "broker restart"
	eachBackend(t, caseName, func(t *testing.T, name string) {
		var tg *target
		if hasPrivateServer(name) {
			_, tg = privateServer(t, caseName, name)
		} else {
			tg = newTarget(t, name)
		}
		if tg.restart == nil {
			skipCase(t, caseName, tg.name, tg.restartSkip)
		}
		var notes []func() string
		if tg.restartNote != nil {
			notes = append(notes, tg.restartNote)
		}
		brokerFault(t, caseName, tg, func(t *testing.T) { tg.restart(t) }, notes...)
	})
}

// hasPrivateServer tells the backends whose server the restart and SIGKILL cases start
// themselves (privateServer) instead of breaking the shared service.
func hasPrivateServer(name string) bool { return name == "redis" || name == "postgres" }

// TestConnectionsDropped closes every client connection on the broker side mid-stream.
func TestConnectionsDropped(t *testing.T) {
	eachTarget(t, "connections dropped", func(t *testing.T, tg *target) {
		if tg.drop == nil {
			skipCase(t, "connections dropped", tg.name, tg.dropSkip)
		}
		brokerFault(t, "connections dropped", tg, func(t *testing.T) { tg.drop(t) })
	})
}

// TestBrokerPaused makes the broker unreachable for a few seconds mid-stream (connections
// closed, new ones refused), then brings it back.
func TestBrokerPaused(t *testing.T) {
	eachTarget(t, "broker paused 3s", func(t *testing.T, tg *target) {
		if tg.pause == nil {
			skipCase(t, "broker paused 3s", tg.name, tg.pauseSkip)
		}
		brokerFault(t, "broker paused 3s", tg, func(t *testing.T) {
			tg.pause(t)
			time.Sleep(3 * time.Second)
			tg.resume(t)
		})
	})
}

// brokerFault publishes streamN messages while a router consumes them; when a quarter has
// been handled and half published, it injects the fault inline (so publishing resumes right
// after it), then waits for every published message. notes add to the report's note.
func brokerFault(t *testing.T, caseName string, tg *target, fault func(t *testing.T), notes ...func() string) {
	topic, group := tg.topic(t), newGroup()
	path := filepath.Join(t.TempDir(), "handled")
	startConsumer(t, tg, topic, group, path, consumerOptions{})
	check := startAckCheck(t, tg, topic, group, path)
	pub := tg.publisher(t)
	ids := newIDs(streamN)
	res := publishAll(pub, topic, ids, func(i int) {
		if i == streamN/2 {
			waitCount(t, path, streamN/4)
			fault(t)
		}
	})
	// After a restart or a cut the RocketMQ client notices a dead long-polling pull only at its
	// 30 s request timeout, so a consumer may stall that long before it resumes.
	waitHandled(t, path, res.okIDs, nil, 90*time.Second)
	var parts []string
	for _, n := range notes {
		parts = append(parts, n())
	}
	if acks := check.stop(t); acks != "" {
		parts = append(parts, acks)
	}
	finish(t, caseName, tg.name, res, path, nil, strings.Join(parts, "; "))
}

func newGroup() string { return "faults_" + newIDs(1)[0][:12] }

// ackCheck samples minirmq's committed offsets while a case runs and checks that every
// message below a committed offset had been recorded by its handler, that is: nothing was
// acknowledged before its handler returned nil. Offsets are read before the ledger, so a
// handler finishing in between can only make the check more lenient, never wrong.
type ackCheck struct {
	stopCh     chan struct{}
	done       chan struct{}
	mu         sync.Mutex
	violations []string
	samples    int
	acked      int64
}

func startAckCheck(t *testing.T, tg *target, topic, group, path string) *ackCheck {
	c := &ackCheck{stopCh: make(chan struct{}), done: make(chan struct{})}
	if tg.srv == nil {
		close(c.done)
		return c
	}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stopCh:
				return
			case <-time.After(200 * time.Millisecond):
			}
			c.sample(tg.srv, topic, group, path)
		}
	}()
	return c
}

func (c *ackCheck) sample(srv *minirmq.Server, topic, group, path string) {
	committed := map[int]int64{}
	for q := 0; q < 16; q++ {
		if off, ok := srv.Offset(group, topic, q); ok {
			committed[q] = off
		}
	}
	done, err := readLedger(path)
	if err != nil {
		return
	}
	var acked int64
	var bad []string
	for _, m := range srv.Messages(topic) {
		if m.QueueOffset >= committed[m.QueueID] {
			continue
		}
		acked++
		id := m.Properties[rocketmq.UUIDProperty]
		if id == "" {
			var p payload
			_ = json.Unmarshal(m.Body, &p)
			id = p.ID
		}
		if done[id] == 0 {
			bad = append(bad, fmt.Sprintf("%s (queue %d offset %d, committed %d)", id, m.QueueID, m.QueueOffset, committed[m.QueueID]))
		}
	}
	c.mu.Lock()
	c.samples++
	c.acked = max(c.acked, acked)
	c.violations = append(c.violations, bad...)
	c.mu.Unlock()
}

// stop ends the sampling and fails the test if a message was acked before it was handled. It
// returns a summary for the report ("" when nothing was sampled).
func (c *ackCheck) stop(t *testing.T) string {
	t.Helper()
	select {
	case <-c.stopCh:
	default:
		close(c.stopCh)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples > 0 {
		t.Logf("ack check: %d samples of the broker's committed offsets, up to %d messages acked, %d acked before their handler returned", c.samples, c.acked, len(c.violations))
	}
	if len(c.violations) > 0 {
		t.Errorf("acked before the handler returned nil: %v", c.violations[:min(10, len(c.violations))])
	}
	if c.samples == 0 {
		return ""
	}
	return fmt.Sprintf("ack check: %d samples, %d acked before their handler returned", c.samples, len(c.violations))
}
