package faults

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// killN is the number of messages of the SIGKILL case.
const killN = 1000

// TestConsumerKilled runs the consumer as a child process, kills it with SIGKILL while its
// handlers are in the middle of messages, and starts a new child in the same group: the
// messages the first child held (begun, never finished) must come back and be handled.
func TestConsumerKilled(t *testing.T) {
	const caseName = "consumer SIGKILL mid-handler"
	eachTarget(t, caseName, func(t *testing.T, tg *target) {
		if tg.childAddr == "" {
			skipCase(t, caseName, tg.name, tg.childSkip)
		}
		topic, group := tg.topic(t), newGroup()
		dir := t.TempDir()
		path, begunPath := filepath.Join(dir, "handled"), filepath.Join(dir, "begun")
		// Each handler takes 20 ms, so at any moment most of the consumer's messages are
		// inside a handler.
		first := spawnChild(t, tg, topic, group, path, begunPath, 20*time.Millisecond)
		check := startAckCheck(t, tg, topic, group, path)
		res := publishAll(tg.publisher(t), topic, newIDs(killN), nil)
		waitCount(t, path, killN/3)
		// Kill while a handler is running: some backends deliver one message at a time, with
		// gaps between handlers.
		waitInFlight(t, path, begunPath)
		first.kill(t)

		begun, err := readLedger(begunPath)
		if err != nil {
			t.Fatal(err)
		}
		done, err := readLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		var held []string
		for id := range begun {
			if done[id] == 0 {
				held = append(held, id)
			}
		}
		t.Logf("killed with %d messages handled and %d inside a handler", len(done), len(held))
		if len(held) == 0 {
			t.Fatal("no handler was running when the child was killed: the case proved nothing")
		}

		second := spawnChild(t, tg, topic, group, path, filepath.Join(dir, "begun2"), 0)
		waitHandled(t, path, res.okIDs, nil, 90*time.Second)
		second.stop(t)
		acks := check.stop(t)
		after, err := readLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		back := 0
		for _, id := range held {
			if after[id] > 0 {
				back++
			}
		}
		t.Logf("%d of the %d held messages came back and were handled", back, len(held))
		finish(t, caseName, tg.name, res, path, nil, strings.TrimSuffix(itoa(len(held))+" held at the kill, "+itoa(back)+" came back; "+acks, "; "))
	})
}

// waitInFlight returns once some message has begun and not finished (or after 10 s).
func waitInFlight(t *testing.T, path, begunPath string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		begun, err := readLedger(begunPath)
		if err != nil {
			t.Fatal(err)
		}
		done, err := readLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		for id := range begun {
			if done[id] == 0 {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}
